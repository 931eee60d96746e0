"""Resample to a new grid over the same physical extent (voxel-centre mapping, edges aligned).

Old and new grids share their outer edges: new voxel k samples the old continuous index
`(k + 0.5) * old_n / new_n - 0.5`, which is `scipy.ndimage.zoom(..., grid_mode=True)`. With that
mapping, a nearest-neighbour up-sample followed by the nearest-neighbour resample back returns
the original labels exactly. Axes whose size does not change keep their voxels untouched.

Label maps are never interpolated as numbers: nearest neighbour, or one-hot maps interpolated
linearly and then arg-maxed ("onehot"), which can only produce ids present in the input.

`backend` is the seam for a GPU path (cupyx.scipy.ndimage); only "numpy" exists today.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np
import scipy.ndimage

from medseg.preprocessing.io import Geometry

IMAGE_ORDERS = (1, 3)
LABEL_METHODS = ("nearest", "onehot")
BACKENDS = ("numpy",)


def _ndimage(backend: str) -> ModuleType:
    if backend == "numpy":
        return scipy.ndimage
    raise ValueError(f"resampling backend {backend!r} is not available; accepted: {BACKENDS}")


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


def _zoom(
    volume: np.ndarray, shape: Sequence[int], order: int, dtype: np.dtype, backend: str
) -> np.ndarray:
    factors = [new / old for new, old in zip(shape, volume.shape, strict=True)]
    out = _ndimage(backend).zoom(
        volume, factors, output=dtype, order=order, mode="nearest", grid_mode=True
    )
    if out.shape != tuple(shape):  # zoom rounds old * factor; guard the arithmetic
        raise RuntimeError(f"zoom produced shape {out.shape}, expected {tuple(shape)}")
    return out


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
    return np.stack([_zoom(c, shape, order, np.float32, backend) for c in image])


def resample_label(
    label: np.ndarray, shape: Sequence[int], method: str = "nearest", backend: str = "numpy"
) -> np.ndarray:
    """Resample a (Z, Y, X) label map to `shape`, keeping its dtype and its set of ids."""
    if method not in LABEL_METHODS:
        raise ValueError(f"label interpolation must be one of {LABEL_METHODS}, got {method!r}")
    if label.ndim != 3:
        raise ValueError(f"resample_label expects (Z, Y, X), got shape {label.shape}")
    shape = tuple(int(n) for n in shape)
    if label.shape == shape:
        return label.copy()
    if method == "nearest":
        return _zoom(label, shape, 0, label.dtype, backend)
    ids = np.unique(label)
    out = np.full(shape, ids[0], dtype=label.dtype)
    best = _zoom((label == ids[0]).astype(np.float32), shape, 1, np.float32, backend)
    for value in ids[1:]:
        score = _zoom((label == value).astype(np.float32), shape, 1, np.float32, backend)
        wins = score > best  # ties keep the lower id
        out[wins] = value
        best[wins] = score[wins]
    return out
