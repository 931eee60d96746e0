"""Human-readable tables and files of evaluation results."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from medseg.utils.atomic import write_text_atomic

BASE_COLUMNS = ("case", "class_id", "class_name")


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.4f}")


def named_rows(
    case_id: str, rows: Sequence[Mapping[str, Any]], class_names: Mapping[int, str]
) -> list[dict[str, Any]]:
    """One case's metric rows with the case id and class name added: the CSV's row layout.

    Columns: `BASE_COLUMNS`, then the metrics in the order they were computed.
    """
    return [
        {
            "case": case_id,
            "class_id": int(row["class_id"]),
            "class_name": class_names[int(row["class_id"])],
            **{key: value for key, value in row.items() if key != "class_id"},
        }
        for row in rows
    ]


def format_table(summary: dict[str, Any], metrics: Sequence[str]) -> str:
    """Per-class means (and cases counted) plus the foreground mean, as aligned text."""
    per_class = summary["per_class"]
    width = max([len("foreground mean"), *(len(name) for name in per_class)])
    header = f"{'class':<{width}}  " + "  ".join(f"{m:>10}" for m in metrics) + "  cases"
    lines = [header, "-" * len(header)]
    nan = float("nan")
    for name, entry in per_class.items():
        values = "  ".join(f"{_fmt(entry.get(m, {}).get('mean', nan)):>10}" for m in metrics)
        count = entry.get(metrics[0], {}).get("count", 0)
        lines.append(f"{name:<{width}}  {values}  {count:>5}")
    lines.append("-" * len(header))
    means = "  ".join(f"{_fmt(summary['foreground_mean'].get(m, nan)):>10}" for m in metrics)
    lines.append(f"{'foreground mean':<{width}}  {means}")
    return "\n".join(lines)


def write_results(
    save_dir: str | os.PathLike, rows: list[dict[str, Any]], summary: dict[str, Any], extra: dict
) -> None:
    """Write `metrics_per_case.csv` and `summary.json` (with `extra` merged in) atomically."""
    columns = list(dict.fromkeys(key for row in rows for key in row)) or list(BASE_COLUMNS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(os.path.join(save_dir, "metrics_per_case.csv"), buffer.getvalue())
    payload = {**extra, **summary}
    write_text_atomic(
        os.path.join(save_dir, "summary.json"), json.dumps(payload, indent=2, allow_nan=True)
    )
