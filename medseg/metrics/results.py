"""Evaluation results as types: one case's scores, one case's failure, and the whole evaluation.

MONAI's metric/aggregate split: `score_case` turns one (prediction, reference) pair into a
`CaseResult`; `EvaluationResult` holds every case of a run and aggregates them (`summarize`'s
rules) into per-class summaries and the foreground mean. val.py, training-time evaluation and
tools/evaluate.py all score through `score_case` and report through `EvaluationResult`, so the
three agree on every number and every file. Torch-free.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medseg.metrics.aggregate import summarize
from medseg.metrics.case import compute_case_metrics

if TYPE_CHECKING:
    from medseg.preprocessing.regions import Regions

BASE_COLUMNS = ("case", "class_id", "class_name")


@dataclass(frozen=True)
class CaseResult:
    """The scores of one case.

    Attributes:
        case: Case id.
        scores: Class id → metric name → value, in the order the metrics were asked for.
        index: Position of the case in its dataset or folder listing (the report's order).
        reference_ids: Foreground ids present in the reference.
    """

    case: str
    scores: dict[int, dict[str, float]]
    index: int = 0
    reference_ids: tuple[int, ...] = ()

    def rows(self, class_names: Mapping[int, str]) -> list[dict[str, object]]:
        """The case's rows of `metrics_per_case.csv`: `BASE_COLUMNS`, then the metrics."""
        return [
            {"case": self.case, "class_id": c, "class_name": class_names[c], **values}
            for c, values in self.scores.items()
        ]


@dataclass(frozen=True)
class CaseError:
    """A case that could not be scored, and why (the batch went on without it)."""

    case: str
    error: str
    index: int = 0

    def to_dict(self) -> dict[str, str]:
        """`{"case", "error"}`, as summary.json lists it."""
        return {"case": self.case, "error": self.error}


def score_case(
    case: str,
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    class_ids: Sequence[int],
    metrics: Sequence[str],
    nsd_tolerance: float | None = None,
    index: int = 0,
) -> CaseResult:
    """Score one prediction against its reference (`compute_case_metrics`) as a `CaseResult`."""
    rows = compute_case_metrics(prediction, reference, spacing, class_ids, metrics, nsd_tolerance)
    scores = {
        int(row["class_id"]): {k: float(v) for k, v in row.items() if k != "class_id"}
        for row in rows
    }
    return CaseResult(case, scores, index)


def score_regions(
    case: str,
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    regions: Regions,
    metrics: Sequence[str],
    nsd_tolerance: float | None = None,
    index: int = 0,
) -> CaseResult:
    """Score two label maps region by region (region r reported as id r + 1).

    Region-based training is judged on its regions (BraTS: whole tumour, tumour core,
    enhancing), each the union of its label ids in both maps, scored as one foreground class.
    """
    scores = {}
    pairs = zip(regions.to_masks(prediction), regions.to_masks(reference), strict=True)
    for k, (predicted, expected) in enumerate(pairs):
        one = score_case(
            case,
            predicted.view(np.uint8),
            expected.view(np.uint8),
            spacing,
            [1],
            metrics,
            nsd_tolerance,
            index,
        )
        scores[k + 1] = one.scores[1]
    return CaseResult(case, scores, index)


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one class over cases (the rules are `medseg.metrics.RULES`)."""

    mean: float
    std: float
    median: float
    count: int
    inf_count: int
    finite_mean: float


@dataclass(frozen=True)
class ClassSummary:
    """Every metric of one foreground class over cases."""

    class_id: int
    name: str
    metrics: dict[str, MetricSummary]

    def mean(self, metric: str) -> float:
        """The class's mean of `metric` (NaN when it was not computed or no case counts)."""
        entry = self.metrics.get(metric)
        return entry.mean if entry else math.nan

    def count(self, metric: str) -> int:
        """Cases counted in the mean of `metric`."""
        entry = self.metrics.get(metric)
        return entry.count if entry else 0


@dataclass(frozen=True)
class EvaluationResult:
    """Every case of one evaluation, in report order, with the aggregates over them.

    Attributes:
        cases: Scored cases, sorted by `index`.
        errors: Cases that could not be scored, sorted by `index`.
        class_names: Foreground class id → name: the classes reported.
        metrics: Metric names, in column order.
        space: Where the scores were computed ("original", "preprocessed" or a description).
    """

    cases: tuple[CaseResult, ...]
    errors: tuple[CaseError, ...]
    class_names: dict[int, str]
    metrics: tuple[str, ...]
    space: str

    @classmethod
    def collect(
        cls,
        cases: Sequence[CaseResult],
        errors: Sequence[CaseError],
        class_names: Mapping[int, str],
        metrics: Sequence[str],
        space: str,
    ) -> EvaluationResult:
        """Put cases and errors (from any number of workers or ranks) in report order."""
        return cls(
            cases=tuple(sorted(cases, key=lambda c: (c.index, c.case))),
            errors=tuple(sorted(errors, key=lambda e: (e.index, e.case))),
            class_names=dict(class_names),
            metrics=tuple(metrics),
            space=space,
        )

    def rows(self) -> list[dict[str, object]]:
        """Every row of `metrics_per_case.csv`."""
        return [row for case in self.cases for row in case.rows(self.class_names)]

    @functools.cached_property
    def summary(self) -> dict[str, object]:
        """The aggregate as summary.json writes it (`medseg.metrics.summarize`)."""
        return summarize(self.rows(), self.class_names)

    @functools.cached_property
    def per_class(self) -> dict[str, ClassSummary]:
        """Class name → its summary."""
        out = {}
        for name, entry in self.summary["per_class"].items():
            stats = {k: MetricSummary(**v) for k, v in entry.items() if k != "class_id"}
            out[name] = ClassSummary(int(entry["class_id"]), name, stats)
        return out

    def foreground_mean(self, metric: str) -> float:
        """Mean over foreground classes of the per-class means of `metric` (NaN ones left out)."""
        return float(self.summary["foreground_mean"].get(metric, math.nan))

    @property
    def mean_dice(self) -> float:
        """The foreground mean Dice: what picks the best model."""
        return self.foreground_mean("dice")

    @property
    def class_dice(self) -> dict[str, float]:
        """Class name → mean Dice."""
        return {name: summary.mean("dice") for name, summary in self.per_class.items()}
