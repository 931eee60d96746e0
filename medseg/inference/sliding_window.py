"""Sliding-window inference over a whole volume with Gaussian blending and mirror TTA (numpy only).

Shared by `val.py` (a torch model behind `TorchPredictor`) and the onnxruntime deploy runner, so it
imports no torch. Windows lie on a regular grid whose step is at most `patch · (1 − overlap)`, with
the first window at 0 and the last flush with the far border. Each window's output is weighted by
an importance map (a Gaussian peaked at the patch centre, as in nnU-Net, or uniform) and summed,
with the weights, in a float32 band of planes one window deep; windows are visited in z-major
order, and planes no later window touches are divided by their weights and handed on
(`sliding_window_slabs`), so the `(K, ...)` buffers never span the volume. Volumes smaller than
the patch along an axis are padded symmetrically (with each channel's minimum by default, i.e.
"outside the scan") and the output is cropped back.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from medseg.utils.vocabulary import int_triple

logger = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]
# The most one predictor call's float32 output may take: a window at K = 128 is 126 MB.
BATCH_OUTPUT_BYTES = 128 << 20


def softmax(x: np.ndarray, axis: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically stable softmax along `axis` (the class axis of `(K, Z, Y, X)` logits).

    `out` (e.g. `x` itself) receives the result instead of a new array.
    """
    shifted = np.subtract(x, np.max(x, axis=axis, keepdims=True), out=out)
    np.exp(shifted, out=shifted)
    shifted /= np.sum(shifted, axis=axis, keepdims=True)
    return shifted


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid per element (region logits → region probabilities); `out` as in softmax."""
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives exactly 0
        result = np.negative(x, out=out)
        np.exp(result, out=result)
    result += 1
    return np.reciprocal(result, out=result)


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices along one axis: evenly spread, first at 0, last at `size - patch`.

    The number of windows is the smallest that keeps the step at or below `patch · (1 − overlap)`.
    """
    if size <= patch:
        return [0]
    max_step = max(patch * (1.0 - overlap), 1.0)
    count = int(np.ceil((size - patch) / max_step)) + 1
    return [round(i * (size - patch) / (count - 1)) for i in range(count)]


def importance_map(
    patch_size: Sequence[int], gaussian: bool = True, sigma_scale: float = 0.125
) -> np.ndarray:
    """Per-voxel blending weight of one window, float32, maximum 1.

    Gaussian: sigma = patch · `sigma_scale` per axis, centred on the patch centre (so the map is
    symmetric and mirror TTA sees the same weights); values that underflow to 0 are raised to the
    smallest non-zero value, so every voxel covered by a window gets a positive weight.
    """
    if not gaussian:
        return np.ones(tuple(patch_size), dtype=np.float32)
    weights = np.ones((1,) * len(patch_size), dtype=np.float64)
    for axis, size in enumerate(patch_size):
        offset = np.arange(size) - (size - 1) / 2.0
        profile = np.exp(-0.5 * (offset / (size * sigma_scale)) ** 2)
        shape = [1] * len(patch_size)
        shape[axis] = size
        weights = weights * profile.reshape(shape)
    weights = (weights / weights.max()).astype(np.float32)
    positive = weights > 0
    if not positive.all():
        weights[~positive] = weights[positive].min()
    return weights


def _check_arguments(
    image: np.ndarray,
    patch_size: Sequence[int],
    overlap: float,
    batch_size: int,
    sigma_scale: float,
    tta_axes: Sequence[int],
) -> tuple[int, ...]:
    """Validate the call and return the patch size as a tuple of ints."""
    if not isinstance(image, np.ndarray) or image.ndim != 4:
        got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"`image` must be a numpy array (C, Z, Y, X), got {got}")
    patch = int_triple(tuple(patch_size), "patch_size")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"`overlap` must lie in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    if not sigma_scale > 0:
        raise ValueError(f"`sigma_scale` must be > 0, got {sigma_scale}")
    if any(a not in (0, 1, 2) for a in tta_axes) or len(set(tta_axes)) != len(tta_axes):
        raise ValueError(
            f"`tta_axes` must be distinct spatial axes among 0 (z), 1 (y), 2 (x), got {tta_axes}"
        )
    return patch


