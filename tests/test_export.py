"""export.py: ONNX graph + deploy.yaml, checked against torch; failures leave no model.onnx."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from medseg.commands import export  # noqa: E402
from medseg.cvlibs import ConfigError  # noqa: E402
from medseg.inference.deploy_config import load_deploy_config  # noqa: E402
from medseg.preprocessing.description import load_description  # noqa: E402

pytestmark = pytest.mark.slow


def run_export(tiny_config, trained_run, save_dir, *extra: str) -> int:
    model = trained_run / "best_model" / "model.pth"
    args = ["--config", str(tiny_config), "--model_path", str(model), "--save_dir", str(save_dir)]
    return export.main([*args, *extra])


@pytest.fixture(scope="module")
def exported(tiny_config, trained_run, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("export")
    assert run_export(tiny_config, trained_run, save_dir, "--without_argmax") == 0
    return save_dir


def test_deploy_yaml_holds_what_inference_needs(exported, phantom_dir):
    deploy = load_deploy_config(exported / "deploy.yaml")
    description = load_description(phantom_dir / "preprocessed")
    assert deploy.model_path == (exported / "model.onnx").resolve()
    assert deploy.output == "logits"
    assert (deploy.input_channels, deploy.num_classes, deploy.opset) == (1, 4, 17)
    assert deploy.modalities == description.modalities
    assert deploy.classes == description.labels
    assert deploy.recipe == description.recipe
    assert deploy.inference.patch_size == (32, 48, 48)
    assert deploy.inference.overlap == 0.25
    assert deploy.largest_component == ()
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.yaml",
        "deploy.yaml",
        "export.log",
        "model.onnx",
    ]


def test_graph_has_dynamic_axes_and_matches_torch(exported, tiny_config, trained_run):
    import onnx
    import torch

    from medseg.cvlibs import MODELS, Config
    from medseg.engine.checkpoint import load_model_weights

    graph = onnx.load(str(exported / "model.onnx"))
    assert graph.opset_import[0].version >= 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "z", "y", "x"]
    assert dims[1].dim_value == 1

    model = MODELS.build(Config(tiny_config).model)
    load_model_weights(model, trained_run / "best_model" / "model.pth")
    # Another batch size and window size than the export check used.
    sample = np.random.default_rng(1).standard_normal((3, 1, 48, 32, 64), dtype=np.float32)
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(sample)).numpy()
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": sample})[0]
    assert got.shape == (3, 4, 48, 32, 64)
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_onnx_and_torch_agree_through_the_sliding_window(exported, tiny_config, trained_run):
    from medseg.cvlibs import DATASETS, MODELS, Config
    from medseg.engine.checkpoint import load_model_weights
    from medseg.inference.case import predict_logits
    from medseg.inference.onnx_predictor import OnnxPredictor
    from medseg.inference.torch_predictor import TorchPredictor

    cfg = Config(tiny_config)
    model = MODELS.build(cfg.model)
    load_model_weights(model, trained_run / "best_model" / "model.pth")
    deploy = load_deploy_config(exported / "deploy.yaml")
    onnx_predictor = OnnxPredictor(deploy.model_path, "cpu")
    torch_predictor = TorchPredictor(model, "cpu")
    dataset = DATASETS.build(cfg.val_dataset)
    agree = total = 0
    for index in range(len(dataset)):
        image, _, _ = dataset[index]
        a = predict_logits(image, onnx_predictor, deploy.inference, 4)
        b = predict_logits(image, torch_predictor, deploy.inference, 4)
        assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(b).max())
        agree += int(np.sum(a.argmax(0) == b.argmax(0)))
        total += a[0].size
    assert agree / total >= 0.999


def test_with_softmax_exports_probabilities(tiny_config, trained_run, tmp_path):
    assert run_export(tiny_config, trained_run, tmp_path, "--with_softmax") == 0
    deploy = load_deploy_config(tmp_path / "deploy.yaml")
    assert deploy.output == "probabilities"
    session = ort.InferenceSession(str(deploy.model_path), providers=["CPUExecutionProvider"])
    sample = np.random.default_rng(2).standard_normal((1, 1, 32, 48, 48), dtype=np.float32)
    probabilities = session.run(None, {session.get_inputs()[0].name: sample})[0]
    assert session.get_outputs()[0].name == "probabilities"
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_failed_check_leaves_no_model(tiny_config, trained_run, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)
    assert run_export(tiny_config, trained_run, tmp_path) == 1
    assert "does not reproduce the model" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.log"]


def test_bad_arguments_are_reported(tiny_config, trained_run, tmp_path, caplog):
    assert run_export(tiny_config, trained_run, tmp_path / "a", "--opset", "16") == 2
    assert "--opset must be >= 17" in caplog.text
    missing = ["--config", str(tiny_config), "--model_path", str(tmp_path / "nope.pth")]
    assert export.main([*missing, "--save_dir", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b" / "model.onnx").exists()
    patch = ["--opts", "inference.patch_size=[40, 48, 48]"]
    assert run_export(tiny_config, trained_run, tmp_path / "c", *patch) == 2
    assert "at key 'inference.patch_size'" in caplog.text and "got (40, 48, 48)" in caplog.text


def test_deploy_yaml_errors_name_the_key(exported, tmp_path):
    data = yaml.safe_load((exported / "deploy.yaml").read_text())
    data["model"]["file"] = str(exported / "model.onnx")
    cases = {
        ("model", "output"): ("labels", "model.output"),
        ("classes",): ({0: "background", 1: "liver"}, "classes"),
        ("postprocess",): ({"largest_component": [0]}, "postprocess.largest_component"),
        ("modalities",): (["CT", "MR"], "modalities"),
        ("recipe",): ({"orientation": "RAS"}, "recipe"),
        ("inference",): ({"patch_size": [32, 48, 48], "overlap": 1.5}, "inference.overlap"),
    }
    for keys, (value, key) in cases.items():
        broken = json.loads(json.dumps(data))
        node = broken
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
        path = tmp_path / "deploy.yaml"
        path.write_text(yaml.safe_dump(broken))
        with pytest.raises(ConfigError, match=re.escape(f"at key '{key}'")) as info:
            load_deploy_config(path)
        assert str(path) in str(info.value)


def test_postprocess_key_of_the_config_is_checked_and_copied(phantom_dir, tmp_path):
    import argparse

    from medseg.cvlibs import MODELS, Config
    from tests.conftest import write_config

    args = argparse.Namespace(with_softmax=False, opset=17, model_path="m.pth")
    good = write_config(tmp_path, phantom_dir, extra="postprocess: {largest_component: [3, 1]}")
    cfg = Config(good)
    deploy = export.build_deploy_config(cfg, MODELS.build(cfg.model), args, tmp_path)
    assert deploy.largest_component == (1, 3)
    (tmp_path / "bad").mkdir()
    bad = write_config(tmp_path / "bad", phantom_dir, extra="postprocess: {largest_component: [4]}")
    cfg = Config(bad)
    with pytest.raises(ConfigError, match=r"postprocess\.largest_component"):
        export.build_deploy_config(cfg, MODELS.build(cfg.model), args, tmp_path)
