"""Human-readable tables and files of evaluation results."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from medseg.utils.atomic import write_text_atomic


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.4f}")


def format_table(summary: dict[str, Any], metrics: Sequence[str]) -> str:
    """Per-class means (and cases counted) plus the foreground mean, as aligned text."""
    per_class = summary["per_class"]
    width = max([len("foreground mean"), *(len(name) for name in per_class)])
    header = f"{'class':<{width}}  " + "  ".join(f"{m:>10}" for m in metrics) + "  cases"
    lines = [header, "-" * len(header)]
    for name, entry in per_class.items():
        values = "  ".join(f"{_fmt(entry[m]['mean']):>10}" for m in metrics)
        lines.append(f"{name:<{width}}  {values}  {entry[metrics[0]]['count']:>5}")
    lines.append("-" * len(header))
    means = "  ".join(f"{_fmt(summary['foreground_mean'][m]):>10}" for m in metrics)
    lines.append(f"{'foreground mean':<{width}}  {means}")
    return "\n".join(lines)


def write_results(
    save_dir: str | os.PathLike, rows: list[dict[str, Any]], summary: dict[str, Any], extra: dict
) -> None:
    """Write `metrics_per_case.csv` and `summary.json` (with `extra` merged in) atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(os.path.join(save_dir, "metrics_per_case.csv"), buffer.getvalue())
    payload = {**extra, **summary}
    write_text_atomic(
        os.path.join(save_dir, "summary.json"), json.dumps(payload, indent=2, allow_nan=True)
    )
