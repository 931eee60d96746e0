"""val.py: scores in the scans' own space, predictions on the raw grid, agreement with training."""

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.commands import val
from medseg.preprocessing.description import load_description
from medseg.preprocessing.io import read_volume, write_volume
from tests.conftest import REPO, load_tool, write_config

# One window over the whole small case, no overlap: fast runs for tests that do not compare
# with training's numbers.
FAST = ["--opts", "inference.patch_size=[48,64,96]", "inference.overlap=0"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def val_run(trained_run, tiny_config, tmp_path_factory) -> Path:
    """val.py on best_model/ as training evaluates: original space, no TTA, predictions saved."""
    save_dir = tmp_path_factory.mktemp("val")
    args = ["--config", str(tiny_config), "--model_path", str(trained_run / "best_model")]
    assert val.main([*args, "--save_dir", str(save_dir), "--save_predictions", "--no_tta"]) == 0
    return save_dir


def test_writes_results_in_original_space(val_run, trained_run):
    for name in ("metrics_per_case.csv", "summary.json", "metrics.json", "val.log"):
        assert (val_run / name).is_file(), name
    summary = json.loads((val_run / "summary.json").read_text())
    assert summary["space"] == "original"
    assert summary["model_path"] == str(trained_run / "best_model")
    assert summary["inference"]["patch_size"] == [32, 48, 48]
    assert summary["errors"] == []
    assert set(summary["per_class"]) == {"liver", "spleen", "kidney"}
    assert set(summary["per_class"]["liver"]["dice"]) >= {"mean", "std", "median", "count"}
    assert "in original space" in (val_run / "val.log").read_text()
    rows = read_csv(val_run / "metrics_per_case.csv")
    assert list(rows[0]) == ["case", "class_id", "class_name", "dice", "hd95"]
    assert [(r["case"], r["class_id"], r["class_name"]) for r in rows] == [
        ("phantom_001", "1", "liver"),
        ("phantom_001", "2", "spleen"),
        ("phantom_001", "3", "kidney"),
    ]


def test_predictions_lie_on_the_raw_scan_grid(val_run, phantom_dir):
    predictions = sorted((val_run / "predictions").iterdir())
    assert [p.name for p in predictions] == ["phantom_001.nii.gz"]
    labels, predicted = read_volume(predictions[0])
    _, scan = read_volume(phantom_dir / "raw" / "imagesTr" / "phantom_001_0000.nii.gz")
    assert predicted.shape == scan.shape
    assert predicted.spacing == scan.spacing
    np.testing.assert_allclose(predicted.origin, scan.origin, atol=1e-6, rtol=0)
    np.testing.assert_allclose(predicted.direction, scan.direction, atol=1e-6, rtol=0)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}


def test_mean_dice_equals_the_best_dice_of_training(val_run, trained_run):
    state = torch.load(trained_run / "iter_20" / "train_state.pth", weights_only=False)
    metrics = json.loads((val_run / "metrics.json").read_text())
    assert metrics["space"] == "original"
    assert metrics["mean_dice"] == pytest.approx(state["best"]["mean_dice"], abs=1e-6)
    assert "original space" in (trained_run / "train.log").read_text()


def test_evaluate_tool_repeats_the_per_case_numbers(val_run, phantom_dir, tmp_path):
    tool = load_tool(REPO / "tools" / "evaluate.py")
    args = ["--pred_dir", str(val_run / "predictions"), "--gt_dir"]
    args += [str(phantom_dir / "raw" / "labelsTr"), "--save_dir", str(tmp_path)]
    args += ["--label_names", str(phantom_dir / "raw" / "dataset.json"), "--only_predicted"]
    assert tool.main([*args, "--labels", "1", "2", "3", "--num_workers", "1"]) == 0
    ours = read_csv(tmp_path / "metrics_per_case.csv")
    theirs = read_csv(val_run / "metrics_per_case.csv")
    assert list(ours[0]) == list(theirs[0])
    assert len(ours) == len(theirs) == 3
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine["case"] == reference["case"] and mine["class_name"] == reference["class_name"]
        for metric in ("dice", "hd95"):
            assert float(mine[metric]) == pytest.approx(float(reference[metric]), abs=1e-6)


@pytest.fixture(scope="module")
def unrecorded_config(phantom_dir, tmp_path_factory) -> Path:
    """A copy of the preprocessed phantom whose dataset.json records no source label."""
    folder = tmp_path_factory.mktemp("unrecorded")
    shutil.copytree(phantom_dir / "preprocessed", folder / "preprocessed")
    description = load_description(folder / "preprocessed")
    cases = {c: replace(e, source_label=None) for c, e in description.cases.items()}
    replace(description, cases=cases).write()
    return write_config(folder, folder)


