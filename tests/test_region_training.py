"""Region-based training end to end on a tiny MSD Task01 BrainTumour look-alike: preparation
writes the regions and a region config, training and val.py score regions, and the deploy
runner paints the same label maps as val.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medseg.preparation import msd
from medseg.preprocessing.description import load_description
from medseg.preprocessing.io import read_volume
from tests._prepare_data import write_msd_brain_tumour
from tests.conftest import REPO, load_tool

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

REGION_NAMES = ["whole_tumour", "tumour_core", "enhancing_tumour"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The prepared fake task: `prep/` and its generated configs in `cfg/`."""
    root = tmp_path_factory.mktemp("brats")
    write_msd_brain_tumour(root, num_cases=4)
    args = ["1", "--raw_dir", str(root), "--output_dir", str(root / "prep")]
    args += ["--config_dir", str(root / "cfg"), "--num_workers", "0", "--iters", "4"]
    assert msd.main([*args, "--val_fraction", "0.25", "--target_spacing", "none"]) == 0
    return root


@pytest.fixture(scope="module")
def trained(prepared) -> Path:
    """save_dir of a 4-iteration VNet run on the generated region config, evaluated at the end."""
    from medseg.commands import train

    (config,) = (prepared / "cfg").glob("vnet_*.yml")
    save_dir = prepared / "run"
    args = ["--config", str(config), "--save_dir", str(save_dir), "--do_eval"]
    assert train.main([*args, "--save_interval", "4", "--opts", "model.base_channels=4"]) == 0
    return save_dir


def test_preparation_writes_the_regions_and_a_region_config(prepared):
    description = load_description(prepared / "prep")
    assert description.regions.to_list() == msd.REGIONS["Task01_BrainTumour"]
    assert description.num_classes == 4 and len(description.modalities) == 4
    (dataset_file,) = [p for p in (prepared / "cfg").glob("*.yml") if p.name.startswith("task")]
    config = yaml.safe_load(dataset_file.read_text())
    assert config["train_dataset"]["regions"] is True and config["val_dataset"]["regions"] is True
    losses = config["loss"]["types"][0]["losses"]
    assert losses == [{"type": "BCELoss"}, {"type": "DiceLoss", "sigmoid_norm": True}]
    for model_file in (prepared / "cfg").glob("*_task01_*.yml"):
        assert yaml.safe_load(model_file.read_text())["model"]["num_classes"] == 3


def test_region_model_is_scored_per_region_and_the_runner_paints_the_same_labels(
    prepared, trained, tmp_path, monkeypatch
):
    import export
    import val
    from medseg.cvlibs import MODELS, Config
    from medseg.engine.checkpoint import load_model_weights
    from medseg.inference import segmenter
    from medseg.inference.torch_predictor import TorchPredictor

    model_path = trained / "best_model"
    info = json.loads((model_path / "model_info.json").read_text())
    assert info["num_classes"] == 4 and [r["name"] for r in info["regions"]] == REGION_NAMES
    val_dir = tmp_path / "val"
    assert val.main(["--model_path", str(model_path), "--save_dir", str(val_dir),
                     "--save_predictions", "--no_tta"]) == 0  # fmt: skip
    summary = json.loads((val_dir / "summary.json").read_text())
    assert list(summary["per_class"]) == REGION_NAMES

    export_dir = tmp_path / "export"
    assert export.main(["--model_path", str(model_path), "--save_dir", str(export_dir)]) == 0
    deploy = yaml.safe_load((export_dir / "deploy.yaml").read_text())
    assert deploy["regions"] == msd.REGIONS["Task01_BrainTumour"]
    assert deploy["model"]["num_classes"] == 4

    description = load_description(prepared / "prep")
    (case,) = description.splits["val"]
    scan = prepared / "prep" / description.cases[case].source_images[0]
    scored, scored_geometry = read_volume(val_dir / "predictions" / f"{case}.nii.gz")
    infer = load_tool(REPO / "deploy" / "python" / "infer.py")
    model = MODELS.build(Config(model_path / "config.yaml").model)
    load_model_weights(model, model_path)
    torch_predictor = TorchPredictor(model, "cpu")
    with monkeypatch.context() as patch:
        patch.setattr(segmenter, "OnnxPredictor", lambda *args: torch_predictor)
        out = tmp_path / "runner_torch"
        args = ["--config", str(export_dir), "--image_path", str(scan), "--no_tta"]
        assert infer.main([*args, "--save_dir", str(out)]) == 0
    written, geometry = read_volume(out / f"{case}.nii.gz")
    assert geometry.mismatch(scored_geometry) is None
    np.testing.assert_array_equal(written, scored)
    assert len(np.unique(written)) > 1
    out = tmp_path / "runner_onnx"
    assert infer.main([*args, "--save_dir", str(out), "--device", "cpu"]) == 0
    assert np.mean(read_volume(out / f"{case}.nii.gz")[0] == scored) > 0.99
