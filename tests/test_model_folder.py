"""Self-contained model folders: export and deploy work after the preprocessed dataset is gone."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from medseg.cvlibs import ConfigError
from medseg.inference.model_info import MODEL_INFO_FILE, load_model_info
from medseg.preprocessing.io import read_case, read_volume
from tests.conftest import REPO, load_tool, write_config

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow


def test_model_folder_exports_and_deploys_without_the_dataset(phantom_dir, tmp_path):
    import export
    import train

    data = tmp_path / "data"
    shutil.copytree(phantom_dir / "preprocessed", data / "preprocessed")
    config = write_config(tmp_path, data, extra="iters: 2\n")
    run = tmp_path / "run"
    args = ["--config", str(config), "--save_dir", str(run), "--save_interval", "2"]
    assert train.main(args) == 0
    folder = run / "iter_2"
    info = load_model_info(folder)
    recorded = json.loads((phantom_dir / "preprocessed" / "dataset.json").read_text())
    assert info.recipe.to_dict() == recorded["recipe"]
    assert info.modalities == ("CT",) and info.classes[1] == "liver"
    assert (folder / "config.yaml").is_file()

    shutil.rmtree(data)  # the preprocessed dataset is gone
    exported = tmp_path / "export"
    args = ["--config", str(config), "--model_path", str(folder), "--save_dir", str(exported)]
    assert export.main(args) == 0
    scan = sorted((phantom_dir / "raw" / "imagesTr").glob("*_0000.nii.gz"))[0]
    infer = load_tool(REPO / "deploy" / "python" / "infer.py")
    out = tmp_path / "out"
    args = ["--config", str(exported), "--image_path", str(scan), "--save_dir", str(out)]
    assert infer.main([*args, "--device", "cpu", "--no_tta"]) == 0
    label, geometry = read_volume(out / scan.name.replace("_0000", ""))
    assert label.dtype.kind == "u"
    assert geometry.mismatch(read_case([scan])[1], 1e-4) is None


def test_old_checkpoints_fall_back_to_the_dataset_with_a_log_line(
    tiny_config, trained_run, tmp_path, caplog
):
    import export

    old = tmp_path / "best_model"
    shutil.copytree(trained_run / "best_model", old)
    (old / MODEL_INFO_FILE).unlink()
    args = ["--config", str(tiny_config), "--model_path", str(old / "model.pth")]
    with caplog.at_level(logging.INFO):
        assert export.main([*args, "--save_dir", str(tmp_path / "export")]) == 0
    assert f"has no {MODEL_INFO_FILE}" in caplog.text


def test_model_info_errors_name_the_file_and_key(trained_run, tmp_path):
    data = json.loads((trained_run / "best_model" / MODEL_INFO_FILE).read_text())
    for key, value in [("num_classes", 0), ("classes", {"0": "bg"}), ("modalities", ["a", "b"])]:
        path = tmp_path / MODEL_INFO_FILE
        path.write_text(json.dumps({**data, key: value}))
        with pytest.raises(ConfigError, match=f"at key '{key}'") as info:
            load_model_info(tmp_path)
        assert str(path) in str(info.value)
