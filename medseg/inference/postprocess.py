"""Post-processing of predicted label maps (torch-free, numpy/scipy)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage

from medseg.cvlibs.errors import ConfigError

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


@dataclass(frozen=True)
class PostprocessSettings:
    """What is done to a predicted label map before it is written or scored.

    Attributes:
        largest_component: Sorted foreground class ids reduced to their largest component.
    """

    largest_component: tuple[int, ...] = ()


def postprocess_settings(
    node: Any, num_classes: int | None, path: str | None
) -> PostprocessSettings:
    """Validate a `postprocess:` mapping (of a config or deploy.yaml).

    Args:
        node: The mapping; None or empty means no post-processing.
        num_classes: The model's class count, bounding the ids (None: not known yet).
        path: Where the mapping was written, for error messages.
    """
    node = node or {}
    if not isinstance(node, dict):
        raise ConfigError(f"expected a mapping, got {node!r}", path, "postprocess")
    unknown = sorted(set(node) - {"largest_component"})
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown}; accepted: largest_component", path, "postprocess"
        )
    ids = node.get("largest_component") or []
    top = num_classes if num_classes is not None else np.inf
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 < i < top for i in ids
    ):
        bound = f"1..{num_classes - 1}" if num_classes is not None else "ids >= 1"
        raise ConfigError(
            f"expected a list of foreground class ids ({bound}), got {ids!r}",
            path,
            "postprocess.largest_component",
        )
    return PostprocessSettings(largest_component=tuple(sorted(set(ids))))
