"""Reorient arrays to the LPS-canonical axis order by axis permutation and flips only.

"Canonical" means the ITK direction becomes as close to identity as permutations and flips allow:
array axis x runs towards patient Left, y towards Posterior, z towards Superior. In our
(z, y, x) direction matrix that is column 0 → physical z, column 1 → y, column 2 → x. No voxel is
interpolated; an oblique residual rotation stays in the geometry.

A transform is `(permutation, flips)`: new array axis k is old axis `permutation[k]`, reversed
when `flips[k]`. It acts on the last three axes, so it applies to (Z, Y, X) and (C, Z, Y, X).
"""

from __future__ import annotations

import itertools

import numpy as np

from medseg.preprocessing.io import Geometry

Permutation = tuple[int, int, int]
Flips = tuple[bool, bool, bool]
IDENTITY: tuple[Permutation, Flips] = ((0, 1, 2), (False, False, False))


def lps_transform(geometry: Geometry) -> tuple[Permutation, Flips]:
    """The permutation and flips that bring `geometry` closest to the canonical LPS direction."""
    matrix = geometry.matrix
    # Array axis k should point along physical axis 2 - k (z, y, x). Choose the assignment of old
    # axes to new axes with the largest total alignment, which is unique for non-degenerate input.
    best = max(
        itertools.permutations(range(3)),
        key=lambda perm: sum(abs(matrix[2 - k, perm[k]]) for k in range(3)),
    )
    flips = tuple(bool(matrix[2 - k, best[k]] < 0) for k in range(3))
    return tuple(best), flips


def reorient(array: np.ndarray, permutation: Permutation, flips: Flips) -> np.ndarray:
    """Permute then flip the last three axes of `array` (a view, no copy)."""
    lead = array.ndim - 3
    out = np.transpose(array, tuple(range(lead)) + tuple(lead + p for p in permutation))
    flip_axes = tuple(lead + k for k in range(3) if flips[k])
    return np.flip(out, axis=flip_axes) if flip_axes else out


def undo_reorient(array: np.ndarray, permutation: Permutation, flips: Flips) -> np.ndarray:
    """Exact inverse of `reorient` (a view, no copy)."""
    lead = array.ndim - 3
    flip_axes = tuple(lead + k for k in range(3) if flips[k])
    out = np.flip(array, axis=flip_axes) if flip_axes else array
    inverse = np.argsort(permutation)
    return np.transpose(out, tuple(range(lead)) + tuple(lead + int(p) for p in inverse))


def reorient_geometry(geometry: Geometry, permutation: Permutation, flips: Flips) -> Geometry:
    """The geometry of `reorient(array, ...)`: same voxels, same physical positions."""
    shape = tuple(geometry.shape[p] for p in permutation)
    signs = np.where(flips, -1.0, 1.0)
    direction = geometry.matrix[:, list(permutation)] * signs + 0.0  # no negative zeros
    # New voxel 0 is the old voxel at the far end of every flipped axis.
    old_index = [0, 0, 0]
    for k, p in enumerate(permutation):
        old_index[p] = shape[k] - 1 if flips[k] else 0
    return Geometry(
        shape=shape,
        spacing=tuple(geometry.spacing[p] for p in permutation),
        origin=geometry.physical_point(old_index),
        direction=direction,
    )
