"""Voxel-counting overlap metrics of two boolean masks: Dice, IoU, precision, recall.

With TP = |P ∩ R|, FP = |P − R|, FN = |R − P| for a prediction P and a reference R:

- Dice = 2·TP / (2·TP + FP + FN)
- IoU (Jaccard) = TP / (TP + FP + FN)
- precision (positive predictive value) = TP / (TP + FP)
- recall (sensitivity) = TP / (TP + FN)

Edge cases follow the formulas, with 0/0 read as undefined:

- both masks empty: every metric is NaN (nothing to score; summaries leave it out, as nnU-Net does);
- only the reference empty: Dice = IoU = precision = 0, recall NaN (no reference voxel to recall);
- only the prediction empty: Dice = IoU = recall = 0, precision NaN (no predicted voxel to judge).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medseg.metrics.validation import check_pair


def confusion_counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int]:
    """Return `(TP, FP, FN)` voxel counts of a boolean prediction against a boolean reference."""
    check_pair(pred, ref)
    tp = int(np.count_nonzero(pred & ref))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(ref)) - tp


def _ratio(numerator: int, denominator: int) -> float:
    """`numerator / denominator`, NaN when the denominator is 0 (the metric is undefined)."""
    return numerator / denominator if denominator else float("nan")


# Each formula maps the counts (TP, FP, FN) to the metric; `compute_case_metrics` reuses them.
FORMULAS: dict[str, Callable[[int, int, int], float]] = {
    "dice": lambda tp, fp, fn: _ratio(2 * tp, 2 * tp + fp + fn),
    "iou": lambda tp, fp, fn: _ratio(tp, tp + fp + fn),
    "precision": lambda tp, fp, fn: _ratio(tp, tp + fp),
    "recall": lambda tp, fp, fn: _ratio(tp, tp + fn),
}


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient 2·TP / (2·TP + FP + FN); NaN when both masks are empty."""
    return FORMULAS["dice"](*confusion_counts(pred, ref))


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union TP / (TP + FP + FN); NaN when both masks are empty."""
    return FORMULAS["iou"](*confusion_counts(pred, ref))


def precision(pred: np.ndarray, ref: np.ndarray) -> float:
    """Precision TP / (TP + FP); NaN when the prediction is empty."""
    return FORMULAS["precision"](*confusion_counts(pred, ref))


def recall(pred: np.ndarray, ref: np.ndarray) -> float:
    """Recall TP / (TP + FN); NaN when the reference is empty."""
    return FORMULAS["recall"](*confusion_counts(pred, ref))