def test_auto_falls_back_to_preprocessed_space_and_says_so(
    unrecorded_config, trained_run, phantom_dir, tmp_path
):
    args = ["--config", str(unrecorded_config), "--model_path", str(trained_run / "best_model")]
    args += ["--save_dir", str(tmp_path), "--save_predictions", "--metrics", "dice", "iou"]
    args += ["nsd", "--nsd_tolerance", "2", *FAST]
    assert val.main(args) == 0
    log = (tmp_path / "val.log").read_text()
    assert "evaluating on the preprocessed grid" in log and "no record or source_label" in log
    assert "not the scans' own" in log
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["space"] == "preprocessed"
    assert summary["predictions"]["grid"] == "preprocessed"
    assert list(read_csv(tmp_path / "metrics_per_case.csv")[0]) == [
        "case", "class_id", "class_name", "dice", "iou", "nsd"
    ]  # fmt: skip
    assert set(summary["per_class"]["kidney"]) == {"class_id", "dice", "iou", "nsd"}
    record = load_description(phantom_dir / "preprocessed").record("phantom_001")
    labels, geometry = read_volume(tmp_path / "predictions" / "phantom_001.nii.gz")
    assert labels.shape == record.shape_after_resample
    np.testing.assert_allclose(geometry.spacing, record.spacing_after_resample, rtol=1e-6)


def test_original_space_without_sources_is_a_clear_error(unrecorded_config, trained_run, tmp_path):
    args = ["--config", str(unrecorded_config), "--model_path", str(trained_run / "best_model")]
    assert val.main([*args, "--save_dir", str(tmp_path), "--space", "original"]) == 2
    log = (tmp_path / "val.log").read_text()
    assert "dataset.json" in log and "phantom_001 (no record or source_label)" in log
    assert not (tmp_path / "summary.json").exists()


def test_a_reference_that_does_not_fit_is_reported_per_case(phantom_dir, trained_run, tmp_path):
    """A raw label of the wrong size: that case is listed as an error and the exit code is 1."""
    shutil.copytree(phantom_dir / "preprocessed", tmp_path / "preprocessed")
    raw = tmp_path / "raw" / "labelsTr"
    raw.mkdir(parents=True)
    labels, geometry = read_volume(phantom_dir / "raw" / "labelsTr" / "phantom_001.nii.gz")
    write_volume(labels[:-1], geometry.replace(shape=labels[:-1].shape), raw / "phantom_001.nii.gz")
    config = write_config(tmp_path, tmp_path)
    args = ["--config", str(config), "--model_path", str(trained_run / "best_model")]
    assert val.main([*args, "--save_dir", str(tmp_path / "val"), *FAST]) == 1
    summary = json.loads((tmp_path / "val" / "summary.json").read_text())
    assert [e["case"] for e in summary["errors"]] == ["phantom_001"]
    assert "has shape" in summary["errors"][0]["error"]
    assert "phantom_001.nii.gz" in summary["errors"][0]["error"]


def test_nsd_needs_a_tolerance_and_unknown_metrics_are_refused(tiny_config, capsys):
    base = ["--config", str(tiny_config), "--model_path", "x"]
    for extra in (["--metrics", "nsd"], ["--metrics", "dcie"]):
        with pytest.raises(SystemExit) as exit_info:
            val.parse_args([*base, *extra])
        assert exit_info.value.code == 2
    assert "nsd_tolerance" in capsys.readouterr().err


def test_without_config_the_model_folders_own_config_is_used(trained_run, tmp_path):
    own = trained_run / "best_model" / "config.yaml"
    model = ["--model_path", str(trained_run / "best_model"), *FAST]
    assert val.main([*model, "--save_dir", str(tmp_path / "implicit")]) == 0
    assert val.main([*model, "--config", str(own), "--save_dir", str(tmp_path / "explicit")]) == 0
    summary = json.loads((tmp_path / "implicit" / "summary.json").read_text())
    assert summary["config"] == str(own)
    scores = [
        json.loads((tmp_path / k / "metrics.json").read_text()) for k in ("implicit", "explicit")
    ]
    assert scores[0] == scores[1]
    assert "(the one the model was trained with)" in (tmp_path / "implicit" / "val.log").read_text()


def test_weights_of_another_width_are_one_line_naming_the_training_config(
    trained_run, tiny_config, tmp_path
):
    args = ["--config", str(tiny_config), "--model_path", str(trained_run / "iter_20")]
    assert val.main([*args, "--save_dir", str(tmp_path), "--opts", "model.base_channels=8"]) == 2
    errors = [line for line in (tmp_path / "val.log").read_text().splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "tensors differ in shape" in errors[0]
    assert (
        f"pass --config {trained_run / 'iter_20' / 'config.yaml'} or leave --config out"
        in errors[0]
    )


def test_no_config_and_no_config_yaml_is_a_clear_error(trained_run, tmp_path):
    weights = tmp_path / "model.pth"
    shutil.copy(trained_run / "best_model" / "model.pth", weights)
    assert val.main(["--model_path", str(weights), "--save_dir", str(tmp_path / "v")]) == 2
    assert (
        "--config not given and no config.yaml lies beside"
        in (tmp_path / "v" / "val.log").read_text()
    )
