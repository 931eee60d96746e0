"""Resample to a new grid over the same physical extent (voxel-centre mapping, edges aligned).

Old and new grids share their outer edges: new voxel k samples the old continuous index
`(k + 0.5) * old_n / new_n - 0.5` (clamped to the array: edge voxels repeat), which is
`scipy.ndimage.zoom(..., grid_mode=True, mode="nearest")`. With that mapping, a nearest-neighbour
up-sample followed by the nearest-neighbour resample back returns the original labels exactly.
Axes whose size does not change keep their voxels untouched.

Linear interpolation is separable, so it runs one axis at a time (shrinking axes first, so later
passes touch fewer voxels), in float32, split over threads: several times faster than `zoom`
with `order=1` and within float32 rounding of it. Cubic (spline) and nearest use `zoom`.

Label maps are never interpolated as numbers: nearest neighbour, or one-hot maps interpolated
linearly and then arg-maxed ("onehot"), which can only produce ids present in the input.

`backend` is "numpy" (NumPy/SciPy) or "cupy" (CuPy/cupyx.scipy.ndimage on a GPU; see
`medseg.preprocessing.backend`). Inputs and outputs are NumPy arrays either way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from medseg.preprocessing.backend import array_module, ndimage_module
from medseg.preprocessing.io import Geometry
from medseg.utils.vocabulary import choose

IMAGE_ORDERS = (1, 3)
LABEL_METHODS = ("nearest", "onehot")

# Below this many output voxels per pass, starting threads costs more than it saves.
_THREADED_MIN_VOXELS = 1 << 20
# Output voxels per block of a pass: its temporary (one float32 copy of the block) stays small.
_BLOCK_VOXELS = 1 << 23


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]
) -> tuple[int, int, int]:
    """`round(shape * spacing / target_spacing)` per axis, at least 1."""
    if len(target_spacing) != 3 or min(target_spacing) <= 0:
        raise ValueError(
            f"target spacing must be 3 positive numbers (z, y, x), got {target_spacing}"
        )
    ratio = np.asarray(shape) * np.asarray(spacing, dtype=np.float64) / np.asarray(target_spacing)
    return tuple(max(int(n), 1) for n in np.round(ratio))


def resample_geometry(geometry: Geometry, shape: Sequence[int]) -> Geometry:
    """The geometry of an array resampled from `geometry` to `shape` over the same extent."""
    old_shape, old_spacing = np.asarray(geometry.shape), np.asarray(geometry.spacing)
    new_shape = np.asarray(shape)
    changed = new_shape != old_shape
    spacing = np.where(changed, old_spacing * old_shape / new_shape, old_spacing)
    # The first voxel centre moves from half an old voxel to half a new voxel inside the edge.
    first_centre = np.where(changed, (spacing / old_spacing - 1.0) / 2.0, 0.0)
    origin = geometry.physical_point(first_centre) if changed.any() else geometry.origin
    return geometry.replace(shape=tuple(shape), spacing=tuple(spacing), origin=tuple(origin))


def _to_device(array: np.ndarray, xp: Any) -> Any:
    return array if xp is np else xp.asarray(array)


def _to_host(array: Any) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else array.get()


def _zoom(
    volume: np.ndarray, shape: Sequence[int], order: int, dtype: np.dtype, backend: str
) -> np.ndarray:
    factors = [new / old for new, old in zip(shape, volume.shape, strict=True)]
    data = _to_device(volume, array_module(backend))
    out = ndimage_module(backend).zoom(
        data, factors, output=dtype, order=order, mode="nearest", grid_mode=True
    )
    if out.shape != tuple(shape):  # zoom rounds old * factor; guard the arithmetic
        raise RuntimeError(f"zoom produced shape {out.shape}, expected {tuple(shape)}")
    return _to_host(out)


def _linear_taps(old: int, new: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper source indices and the upper weight of each new voxel along one axis."""
    coords = np.clip((np.arange(new, dtype=np.float64) + 0.5) * (old / new) - 0.5, 0, old - 1)
    lower = np.floor(coords).astype(np.intp)
    upper = np.minimum(lower + 1, old - 1)
    return lower, upper, (coords - lower).astype(np.float32)


Taps = tuple[np.ndarray, np.ndarray, np.ndarray]


def linear_taps(old: int, new: int) -> Taps:
    """Per new voxel along one axis: lower and upper source index and the upper weight.

    An axis whose size does not change maps each voxel to itself (weight 0): no pass runs there.
    """
    if old == new:
        index = np.arange(new, dtype=np.intp)
        return index, index, np.zeros(new, dtype=np.float32)
    return _linear_taps(old, new)


def pass_order(source: Sequence[int], shape: Sequence[int]) -> list[int]:
    """The axes a linear resampling from `source` to `shape` passes along, in their order.

    Shrinking axes first, so later passes touch fewer voxels; unchanged axes get no pass. The
    float32 result depends on this order, so every exact re-computation follows it.
    """
    changed = [a for a in range(len(shape)) if int(shape[a]) != int(source[a])]
    return sorted(changed, key=lambda a: int(shape[a]) / int(source[a]))


