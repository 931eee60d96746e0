"""Human-readable tables and the result files of an evaluation (torch-free).

`metrics_per_case.csv` (one row per case and class) and `summary.json` (the aggregate, the
errors and what the caller adds) are written here and nowhere else.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from medseg.metrics.results import BASE_COLUMNS, EvaluationResult
from medseg.utils.atomic import write_text_atomic


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.4f}")


def format_table(result: EvaluationResult) -> str:
    """Per-class means (and cases counted) plus the foreground mean, as aligned text."""
    metrics = result.metrics
    per_class = result.per_class
    width = max([len("foreground mean"), *(len(name) for name in per_class)])
    header = f"{'class':<{width}}  " + "  ".join(f"{m:>10}" for m in metrics) + "  cases"
    lines = [header, "-" * len(header)]
    for name, entry in per_class.items():
        values = "  ".join(f"{_fmt(entry.mean(m)):>10}" for m in metrics)
        lines.append(f"{name:<{width}}  {values}  {entry.count(metrics[0]):>5}")
    lines.append("-" * len(header))
    means = "  ".join(f"{_fmt(result.foreground_mean(m)):>10}" for m in metrics)
    lines.append(f"{'foreground mean':<{width}}  {means}")
    return "\n".join(lines)


def format_crossval_table(
    folds: Mapping[int, EvaluationResult], pooled: EvaluationResult, metric: str = "dice"
) -> str:
    """Per class: `metric` of each fold, the mean over folds and over all cases, as text.

    The last row holds each column's foreground mean (per fold: that fold's).
    """
    names = list(pooled.per_class)
    width = max([len("foreground mean"), *(len(name) for name in names)])
    columns = [f"fold_{k}" for k in folds] + ["fold mean", "all cases"]
    header = f"{'class':<{width}}  " + "  ".join(f"{c:>10}" for c in columns)
    lines = [f"cross-validation {metric} ({pooled.space} space)", header, "-" * len(header)]

    def row(label: str, values: list[float]) -> str:
        return f"{label:<{width}}  " + "  ".join(f"{_fmt(v):>10}" for v in values)

    for name in names:
        per_fold = [r.per_class[name].mean(metric) for r in folds.values()]
        lines.append(
            row(name, [*per_fold, _nanmean(per_fold), pooled.per_class[name].mean(metric)])
        )
    lines.append("-" * len(header))
    per_fold = [r.foreground_mean(metric) for r in folds.values()]
    lines.append(
        row("foreground mean", [*per_fold, _nanmean(per_fold), pooled.foreground_mean(metric)])
    )
    return "\n".join(lines)


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def write_results(
    save_dir: str | os.PathLike, result: EvaluationResult, extra: dict[str, Any]
) -> None:
    """Write `metrics_per_case.csv` and `summary.json` atomically.

    summary.json holds `extra`, the space, the metrics, the errors and the aggregate.
    """
    rows = result.rows()
    columns = list(dict.fromkeys(key for row in rows for key in row)) or list(BASE_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(os.path.join(save_dir, "metrics_per_case.csv"), buffer.getvalue())
    payload = {
        "space": result.space,
        "metrics": list(result.metrics),
        **extra,
        "errors": [error.to_dict() for error in result.errors],
        **result.summary,
    }
    write_text_atomic(
        os.path.join(save_dir, "summary.json"), json.dumps(payload, indent=2, allow_nan=True)
    )
