"""NumPy/SciPy kernels behind the transforms: argument parsing, crop/pad, resampling, rotation.

Every kernel works on spatial axes `(z, y, x)`; images carry a leading channel axis, label maps
do not. Kernels never modify their inputs and return freshly allocated arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

Triple = tuple[int, int, int]


def to_range(
    value: float | Sequence[float], name: str, symmetric: bool = False
) -> tuple[float, float]:
    """Return `(low, high)` from a 2-sequence, or from one number as `(-v, v)` if `symmetric`."""
    if isinstance(value, (int, float, np.number)):
        if not symmetric:
            raise ValueError(f"{name} must be a pair (low, high), got {value!r}")
        if value < 0:
            raise ValueError(f"{name} given as one number must be >= 0, got {value!r}")
        return -float(value), float(value)
    pair = list(value)
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError(f"{name} must be a pair (low, high) with low <= high, got {value!r}")
    return float(pair[0]), float(pair[1])


def check_prob(prob: float, name: str) -> float:
    """Return `prob` (a probability or fraction) as a float after checking it lies in [0, 1]."""
    if not 0.0 <= float(prob) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {prob!r}")
    return float(prob)


def check_fill(fill: float | str, name: str) -> float | str:
    """Validate an image fill: the string "min" or a number."""
    if isinstance(fill, str):
        if fill != "min":
            raise ValueError(f"{name} must be 'min' or a number, got {fill!r}")
        return fill
    return float(fill)


def fill_values(image: np.ndarray, fill: float | str) -> np.ndarray:
    """Per-channel fill for regions outside the image: `"min"` (each channel's minimum) or a number.

    The minimum is the default in the spatial transforms because it is the background of both CT
    (air) and normalised MR, whereas 0 is mid-grey after z-score normalisation.
    """
    if fill == "min":
        return image.reshape(image.shape[0], -1).min(axis=1)
    return np.full(image.shape[0], fill, dtype=np.float32)


def crop_pad(
    volume: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float | np.ndarray = 0
) -> np.ndarray:
    """Copy the box `[start, start + size)` of the last three axes, padding outside with `fill`.

    `start` may be negative and the box may run past the end: those voxels get `fill` (a scalar,
    or one value per leading channel). Work and memory scale with the box, not the volume.
    """
    spatial = volume.shape[-3:]
    src, dst = [], []
    for s, n, dim in zip(start, size, spatial, strict=True):
        lo, hi = max(s, 0), max(min(s + n, dim), max(s, 0))
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out = np.empty(volume.shape[:-3] + tuple(size), dtype=volume.dtype)
    if any(sl.stop - sl.start < n for sl, n in zip(src, size, strict=True)):
        out[...] = np.reshape(fill, (*np.shape(fill), 1, 1, 1))
    out[(..., *dst)] = volume[(..., *src)]
    return out


def _source_coords(start: int, size: int, out: int, dim: int) -> np.ndarray:
    """Input coordinates of `out` output voxel centres spread over `[start, start + size)`.

    Half-pixel convention (voxel centres map to voxel centres, as skimage and
    `align_corners=False`); coordinates are clamped to the volume, i.e. edges are replicated.
    """
    scale = size / out
    return np.clip(start + (np.arange(out) + 0.5) * scale - 0.5, 0, dim - 1)


def resample_box(
    volume: np.ndarray,
    start: Sequence[int],
    size: Sequence[int],
    out_shape: Sequence[int],
    order: int,
) -> np.ndarray:
    """Resample the box `[start, start + size)` of a 3-D volume onto a grid of `out_shape`.

    Orders 0 and 1 are separable, so they run as index gathers (one for nearest, one per axis for
    linear, shrinking axes first): 3-9x faster than `scipy.ndimage.affine_transform` and equal to
    it within float rounding. Higher spline orders use scipy on the box plus a margin. Only the
    box is read, so the cost scales with the output. Order 0 keeps the input dtype (label maps);
    the others return float32.
    """
    coords = [
        _source_coords(s, n, o, d)
        for s, n, o, d in zip(start, size, out_shape, volume.shape, strict=True)
    ]
    if order == 0:
        return volume[np.ix_(*(np.rint(c).astype(np.intp) for c in coords))]
    if order == 1:
        below = [np.floor(c).astype(np.intp) for c in coords]
        above = [np.minimum(b + 1, d - 1) for b, d in zip(below, volume.shape, strict=True)]
        low = [b[0] for b in below]
        box = volume[
            low[0] : above[0][-1] + 1, low[1] : above[1][-1] + 1, low[2] : above[2][-1] + 1
        ]
        out = np.asarray(box, dtype=np.float32)
        for axis in sorted(range(3), key=lambda a: out_shape[a] / out.shape[a]):
            weight = (coords[axis] - below[axis]).astype(np.float32)
            weight = weight.reshape([-1 if a == axis else 1 for a in range(3)])
            lower = np.take(out, below[axis] - low[axis], axis=axis)
            upper = np.take(out, above[axis] - low[axis], axis=axis)
            upper -= lower
            upper *= weight
            lower += upper
            out = lower
        return out
    margin = 2 * order
    low = [max(s - margin, 0) for s in start]
    high = [min(s + n + margin, d) for s, n, d in zip(start, size, volume.shape, strict=True)]
    region = volume[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    scale = np.asarray(size, dtype=np.float64) / np.asarray(out_shape, dtype=np.float64)
    offset = np.asarray(start, dtype=np.float64) - low + 0.5 * scale - 0.5
    return ndimage.affine_transform(
        region,
        scale,
        offset,
        output_shape=tuple(out_shape),
        output=np.float32,
        order=order,
        mode="nearest",
        prefilter=True,
    )


def rotate_plane(
    volume: np.ndarray, plane: Sequence[int], degrees: float, order: int, fill: float = 0.0
) -> np.ndarray:
    """Rotate a 3-D volume by `degrees` about its centre within the plane of two axes.

    Same direction as `scipy.ndimage.rotate(volume, degrees, axes=plane)`, which MedicalSeg uses.
    The rotation is the same for every slice along the third axis, so the source positions are
    computed once for one slice and all slices are read with the same gather: nearest neighbour
    (`order=0`, for label maps) or bilinear (`order=1`). That is about 2x (linear) and 10x
    (nearest) faster than scipy. Neighbours outside the volume count as `fill`; the output keeps
    the input dtype.
    """
    if order not in (0, 1):
        raise ValueError(f"rotation supports order 0 (nearest) or 1 (linear), got {order!r}")
    a, b = sorted(plane)
    keep = 3 - a - b
    slices = np.moveaxis(volume, keep, 0)
    depth, n_a, n_b = slices.shape
    flat = slices.reshape(depth, n_a * n_b)
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    centre_a, centre_b = (n_a - 1) / 2.0, (n_b - 1) / 2.0
    rel_a = np.arange(n_a, dtype=np.float64)[:, None] - centre_a
    rel_b = np.arange(n_b, dtype=np.float64)[None, :] - centre_b
    src_a = (cos * rel_a + sin * rel_b + centre_a).ravel()
    src_b = (cos * rel_b - sin * rel_a + centre_b).ravel()

    def gather(ia: np.ndarray, ib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = (ia >= 0) & (ia < n_a) & (ib >= 0) & (ib < n_b)
        return flat[:, np.where(inside, ia * n_b + ib, 0)], inside

    if order == 0:
        out, inside = gather(np.rint(src_a).astype(np.intp), np.rint(src_b).astype(np.intp))
        out[:, ~inside] = fill
    else:
        base_a, base_b = np.floor(src_a), np.floor(src_b)
        frac_a, frac_b = src_a - base_a, src_b - base_b
        base_a, base_b = base_a.astype(np.intp), base_b.astype(np.intp)
        out = np.zeros((depth, n_a * n_b), dtype=np.float32)
        outside_weight = np.ones(n_a * n_b)
        for step_a, weight_a in ((0, 1.0 - frac_a), (1, frac_a)):
            for step_b, weight_b in ((0, 1.0 - frac_b), (1, frac_b)):
                values, inside = gather(base_a + step_a, base_b + step_b)
                weight = np.where(inside, weight_a * weight_b, 0.0)
                outside_weight -= weight
                values = values.astype(np.float32, copy=False)
                values *= weight.astype(np.float32)
                out += values
        if fill != 0:
            out += np.float32(fill) * np.clip(outside_weight, 0.0, 1.0).astype(np.float32)
        out = out.astype(volume.dtype, copy=False)
    return np.moveaxis(out.reshape(depth, n_a, n_b), 0, keep)


def foreground_bbox(label: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Return `(low, high)` (high exclusive) of the voxels with label > 0, or None if none."""
    mask = label > 0
    low, high = [], []
    for axis in range(3):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size == 0:
            return None
        low.append(hits[0])
        high.append(hits[-1] + 1)
    return np.array(low), np.array(high)


def sample_foreground_voxel(
    label: np.ndarray, rng: np.random.Generator, ignore_index: int | None = None
) -> np.ndarray | None:
    """Pick a random class present in `label` (ids > 0), then a random voxel of that class.

    Ids <= 0 and `ignore_index` (e.g. MedicalSeg's 255 "unlabelled") are never chosen. Classes
    are chosen uniformly, not by size, so small structures are seen as often as large ones.
    Cost: two passes over the volume plus a sort of the foreground ids only. Returns the
    `(z, y, x)` index, or None when the label has no foreground.
    """
    flat = label.reshape(-1)
    foreground = np.flatnonzero(flat > 0)
    ids = flat[foreground]
    classes = np.unique(ids)
    if ignore_index is not None:
        classes = classes[classes != ignore_index]
    if classes.size == 0:
        return None
    chosen = classes[rng.integers(classes.size)]
    candidates = foreground[ids == chosen]
    return np.array(np.unravel_index(candidates[rng.integers(candidates.size)], label.shape))


def _per_channel(
    value: float | Sequence[float] | None, channels: int, name: str
) -> np.ndarray | None:
    """Broadcast a scalar or per-channel sequence to `channels` floats (None stays None)."""
    if value is None:
        return None
    values = np.asarray(value, dtype=np.float64).reshape(-1)
    if values.size == 1:
        return np.repeat(values, channels)
    if values.size != channels:
        raise ValueError(
            f"{name} has {values.size} values but the image has {channels} channels; "
            "give one value or one per channel"
        )
    return values


def normalize_channels(
    image: np.ndarray,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    nonzero: bool = False,
    eps: float = 1e-8,
) -> np.ndarray:
    """Z-score each channel with the given (scalar or per-channel) or computed mean/std.

    With `nonzero`, statistics come from the non-zero voxels of the channel and only those voxels
    are changed (zero background stays zero, as for skull-stripped brain MR).
    """
    means = _per_channel(mean, image.shape[0], "mean")
    stds = _per_channel(std, image.shape[0], "std")
    out = np.empty_like(image, dtype=np.float32)
    for c, channel in enumerate(image):
        mask = channel != 0 if nonzero else None
        values = channel if mask is None else channel[mask]
        if values.size == 0:
            out[c] = channel
            continue
        mu = values.mean(dtype=np.float64) if means is None else means[c]
        sigma = values.std(dtype=np.float64) if stds is None else stds[c]
        scaled = (channel - np.float32(mu)) / np.float32(max(sigma, eps))
        out[c] = scaled if mask is None else np.where(mask, scaled, channel)
    return out
