"""Post-processing of predicted label maps (torch-free, numpy/scipy)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.ndimage

# 26-connectivity: voxels touching by a face, an edge or a corner belong to one component, so a
# thin diagonal structure is not cut into pieces and partly removed.
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def keep_largest_component(label: np.ndarray, class_ids: Iterable[int]) -> np.ndarray:
    """Keep only the largest connected component of each class in `class_ids`.

    Voxels of the smaller components become background (0). Classes not listed, and classes
    absent from the map, are left as they are. Ties keep the component found first in array
    order. Returns a new array of `label`'s dtype.
    """
    if label.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) label map, got shape {label.shape}")
    out = label.copy()
    for class_id in class_ids:
        mask = label == class_id
        components, count = scipy.ndimage.label(mask, structure=FULL_CONNECTIVITY)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[mask & (components != int(np.argmax(sizes)))] = 0
    return out
