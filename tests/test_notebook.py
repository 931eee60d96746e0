"""visualize.ipynb runs headless on a case of the phantom, with and without itkwidgets.

Needs the notebook requirements (`pip install -r requirements-notebook.txt`); skipped without
nbclient. The 3D cells really run when itkwidgets is installed.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

from medseg.metrics.report import write_results
from medseg.metrics.results import CaseResult, EvaluationResult, score_case
from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.description import CaseEntry, DatasetDescription
from medseg.preprocessing.io import read_volume, write_volume
from tests.conftest import REPO

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOK = REPO / "visualize.ipynb"
CASE = "phantom_001"
WIDGET = "application/vnd.jupyter.widget-view+json"
NAMES = {1: "liver", 2: "spleen", 3: "kidney"}
OTHER = {"class_id": 1, "dice": 0.1111}  # a row of another case: must not be shown


@pytest.fixture(scope="module")
def val_dir(phantom_dir, tmp_path_factory) -> Path:
    """What val.py --save_predictions leaves: predictions/<case>.nii.gz and the metrics CSV."""
    folder = tmp_path_factory.mktemp("val")
    label, geometry = read_volume(phantom_dir / "raw" / "labelsTr" / f"{CASE}.nii.gz")
    prediction = np.roll(label, 2, axis=1)
    write_volume(prediction, geometry, folder / "predictions" / f"{CASE}.nii.gz")
    case = score_case(CASE, prediction, label, geometry.spacing, [1, 2, 3], ["dice"])
    other = CaseResult("other_case", {1: {"dice": OTHER["dice"]}}, index=1)
    write_results(folder, EvaluationResult.collect([case, other], [], NAMES, ["dice"], "x"), {})
    return folder


def execute(phantom_dir: Path, val_dir: Path, monkeypatch, blocked: Path | None = None) -> list:
    """Run the notebook pointed at the fixture; returns its code cells with outputs."""
    monkeypatch.setenv("MEDSEG_NB_RAW_DIR", str(phantom_dir / "raw"))
    monkeypatch.setenv("MEDSEG_NB_VAL_DIR", str(val_dir))
    if blocked is not None:
        # Packages under `blocked` shadow the installed ones in the kernel and fail to import.
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join([str(blocked), os.getenv("PYTHONPATH", "")])
        )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()  # raises CellExecutionError naming the cell when any cell fails
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def text_of(cell) -> str:
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text", ""))
        data = output.get("data", {})
        parts.append(data.get("text/plain", "") + data.get("text/html", ""))
    return "".join(parts)


def case_dice(val_dir: Path) -> list[float]:
    with (val_dir / "metrics_per_case.csv").open() as handle:
        return [float(row["dice"]) for row in csv.DictReader(handle) if row["case"] == CASE]


def check_common_cells(cells: list, val_dir: Path) -> None:
    """Parameters pick the only prediction; the table shows that case; the overlay is drawn."""
    params, metrics, overlay = cells[0], cells[1], cells[2]
    assert f"{CASE}_0000.nii.gz" in text_of(params) and "MISSING" not in text_of(params)
    table = text_of(metrics)
    shown = [float(v) for v in re.findall(r"\d+\.\d+", table)]  # pandas rounds to 4 decimals
    for dice in case_dice(val_dir):
        assert any(abs(v - dice) < 1e-4 for v in shown), (dice, table)
    assert "spleen" in table and not any(abs(v - OTHER["dice"]) < 1e-4 for v in shown)
    assert any("image/png" in out.get("data", {}) for out in overlay.outputs)


@pytest.mark.skipif(
    importlib.util.find_spec("itkwidgets") is None, reason="itkwidgets not installed"
)
def test_notebook_runs_with_3d_views(phantom_dir, val_dir, monkeypatch):
    cells = execute(phantom_dir, val_dir, monkeypatch)
    check_common_cells(cells, val_dir)
    view, side_by_side = cells[3], cells[4]
    for cell in (view, side_by_side):
        assert "skipped" not in text_of(cell)
        assert any(WIDGET in out.get("data", {}) for out in cell.outputs)


def test_notebook_without_itkwidgets_or_pandas(phantom_dir, val_dir, monkeypatch, tmp_path):
    """The 3D cells say how to install itkwidgets; the table falls back to plain text."""
    for name in ("itkwidgets", "pandas"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} blocked')\n")
    cells = execute(phantom_dir, val_dir, monkeypatch, blocked=tmp_path)
    check_common_cells(cells, val_dir)
    view, side_by_side = cells[3], cells[4]
    assert "pip install -r requirements-notebook.txt" in text_of(view)
    assert "3D comparison skipped" in text_of(side_by_side)
    for cell in (view, side_by_side):
        assert not any(WIDGET in out.get("data", {}) for out in cell.outputs)


@pytest.mark.skipif(
    importlib.util.find_spec("itkwidgets") is None, reason="itkwidgets not installed"
)
def test_notebook_on_a_prepared_dataset_with_an_int32_nrrd_label(
    phantom_dir, val_dir, monkeypatch, tmp_path
):
    """MEDSEG_NB_DATASET finds scan and label in dataset.json; int32 labels reach the 3D view.

    The raw label holds ids 11-13 that the preparation's `--label_map` made 1-3: the notebook
    shows the training ids, named, as the prediction has them.
    """
    raw = phantom_dir / "raw"
    label, geometry = read_volume(raw / "labelsTr" / f"{CASE}.nii.gz")
    raw_ids = np.where(label > 0, label.astype(np.int32) + 10, 0)
    write_volume(raw_ids, geometry, tmp_path / "scans" / f"{CASE}_label.nrrd")
    assert read_volume(tmp_path / "scans" / f"{CASE}_label.nrrd")[0].dtype == np.int32
    entry = CaseEntry(
        f"images/{CASE}.npy",
        f"labels/{CASE}.npy",
        (str(raw / "imagesTr" / f"{CASE}_0000.nii.gz"),),
        f"scans/{CASE}_label.nrrd",
    )
    DatasetDescription(
        root=tmp_path,
        labels={0: "background", **NAMES},
        label_rules=LabelRules(label_map={11: 1, 12: 2, 13: 3}),
        cases={CASE: entry},
    ).write()
    monkeypatch.setenv("MEDSEG_NB_DATASET", str(tmp_path))
    cells = execute(phantom_dir, val_dir, monkeypatch)
    assert f"{CASE}_label.nrrd" in text_of(cells[0]) and "MISSING" not in text_of(cells[0])
    assert any("image/png" in out.get("data", {}) for out in cells[2].outputs)
    assert "classes shown: liver, spleen, kidney" in text_of(cells[2]), text_of(cells[2])
    for cell in cells[3:5]:
        assert "skipped" not in text_of(cell), text_of(cell)
        assert any(WIDGET in out.get("data", {}) for out in cell.outputs)
