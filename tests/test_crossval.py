"""train.py --fold k and medseg-crossval: folds trained, scored, post-processing chosen."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL_PHANTOM, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fold_config(tmp_path_factory) -> Path:
    """The tiny VNet config on a small phantom prepared with --folds 2."""
    from medseg.preparation import phantom

    data = tmp_path_factory.mktemp("phantom_folds")
    assert phantom.main([*SMALL_PHANTOM, "--output_dir", str(data), "--folds", "2"]) == 0
    return write_config(tmp_path_factory.mktemp("fold_config"), data)


@pytest.fixture(scope="module")
def crossval_dir(fold_config, tmp_path_factory) -> Path:
    from medseg.commands import crossval

    save_dir = tmp_path_factory.mktemp("crossval")
    args = ["--config", str(fold_config), "--save_dir", str(save_dir), "--iters", "3"]
    assert crossval.main([*args, "--save_interval", "3", "--no_tta", "--device", "cpu"]) == 0
    return save_dir


def test_each_fold_trains_on_its_lists_and_records_the_fold(crossval_dir, fold_config):
    root = Path(yaml.safe_load(fold_config.read_text())["train_dataset"]["dataset_root"])
    description = json.loads((root / "dataset.json").read_text())
    for k in (0, 1):
        run = crossval_dir / f"fold_{k}"
        info = json.loads((run / "best_model" / "model_info.json").read_text())
        assert info["fold"] == k
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["train_dataset"]["file_list"] == f"folds/fold_{k}_train_list.txt"
        assert cfg["val_dataset"]["file_list"] == f"folds/fold_{k}_val_list.txt"
        log = (run / "train.log").read_text()
        assert f"fold {k}: train_dataset.file_list=folds/fold_{k}_train_list.txt" in log
    folds = description["folds"]
    assert not set(folds[0]["val"]) & set(folds[1]["val"])


def test_the_summary_has_every_fold_class_and_mean(crossval_dir, fold_config):
    out = crossval_dir / "crossval"
    summary = json.loads((out / "summary.json").read_text())
    root = Path(yaml.safe_load(fold_config.read_text())["train_dataset"]["dataset_root"])
    folds = json.loads((root / "dataset.json").read_text())["folds"]
    assert set(summary["folds"]) == {"0", "1"}
    classes = set(summary["per_class"])
    assert classes == {"liver", "spleen", "kidney"}
    for k in ("0", "1"):
        assert set(summary["folds"][k]["per_class"]) == classes
        assert summary["folds"][k]["per_class"]["liver"]["dice"]["count"] == len(
            folds[int(k)]["val"]
        )
    assert set(summary["mean_over_folds"]) == classes
    assert summary["per_class"]["liver"]["dice"]["count"] == sum(len(f["val"]) for f in folds)
    predicted = {p.name.removesuffix(".nii.gz") for p in (out / "predictions").glob("*.nii.gz")}
    assert predicted == {c for f in folds for c in f["val"]}
    choice = json.loads((out / "postprocessing.json").read_text())
    assert set(choice["classes"]) == classes and choice["cases"] == len(predicted)
    assert choice == summary["postprocessing"]
    assert "fold mean" in (out / "crossval.log").read_text()


def test_a_rerun_skips_finished_folds(crossval_dir, fold_config, caplog):
    from medseg.commands import crossval

    args = ["--config", str(fold_config), "--save_dir", str(crossval_dir), "--iters", "3"]
    with caplog.at_level(logging.INFO, logger="medseg.crossval"):
        assert crossval.main([*args, "--train", "--folds", "1"]) == 0
    assert "fold 1: finished" in caplog.text and "fold 0" not in caplog.text


def test_val_and_export_take_the_crossval_folder_as_the_fold_ensemble(crossval_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from medseg.commands import export, val

    args = ["--model_path", str(crossval_dir), "--no_tta", "--save_dir", str(tmp_path / "val")]
    assert val.main(args) == 0
    summary = json.loads((tmp_path / "val" / "summary.json").read_text())
    assert summary["model_path"] == [str(crossval_dir / f"fold_{k}" / "best_model") for k in (0, 1)]
    assert export.main(["--model_path", str(crossval_dir), "--save_dir", str(tmp_path / "e")]) == 0
    deploy = yaml.safe_load((tmp_path / "e" / "deploy.yaml").read_text())
    assert deploy["model"]["files"] == ["fold_0.onnx", "fold_1.onnx"]
    choice = json.loads((crossval_dir / "crossval" / "postprocessing.json").read_text())
    assert deploy["postprocess"]["largest_component"] == choice["largest_component"]


def test_fold_errors_name_dataset_json_and_folds(fold_config, tiny_config, tmp_path, caplog):
    from medseg.commands import crossval, train

    with caplog.at_level(logging.ERROR):
        args = ["--config", str(tiny_config), "--save_dir", str(tmp_path), "--fold", "0"]
        assert train.main(args) == 2
    assert "dataset.json records no 'folds': prepare the dataset with --folds K" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        args = ["--config", str(fold_config), "--save_dir", str(tmp_path), "--fold", "2"]
        assert train.main(args) == 2
    assert "fold 2 does not exist" in caplog.text and "records 2 'folds' (0..1)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        args = ["--config", str(fold_config), "--save_dir", str(tmp_path), "--folds", "0,5"]
        assert crossval.main(args) == 2
    assert "not [5]" in caplog.text
