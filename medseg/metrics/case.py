"""All requested metrics of one case, for every foreground class, from two label maps.

Each class is scored on the bounding box of its voxels in either map (found for all classes in one
pass with `scipy.ndimage.find_objects`), so a case with many small organs costs about one pass over
the volume plus work proportional to the organs, not classes × volume. The surface distances of a
class are computed once and every distance metric is read from them. Definitions and edge cases:
`medseg.metrics.overlap` and `medseg.metrics.surface`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from medseg.metrics.overlap import FORMULAS, confusion_counts
from medseg.metrics.surface import SurfaceDistances, surface_distances
from medseg.metrics.validation import check_spacing

DISTANCE_METRICS: dict[str, Callable[[SurfaceDistances, float], float]] = {
    "hausdorff": lambda d, tolerance: d.hausdorff(),
    "hd95": lambda d, tolerance: d.percentile(95.0),
    "assd": lambda d, tolerance: d.assd(),
    "nsd": lambda d, tolerance: d.nsd(tolerance),
}
METRIC_NAMES: tuple[str, ...] = (*FORMULAS, *DISTANCE_METRICS)


def _check_label_map(name: str, labels: np.ndarray) -> None:
    """Require a label map of non-negative integers (what `find_objects` and the rows assume)."""
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"`{name}` must be an integer label map (Z, Y, X), got {got}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"`{name}` holds negative label {labels.min()}; labels must be >= 0")


def _check_request(
    class_ids: Sequence[int], metrics: Sequence[str], nsd_tolerance: float | None
) -> None:
    """Reject background or repeated classes, unknown metric names and NSD without a tolerance."""
    ids = [int(c) for c in class_ids]
    if any(c <= 0 for c in ids) or len(set(ids)) != len(ids):
        raise ValueError(
            f"`class_ids` must be distinct foreground labels > 0 (background is never scored), "
            f"got {list(class_ids)}"
        )
    unknown = [m for m in metrics if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; available: {list(METRIC_NAMES)}")
    if "nsd" in metrics and nsd_tolerance is None:
        raise ValueError("metric 'nsd' needs `nsd_tolerance` (in mm), got None")


def _class_boxes(
    pred: np.ndarray, ref: np.ndarray, max_label: int
) -> list[tuple[slice, ...] | None]:
    """Per label 1..max_label: the bounding box of its voxels in `pred` or `ref`, None if absent."""
    boxes = []
    for box_p, box_r in zip(
        ndimage.find_objects(pred, max_label=max_label),
        ndimage.find_objects(ref, max_label=max_label),
        strict=True,
    ):
        if box_p is None or box_r is None:
            boxes.append(box_p or box_r)
        else:
            boxes.append(
                tuple(
                    slice(min(p.start, r.start), max(p.stop, r.stop))
                    for p, r in zip(box_p, box_r, strict=True)
                )
            )
    return boxes


def compute_case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    class_ids: Sequence[int],
    metrics: Sequence[str] = ("dice", "hd95"),
    nsd_tolerance: float | None = None,
) -> list[dict[str, float | int]]:
    """Score a predicted label map against a reference, one row per foreground class.

    Args:
        pred: Predicted label map, integer `(Z, Y, X)`.
        ref: Reference label map, same shape.
        spacing: Voxel size in mm, `(z, y, x)`.
        class_ids: Foreground labels to score (> 0); a class absent from both maps gets NaN rows.
        metrics: Names from `METRIC_NAMES`: dice, iou, precision, recall, hausdorff, hd95,
            assd, nsd.
        nsd_tolerance: NSD tolerance in mm; required when "nsd" is requested.

    Returns:
        `[{"class_id": c, <metric>: value, ...}, ...]` in the order of `class_ids`.
    """
    _check_label_map("pred", pred)
    _check_label_map("ref", ref)
    if pred.shape != ref.shape:
        raise ValueError(f"`pred` and `ref` shapes differ: {pred.shape} vs {ref.shape}")
    sampling = check_spacing(spacing, pred.ndim)
    _check_request(class_ids, metrics, nsd_tolerance)
    boxes = _class_boxes(pred, ref, max(int(c) for c in class_ids)) if class_ids else []
    wants_distances = any(m in DISTANCE_METRICS for m in metrics)
    rows: list[dict[str, float | int]] = []
    for class_id in class_ids:
        box = boxes[int(class_id) - 1]
        empty = np.zeros((0,) * pred.ndim, dtype=bool)
        mask_p = pred[box] == class_id if box else empty
        mask_r = ref[box] == class_id if box else empty
        row: dict[str, float | int] = {"class_id": int(class_id)}
        counts = confusion_counts(mask_p, mask_r)
        distances = surface_distances(mask_p, mask_r, sampling) if wants_distances else None
        for name in metrics:
            if name in FORMULAS:
                row[name] = FORMULAS[name](*counts)
            else:
                row[name] = DISTANCE_METRICS[name](distances, nsd_tolerance)
        rows.append(row)
    return rows
