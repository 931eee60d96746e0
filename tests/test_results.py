"""The evaluation result types: one scoring function, ordering, aggregates, report files."""

import json
import math

import numpy as np
import pytest

from medseg.metrics.report import format_table, write_results
from medseg.metrics.results import CaseError, CaseResult, EvaluationResult, score_case

NAMES = {1: "liver", 2: "tumour"}


def cube(shape=(8, 8, 8)) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[2:6, 2:6, 2:6] = 1
    return label


def test_score_case_matches_the_analytic_dice_and_keeps_metric_order():
    reference = cube()
    prediction = reference.copy()
    prediction[2:6, 2:6, 2:4] = 0  # half of the cube predicted
    result = score_case(
        "a", prediction, reference, (1.0, 1.0, 1.0), [1, 2], ["iou", "dice"], index=3
    )
    assert result.case == "a" and result.index == 3
    assert list(result.scores[1]) == ["iou", "dice"]
    assert result.scores[1]["dice"] == pytest.approx(2 * 32 / (32 + 64))
    assert math.isnan(result.scores[2]["dice"])  # absent from both maps


def test_collect_orders_by_index_whatever_order_the_workers_returned():
    b = CaseResult("b", {1: {"dice": 0.5}, 2: {"dice": 1.0}}, index=1)
    a = CaseResult("a", {1: {"dice": 1.0}, 2: {"dice": float("nan")}}, index=0)
    result = EvaluationResult.collect(
        [b, a], [CaseError("c", "unreadable", 2)], NAMES, ["dice"], "x"
    )
    assert [c.case for c in result.cases] == ["a", "b"]
    assert [row["case"] for row in result.rows()] == ["a", "a", "b", "b"]
    assert result.rows()[0] == {"case": "a", "class_id": 1, "class_name": "liver", "dice": 1.0}
    assert result.class_dice == {"liver": 0.75, "tumour": 1.0}
    assert result.per_class["tumour"].count("dice") == 1  # the NaN case is left out
    assert result.mean_dice == pytest.approx((0.75 + 1.0) / 2)


def test_report_files_and_table(tmp_path):
    a = CaseResult("a", {1: {"dice": 0.8}, 2: {"dice": 0.4}})
    result = EvaluationResult.collect([a], [CaseError("b", "no prediction")], NAMES, ["dice"], "s")
    write_results(tmp_path, result, {"config": "c.yml"})
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["space"] == "s" and summary["config"] == "c.yml"
    assert summary["errors"] == [{"case": "b", "error": "no prediction"}]
    assert summary["foreground_mean"]["dice"] == pytest.approx(0.6)
    csv = (tmp_path / "metrics_per_case.csv").read_text().splitlines()
    assert csv == ["case,class_id,class_name,dice", "a,1,liver,0.8", "a,2,tumour,0.4"]
    table = format_table(result)
    assert "liver" in table and "0.6000" in table.splitlines()[-1]
