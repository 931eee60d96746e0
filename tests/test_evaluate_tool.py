"""tools/evaluate.py: pairing by case id, geometry checks, per-case errors, known Dice and HD."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.metrics.folder import as_label_map, case_id_of
from medseg.preprocessing.io import Geometry, write_volume
from tests.conftest import REPO, load_tool

TOOL = REPO / "tools" / "evaluate.py"
SPACING = (3.0, 1.0, 0.5)  # z, y, x mm
GEOMETRY = Geometry(
    shape=(12, 16, 20),
    spacing=SPACING,
    origin=(-10.0, 20.0, 5.0),
    direction=((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
)


def cube(shift_x: int = 0, label: int = 1, base: np.ndarray | None = None) -> np.ndarray:
    """A 4×4×4 cube of `label` at (4, 4, 4 + shift_x), drawn into `base` or an empty map."""
    volume = np.zeros(GEOMETRY.shape, np.uint8) if base is None else base
    volume[4:8, 4:8, 4 + shift_x : 8 + shift_x] = label
    return volume


def read_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics_per_case.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tool():
    return load_tool(TOOL)


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """Three cases in three formats: prediction = reference cube shifted one voxel along x.

    Case `b` also has class 2 (reference and prediction identical); the others lack it.
    """
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    for case, ext in (("a", ".nii.gz"), ("b", ".mha"), ("c", ".nrrd")):
        reference, prediction = cube(), cube(shift_x=1)
        if case == "b":
            reference[0:2, 0:2, 0:2] = prediction[0:2, 0:2, 0:2] = 2
        write_volume(reference, GEOMETRY, ref / f"case_{case}{ext}")
        write_volume(prediction, GEOMETRY, pred / f"case_{case}.nii.gz")
    return pred, ref


def run(tool, pred: Path, ref: Path, save: Path, *extra: str) -> int:
    return tool.main(
        ["--pred_dir", str(pred), "--gt_dir", str(ref), "--save_dir", str(save), *extra]
    )


def test_known_dice_and_distances_in_the_reference_spacing(tool, folders, tmp_path):
    pred, ref = folders
    names = tmp_path / "dataset.json"
    names.write_text(json.dumps({"labels": {"background": 0, "tumour": 1, "cyst": 2}}))
    args = ["--metrics", "dice", "hausdorff", "--label_names", str(names), "--num_workers", "1"]
    assert run(tool, pred, ref, tmp_path / "out", *args) == 0
    rows = read_rows(tmp_path / "out")
    assert list(rows[0]) == ["case", "class_id", "class_name", "dice", "hausdorff"]
    assert [(r["case"], r["class_name"]) for r in rows] == [
        ("case_a", "tumour"), ("case_a", "cyst"), ("case_b", "tumour"), ("case_b", "cyst"),
        ("case_c", "tumour"), ("case_c", "cyst"),
    ]  # fmt: skip
    tumour = [r for r in rows if r["class_name"] == "tumour"]
    # 4×4×4 cubes overlapping in 4×4×3 voxels: Dice = 2·48 / 128; every surface voxel lies at most
    # one voxel along x (0.5 mm) from the other surface.
    assert all(float(r["dice"]) == pytest.approx(0.75) for r in tumour)
    assert all(float(r["hausdorff"]) == pytest.approx(0.5) for r in tumour)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["errors"] == [] and summary["num_cases"] == 3
    assert summary["per_class"]["cyst"]["dice"]["count"] == 1  # absent from a and c: left out
    assert summary["per_class"]["cyst"]["dice"]["mean"] == 1.0
    assert summary["foreground_mean"]["dice"] == pytest.approx((0.75 + 1.0) / 2)


def test_bad_cases_are_reported_and_the_rest_is_scored(tool, folders, tmp_path):
    pred, ref = folders
    (pred / "case_b.nii.gz").unlink()  # missing prediction
    shifted = GEOMETRY.replace(origin=(-10.0, 20.0, 5.5))
    write_volume(cube(shift_x=1), shifted, pred / "case_c.nii.gz")  # origin moved by 0.5 mm
    write_volume(cube(), GEOMETRY, ref / "case_d.nii")
    (pred / "case_d.nii.gz").write_bytes(b"\x1f\x8b not really a gzip stream")  # corrupt
    write_volume(cube(), GEOMETRY, pred / "case_e.nii.gz")  # no reference
    save = tmp_path / "out"
    assert run(tool, pred, ref, save, "--num_workers", "2") == 1
    assert {r["case"] for r in read_rows(save)} == {"case_a"}
    summary = json.loads((save / "summary.json").read_text())
    errors = {e["case"]: e["error"] for e in summary["errors"]}
    assert sorted(errors) == ["case_b", "case_c", "case_d", "case_e"]
    assert "no prediction" in errors["case_b"]
    assert "origin differs" in errors["case_c"] and "case_c.nii.gz" in errors["case_c"]
    assert "case_d.nii.gz" in errors["case_d"] and "could not read" in errors["case_d"]
    assert "no reference" in errors["case_e"]
    log = (save / "evaluate.log").read_text()
    assert "case case_c: prediction" in log and "4 case(s) could not be scored" in log


def test_only_predicted_skips_references_without_a_prediction(tool, folders, tmp_path):
    pred, ref = folders
    (pred / "case_b.nii.gz").unlink()
    assert run(tool, pred, ref, tmp_path / "out", "--only_predicted", "--num_workers", "1") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["unpredicted"] == ["case_b"] and summary["errors"] == []
    assert {r["case"] for r in read_rows(tmp_path / "out")} == {"case_a", "case_c"}


def test_labels_option_and_parallel_workers_agree_with_serial(tool, folders, tmp_path):
    pred, ref = folders
    assert run(tool, pred, ref, tmp_path / "serial", "--num_workers", "1") == 0
    assert run(tool, pred, ref, tmp_path / "pool", "--num_workers", "2") == 0
    assert read_rows(tmp_path / "serial") == read_rows(tmp_path / "pool")
    assert run(tool, pred, ref, tmp_path / "one", "--labels", "1", "--num_workers", "1") == 0
    rows = read_rows(tmp_path / "one")
    assert [r["class_name"] for r in rows] == ["class_1"] * 3
    assert list(rows[0]) == ["case", "class_id", "class_name", "dice", "hd95"]


def test_command_line_exit_codes(folders, tmp_path):
    pred, ref = folders
    base = [sys.executable, str(TOOL), "--pred_dir", str(pred), "--gt_dir", str(ref)]
    base += ["--save_dir", str(tmp_path / "out")]
    done = subprocess.run(
        [*base, "--metrics", "nsd"], capture_output=True, encoding="utf-8", errors="replace"
    )
    assert done.returncode == 2 and "--nsd_tolerance" in done.stderr
    done = subprocess.run(
        [*base, "--metrics", "nsd", "--nsd_tolerance", "0.5"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert done.returncode == 0, done.stderr
    assert "foreground mean" in done.stdout
    missing = [*base[:3], str(tmp_path / "nowhere"), *base[4:]]
    done = subprocess.run(missing, capture_output=True, encoding="utf-8", errors="replace")
    assert done.returncode == 2 and "nowhere" in done.stderr


def test_label_files_and_names():
    assert case_id_of(Path("liver_003.nii.gz")) == "liver_003"
    assert case_id_of(Path("a.b.MHA")) == "a.b"
    assert case_id_of(Path("notes.txt")) is None
    stored_as_float = np.array([[[0.0, 2.0]]], dtype=np.float32)
    assert as_label_map(stored_as_float, "x").dtype == np.uint8
    with pytest.raises(ValueError, match="probability map"):
        as_label_map(np.array([[[0.0, 0.4]]], dtype=np.float32), "p.nii.gz")


def test_a_dead_worker_is_one_line_and_exit_1(tool, tmp_path, monkeypatch):
    """The folder scorer runs in medseg's one worker pool: a dead worker stops the run clearly."""
    from medseg.metrics import folder
    from medseg.utils.parallel import WorkerDiedError

    def died(*args, **kwargs):
        raise WorkerDiedError("a worker process died while evaluate")
        yield  # pragma: no cover

    for name in ("pred", "gt"):
        (tmp_path / name).mkdir()
        write_volume(cube(), GEOMETRY, tmp_path / name / "case_a.nii.gz")
    monkeypatch.setattr(folder, "run_cases", died)
    argv = ["--pred_dir", str(tmp_path / "pred"), "--gt_dir", str(tmp_path / "gt")]
    assert tool.main([*argv, "--save_dir", str(tmp_path / "out")]) == 1
    assert "a worker process died" in (tmp_path / "out" / "evaluate.log").read_text()