def _lerp_axis(
    source: Any, axis: int, new: int, xp: Any, out: Any = None, taps: Taps | None = None
) -> Any:
    """Linear resampling of a float32 (Z, Y, X) array along one axis to `new` voxels.

    `taps` (lower, upper, weight), when given, replace `_linear_taps(source.shape[axis], new)`:
    a slab of the source with shifted taps gives the matching planes of the full result.
    """
    taps = _linear_taps(source.shape[axis], new) if taps is None else taps
    lower, upper, weight = (_to_device(a, xp) for a in taps)
    weight = weight.reshape([-1 if a == axis else 1 for a in range(source.ndim)])
    shape = list(source.shape)
    shape[axis] = new
    out = xp.empty(shape, dtype=xp.float32) if out is None else out
    unbuffered = {"mode": "clip"} if xp is np else {}  # NumPy buffers `out` in "raise" mode

    def run(block: tuple[slice, ...]) -> None:
        part, target = source[block], out[block]
        low = xp.take(part, lower, axis=axis)
        xp.take(part, upper, axis=axis, out=target, **unbuffered)
        target -= low
        target *= weight
        target += low

    # Blocks along the largest other axis, shared by one thread per CPU (NumPy releases the
    # GIL in these loops); bounded blocks bound the temporary memory too.
    split = max((a for a in range(source.ndim) if a != axis), key=lambda a: source.shape[a])
    threads = os.cpu_count() or 1
    count = min(source.shape[split], max(threads, -(-out.size // _BLOCK_VOXELS)))
    if xp is not np or count == 1 or out.size < _THREADED_MIN_VOXELS:
        run((slice(None),) * source.ndim)
        return out
    edges = np.linspace(0, source.shape[split], count + 1).astype(int)
    blocks = [
        tuple(slice(a, b) if d == split else slice(None) for d in range(source.ndim))
        for a, b in itertools.pairwise(edges)
    ]
    with ThreadPoolExecutor(min(threads, count)) as pool:
        list(pool.map(run, blocks))
    return out


def _linear(
    volume: np.ndarray, shape: Sequence[int], backend: str, out: np.ndarray | None = None
) -> np.ndarray:
    """Separable linear resampling of one (Z, Y, X) volume to float32 `shape` (into `out`)."""
    xp = array_module(backend)
    result = _to_device(np.asarray(volume, dtype=np.float32), xp)
    order = pass_order(volume.shape, shape)
    for step, axis in enumerate(order):
        last = step == len(order) - 1 and xp is np
        result = _lerp_axis(result, axis, int(shape[axis]), xp, out if last else None)
    if out is None:
        return _to_host(result)
    if result is not out:
        out[...] = _to_host(result)
    return out


def linear_box(
    part: np.ndarray,
    full: Sequence[int],
    shape: Sequence[int],
    box: Sequence[tuple[int, int]],
    offset: Sequence[int],
    backend: str = "numpy",
) -> np.ndarray:
    """A box of the linear resampling of a whole (Z, Y, X) volume, from a part of it.

    `part` holds the volume's voxels from `offset` on (per axis) of a volume of shape `full`; it
    must include every voxel the output `box` (per axis `(start, stop)` on the grid of `shape`)
    interpolates from (`linear_taps`). The result equals, bit for bit,
    `_linear(volume, shape)[box]`: the same passes in the same order, on fewer voxels.
    """
    full = tuple(int(n) for n in full)
    shape = tuple(int(n) for n in shape)
    xp = array_module(backend)
    result = _to_device(np.asarray(part, dtype=np.float32), xp)
    order = pass_order(full, shape)
    kept = tuple(
        slice(None) if axis in order else slice(start - off, stop - off)
        for axis, ((start, stop), off) in enumerate(zip(box, offset, strict=True))
    )
    result = result[kept]
    for axis in order:
        (start, stop), off = box[axis], offset[axis]
        lower, upper, weight = _linear_taps(full[axis], shape[axis])
        taps = (lower[start:stop] - off, upper[start:stop] - off, weight[start:stop])
        result = _lerp_axis(result, axis, stop - start, xp, taps=taps)
    return _to_host(result)


def resample_image(
    image: np.ndarray, shape: Sequence[int], order: int = 1, backend: str = "numpy"
) -> np.ndarray:
    """Resample each channel of a (C, Z, Y, X) image to spatial `shape` (linear or cubic)."""
    if order not in IMAGE_ORDERS:
        raise ValueError(f"image interpolation order must be one of {IMAGE_ORDERS}, got {order}")
    if image.ndim != 4:
        raise ValueError(f"resample_image expects (C, Z, Y, X), got shape {image.shape}")
    shape = tuple(int(n) for n in shape)
    if image.shape[1:] == shape:
        return image.astype(np.float32)
    if order == 1:
        out = np.empty((image.shape[0], *shape), dtype=np.float32)
        for channel, target in zip(image, out, strict=True):
            _linear(channel, shape, backend, target)
        return out
    return np.stack([_zoom(c, shape, order, np.float32, backend) for c in image])


def resample_label(
    label: np.ndarray, shape: Sequence[int], method: str = "nearest", backend: str = "numpy"
) -> np.ndarray:
    """Resample a (Z, Y, X) label map to `shape`, keeping its dtype and its set of ids."""
    choose(method, LABEL_METHODS, "label interpolation")
    if label.ndim != 3:
        raise ValueError(f"resample_label expects (Z, Y, X), got shape {label.shape}")
    shape = tuple(int(n) for n in shape)
    if label.shape == shape:
        return label.copy()
    if method == "nearest":
        return _zoom(label, shape, 0, label.dtype, backend)
    ids = np.unique(label)
    out = np.full(shape, ids[0], dtype=label.dtype)
    best = _linear(label == ids[0], shape, backend)
    for value in ids[1:]:
        score = _linear(label == value, shape, backend)
        wins = score > best  # ties keep the lower id
        out[wins] = value
        best[wins] = score[wins]
    return out