def _pad_to_patch(
    image: np.ndarray, patch: tuple[int, ...], pad_value: float | None
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad `image` symmetrically up to `patch` where smaller; return it and the crop back."""
    spatial = image.shape[1:]
    before = [max(p - s, 0) // 2 for s, p in zip(spatial, patch, strict=True)]
    after = [max(p - s, 0) - b for s, p, b in zip(spatial, patch, before, strict=True)]
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial, strict=True))
    if not any(before) and not any(after):
        return image, crop
    if pad_value is None:
        fill = image.reshape(image.shape[0], -1).min(axis=1)
    else:
        fill = np.full(image.shape[0], pad_value)
    padded = np.empty(
        (image.shape[0], *(s + b + a for s, b, a in zip(spatial, before, after, strict=True))),
        dtype=np.float32,
    )
    padded[...] = fill.reshape(-1, 1, 1, 1)
    padded[(slice(None), *crop)] = image
    return padded, crop


def _predict(predictor: Predictor, batch: np.ndarray, num_classes: int | None) -> np.ndarray:
    """Call the predictor and check that it kept the batch and window shape."""
    out = np.asarray(predictor(batch))
    expected = (batch.shape[0], num_classes or "K", *batch.shape[2:])
    if (
        out.ndim != 5
        or out.shape[0] != batch.shape[0]
        or out.shape[2:] != batch.shape[2:]
        or (num_classes is not None and out.shape[1] != num_classes)
    ):
        raise ValueError(
            f"predictor returned shape {out.shape} for a batch of shape {batch.shape}; "
            f"expected {expected} (batch, classes, window)"
        )
    return out


def _predict_tta(
    predictor: Predictor, batch: np.ndarray, tta_axes: Sequence[int], num_classes: int | None
) -> np.ndarray:
    """Average the predictions over every combination of flips along `tta_axes` (spatial axes)."""
    flip_sets = [
        combo for n in range(1, len(tta_axes) + 1) for combo in itertools.combinations(tta_axes, n)
    ]
    prediction = _predict(predictor, batch, num_classes)
    if not flip_sets:
        return prediction
    # astype copies: the sum must not alias the batch (a predictor may return its input).
    total = prediction.astype(np.float32)
    for flips in flip_sets:
        axes = tuple(2 + a for a in flips)
        flipped = np.ascontiguousarray(np.flip(batch, axes))
        total += np.flip(_predict(predictor, flipped, num_classes), axes)
    if flip_sets:
        total /= np.float32(len(flip_sets) + 1)
    return total


def _bounded_batch(batch_size: int, num_classes: int | None, patch: Sequence[int]) -> int:
    """`batch_size`, lowered so that a call's K-channel output stays within `BATCH_OUTPUT_BYTES`.

    At a hundred classes one window's output is as large as a tenth of the band being blended;
    batching them would raise the peak for no gain in speed on a CPU.
    """
    if num_classes is None:
        return batch_size
    window_bytes = 4 * num_classes * math.prod(patch)
    fitting = max(1, BATCH_OUTPUT_BYTES // window_bytes)
    if fitting < batch_size:
        logger.debug(
            "%d windows per call instead of %d at K = %d", fitting, batch_size, num_classes
        )
    return min(batch_size, fitting)


def _batches(starts: list[tuple[int, ...]], batch_size: int) -> list[list[tuple[int, ...]]]:
    """Consecutive groups of at most `batch_size` window starts (z-major), never two z-rows.

    A group within one row of windows keeps the band of planes being blended one window deep.
    """
    groups: list[list[tuple[int, ...]]] = []
    for start in starts:
        if not groups or len(groups[-1]) == batch_size or groups[-1][0][0] != start[0]:
            groups.append([])
        groups[-1].append(start)
    return groups


class _Blender:
    """Weighted sums of window outputs over a band of planes (axis 0) that moves forward.

    The band starts at padded plane `start`, the first plane of the row of windows being added;
    planes before it were emitted and are never touched again, so memory spans one window's
    depth, not the volume.
    """

    def __init__(self, num_classes: int, spatial: tuple[int, ...], depth: int):
        self.start = 0
        self.values = np.zeros((num_classes, depth, *spatial[1:]), dtype=np.float32)
        self.weights = np.zeros((depth, *spatial[1:]), dtype=np.float32)

    def add(self, window: tuple[slice, ...], weighted: np.ndarray, weights: np.ndarray) -> None:
        """Add one window's weighted output (and its weights) at `window` (padded coordinates)."""
        local = (slice(window[0].start - self.start, window[0].stop - self.start), *window[1:])
        self.values[(slice(None), *local)] += weighted
        self.weights[local] += weights

    def emit(self, end: int) -> np.ndarray:
        """Blend planes `start .. end` in place; a view, valid until `shift`."""
        count = end - self.start
        self.values[:, :count] /= self.weights[:count]
        return self.values[:, :count]

    def shift(self, end: int) -> None:
        """Drop the planes before `end`, plane by plane (no band-sized temporary)."""
        count = end - self.start
        depth = self.weights.shape[0]
        for plane in range(depth - count):
            self.values[:, plane] = self.values[:, plane + count]
            self.weights[plane] = self.weights[plane + count]
        self.values[:, max(depth - count, 0) :] = 0
        self.weights[max(depth - count, 0) :] = 0
        self.start = end


def sliding_window_slabs(
    image: np.ndarray,
    predictor: Predictor,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 1,
    gaussian: bool = True,
    sigma_scale: float = 0.125,
    tta_axes: Sequence[int] = (),
    num_classes: int | None = None,
    pad_value: float | None = None,
    progress: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """`sliding_window_inference` slab by slab along z: memory bounded by a window's depth.

    Windows are visited in z-major order; once every window that touches a plane has been
    added, the planes are blended and yielded as `(first plane, (K, dz, Y, X) float32)`, in
    order and covering the image, with values equal to `sliding_window_inference`'s bit for bit.
    Each slab is a view into the band being blended: use or copy it before asking for the next.
    """
    patch = _check_arguments(image, patch_size, overlap, batch_size, sigma_scale, tta_axes)
    volume, crop = _pad_to_patch(image.astype(np.float32, copy=False), patch, pad_value)
    spatial = volume.shape[1:]
    grid = [window_starts(s, p, overlap) for s, p in zip(spatial, patch, strict=True)]
    starts = list(itertools.product(*grid))
    weights = importance_map(patch, gaussian, sigma_scale)
    blender: _Blender | None = None
    groups = _batches(starts, _bounded_batch(batch_size, num_classes, patch))
    steps = enumerate(groups)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, total=len(groups), desc="sliding window")
    logger.debug("%d windows of %s over %s", len(starts), patch, spatial)
    z_crop = crop[0]
    for index, group in steps:
        windows = [tuple(slice(s, s + p) for s, p in zip(st, patch, strict=True)) for st in group]
        batch = np.stack([volume[(slice(None), *w)] for w in windows])
        out = _predict_tta(predictor, batch, tta_axes, num_classes)
        if not out.flags.writeable or np.may_share_memory(out, batch):
            out = out.copy()  # weighted in place below: never the caller's or the batch's memory
        if blender is None:
            blender = _Blender(out.shape[1], spatial, patch[0])
        for window, prediction in zip(windows, out, strict=True):
            prediction *= weights
            blender.add(window, prediction, weights)
        end = groups[index + 1][0][0] if index + 1 < len(groups) else spatial[0]
        first = blender.start
        if end <= first:
            continue
        slab = blender.emit(end)
        low, high = max(first, z_crop.start), min(end, z_crop.stop)
        if low < high:
            yield low - z_crop.start, slab[:, low - first : high - first, crop[1], crop[2]]
        blender.shift(end)


def sliding_window_inference(
    image: np.ndarray,
    predictor: Predictor,
    patch_size: Sequence[int],
    overlap: float = 0.5,
    batch_size: int = 1,
    gaussian: bool = True,
    sigma_scale: float = 0.125,
    tta_axes: Sequence[int] = (),
    num_classes: int | None = None,
    pad_value: float | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Run `predictor` over overlapping windows of `image` and blend the outputs into one volume.

    Args:
        image: Input `(C, Z, Y, X)`, converted to float32.
        predictor: Maps a float32 batch `(B, C, pz, py, px)` to `(B, K, pz, py, px)` (e.g. logits).
        patch_size: Window size `(pz, py, px)`.
        overlap: Fraction of a window shared with its neighbour along each axis, in [0, 1).
        batch_size: Windows per predictor call.
        gaussian: Blend with a Gaussian importance map (else uniform weights).
        sigma_scale: Gaussian sigma as a fraction of the patch size (nnU-Net uses 1/8).
        tta_axes: Spatial axes (0 = z, 1 = y, 2 = x) to mirror for test-time augmentation; every
            combination of flips is predicted, flipped back and averaged (2^n predictor calls).
        num_classes: Expected K; checked against the predictor output when given.
        pad_value: Fill for volumes smaller than the patch; None uses each channel's minimum.
        progress: Show a tqdm progress bar over predictor calls.

    Returns:
        The blended predictor outputs, float32 `(K, Z, Y, X)` on the input grid.
    """
    output: np.ndarray | None = None
    slabs = sliding_window_slabs(
        image,
        predictor,
        patch_size,
        overlap,
        batch_size,
        gaussian,
        sigma_scale,
        tta_axes,
        num_classes,
        pad_value,
        progress,
    )
    for start, slab in slabs:
        if output is None:
            output = np.empty((slab.shape[0], *image.shape[1:]), dtype=np.float32)
        output[:, start : start + slab.shape[1]] = slab
    return output
