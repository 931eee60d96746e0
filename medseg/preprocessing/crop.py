"""Crop to the foreground bounding box, and pad back into it to invert.

A box is `((z0, z1), (y0, y1), (x0, x1))` with half-open ranges on the last three array axes.
"""

from __future__ import annotations

import logging

import numpy as np

from medseg.preprocessing.io import Geometry

logger = logging.getLogger(__name__)

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def full_box(shape: tuple[int, ...]) -> Box:
    """The box covering a whole (..., Z, Y, X) array."""
    return tuple((0, int(n)) for n in shape[-3:])


def foreground_box(image: np.ndarray, threshold: float | None = None, margin: int = 0) -> Box:
    """Bounding box of voxels that are foreground in any channel of a (C, Z, Y, X) image.

    Args:
        image: The image, channel first.
        threshold: Foreground is `image > threshold` (e.g. -500 for CT bodies in air);
            None means `image != 0`.
        margin: Voxels added on every side, clipped to the array.

    Returns:
        The box; the whole array (with a warning) when nothing is foreground.
    """
    if image.ndim != 4:
        raise ValueError(f"foreground_box expects a (C, Z, Y, X) image, got shape {image.shape}")
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    mask = np.any(image != 0 if threshold is None else image > threshold, axis=0)
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other))
        if hits.size == 0:
            rule = "!= 0" if threshold is None else f"> {threshold}"
            logger.warning("no voxel has intensity %s; the image is not cropped", rule)
            return full_box(image.shape)
        start = max(int(hits[0]) - margin, 0)
        stop = min(int(hits[-1]) + 1 + margin, image.shape[axis + 1])
        box.append((start, stop))
    return tuple(box)


def crop_to_box(array: np.ndarray, box: Box) -> np.ndarray:
    """The part of a (..., Z, Y, X) array inside `box` (a view)."""
    return array[(..., *(slice(a, b) for a, b in box))]


def pad_from_box(
    array: np.ndarray, box: Box, shape: tuple[int, int, int], fill: float = 0
) -> np.ndarray:
    """Inverse of `crop_to_box`: place `array` at `box` in a new array of spatial `shape`."""
    expected = tuple(b - a for a, b in box)
    if tuple(array.shape[-3:]) != expected:
        raise ValueError(f"array shape {array.shape} does not fit crop box {box} (size {expected})")
    out = np.full((*array.shape[:-3], *shape), fill, dtype=array.dtype)
    out[(..., *(slice(a, b) for a, b in box))] = array
    return out


def crop_geometry(geometry: Geometry, box: Box) -> Geometry:
    """The geometry of `crop_to_box(array, box)`."""
    return geometry.replace(
        shape=tuple(b - a for a, b in box),
        origin=geometry.physical_point([a for a, _ in box]),
    )
