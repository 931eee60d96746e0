"""Summary statistics of per-case metric rows: per class, and the mean over foreground classes."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

RULES = (
    "Per class and metric, over cases: NaN values (class absent from both prediction and "
    "reference, or an undefined ratio such as precision with an empty prediction) are left out, "
    "and `count` is the number of values kept. +inf (a surface distance where exactly one mask is "
    "empty) is kept: it makes `mean` and `std` inf while `median` stays finite unless at least "
    "half the values are inf; `finite_mean` averages the finite values only and `inf_count` says "
    "how many were left out of it. `std` is the population standard deviation (ddof=0). "
    "`foreground_mean` is the mean of the per-class means over foreground classes with a non-NaN "
    "mean (each class weighs the same), and `foreground_finite_mean` the same over per-class "
    "`finite_mean`. Background (label 0) is never scored and never in any mean."
)


def _stats(values: np.ndarray) -> dict[str, float | int]:
    """Mean, std, median, counts and finite-only mean of one class's values of one metric."""
    kept = values[~np.isnan(values)]
    finite = kept[np.isfinite(kept)]
    nan = float("nan")
    has_inf = finite.size < kept.size
    return {
        "mean": float(np.mean(kept)) if kept.size else nan,
        "std": float("inf") if has_inf else (float(np.std(kept)) if kept.size else nan),
        "median": float(np.median(kept)) if kept.size else nan,
        "count": int(kept.size),
        "inf_count": int(kept.size - finite.size),
        "finite_mean": float(np.mean(finite)) if finite.size else nan,
    }


def _is_number(value: object) -> bool:
    """True for metric values (ints and floats, NaN and inf included), not for names or flags."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _mean_of(values: list[float]) -> float:
    """Mean of the non-NaN entries (NaN when there are none)."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def summarize(
    rows: Sequence[Mapping[str, float | int]], class_names: Mapping[int, str]
) -> dict[str, object]:
    """Aggregate metric rows of many cases into per-class statistics and foreground means.

    Args:
        rows: Rows as returned by `compute_case_metrics`, concatenated over cases; every row has
            `class_id` and metric values; non-numeric keys such as `case` or `class_name` are
            ignored.
        class_names: Foreground label → name, e.g. {1: "spleen", 5: "liver"}; the classes to report.

    Returns:
        `{"rules": str, "per_class": {name: {"class_id": c, metric: stats}},
        "foreground_mean": {metric: float}, "foreground_finite_mean": {metric: float}}`
        where stats holds mean, std, median, count, inf_count and finite_mean (see `RULES`).
    """
    if 0 in class_names:
        raise ValueError(
            f"`class_names` must list foreground classes only; got background 0 "
            f"('{class_names[0]}')"
        )
    unknown = sorted({int(r["class_id"]) for r in rows} - {int(c) for c in class_names})
    if unknown:
        raise ValueError(f"rows hold class ids {unknown} missing from `class_names`")
    metric_names = list(
        dict.fromkeys(k for r in rows for k, v in r.items() if k != "class_id" and _is_number(v))
    )
    per_class: dict[str, dict[str, object]] = {}
    for class_id, name in class_names.items():
        class_rows = [r for r in rows if int(r["class_id"]) == int(class_id)]
        entry: dict[str, object] = {"class_id": int(class_id)}
        for metric in metric_names:
            values = np.array([r.get(metric, np.nan) for r in class_rows], dtype=np.float64)
            entry[metric] = _stats(values)
        per_class[name] = entry
    return {
        "rules": RULES,
        "per_class": per_class,
        "foreground_mean": {
            m: _mean_of([c[m]["mean"] for c in per_class.values()]) for m in metric_names
        },
        "foreground_finite_mean": {
            m: _mean_of([c[m]["finite_mean"] for c in per_class.values()]) for m in metric_names
        },
    }
