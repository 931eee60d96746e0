"""Segmentation metrics in physical units (torch-free: numpy and scipy only).

One plain function per metric on boolean `(Z, Y, X)` masks (`dice`, `iou`, `precision`, `recall`,
`hausdorff`, `hd95`, `assd`, `nsd`), `compute_case_metrics` for every class of a case at once and
`summarize` for the statistics over cases. Definitions and edge cases are in the module docstrings
of `overlap`, `surface` and `aggregate`.
"""

from medseg.metrics.aggregate import RULES, summarize
from medseg.metrics.case import METRIC_NAMES, compute_case_metrics
from medseg.metrics.overlap import confusion_counts, dice, iou, precision, recall
from medseg.metrics.surface import (
    SurfaceDistances,
    assd,
    hausdorff,
    hd95,
    nsd,
    surface_distances,
    surface_mask,
)

__all__ = [
    "METRIC_NAMES",
    "RULES",
    "SurfaceDistances",
    "assd",
    "compute_case_metrics",
    "confusion_counts",
    "dice",
    "hausdorff",
    "hd95",
    "iou",
    "nsd",
    "precision",
    "recall",
    "summarize",
    "surface_distances",
    "surface_mask",
]
