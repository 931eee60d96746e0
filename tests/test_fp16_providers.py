"""export.py --fp16 agrees with the float32 model; providers fall back TensorRT → CUDA → CPU."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from medseg.inference import Segmenter
from medseg.inference.deploy_config import load_deploy_config
from medseg.inference.onnx_predictor import CPU, CUDA, TENSORRT, OnnxPredictor
from medseg.preprocessing.io import read_volume

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exports(tiny_config, trained_run, tmp_path_factory):
    import export

    folders = {}
    for precision in ("fp32", "fp16"):
        save_dir = tmp_path_factory.mktemp(precision)
        args = ["--config", str(tiny_config), "--model_path", str(trained_run / "best_model")]
        extra = ["--fp16"] if precision == "fp16" else []
        assert export.main([*args, "--save_dir", str(save_dir), *extra]) == 0
        folders[precision] = save_dir
    return folders


@pytest.mark.slow
def test_fp16_export_keeps_norms_in_float32_and_agrees_with_fp32(exports, phantom_dir):
    deploy = load_deploy_config(exports["fp16"] / "deploy.yaml")
    assert deploy.precision == "fp16"
    graph = onnx.load(str(deploy.model_path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = {init.data_type for init in graph.initializer if len(init.dims) == 5}
    assert weights == {onnx.TensorProto.FLOAT16}  # convolution kernels
    norms = [n for n in graph.node if "Normalization" in n.op_type]
    assert norms, "the VNet's normalisation layers should be in the graph"
    casts = {o for n in graph.node if n.op_type == "Cast" for o in n.output}
    assert all(n.input[0] in casts for n in norms)  # each norm gets a float32 cast of its input

    scan = sorted((phantom_dir / "raw" / "imagesTr").glob("*_0000.nii.gz"))[0]
    image, geometry = read_volume(scan)
    labels = {
        precision: Segmenter(folder, device="cpu", tta=False).predict(image, geometry).label
        for precision, folder in exports.items()
    }
    agreement = float(np.mean(labels["fp16"] == labels["fp32"]))
    print(f"fp16 vs fp32 label agreement on {scan.name}: {agreement:.5f}")
    assert agreement > 0.99


def test_provider_order_and_engine_cache(tmp_path, monkeypatch):
    asked = []

    class FakeSession:
        def __init__(self, path, options, providers):
            asked.append(providers)

        def get_providers(self):
            return [CPU]  # what a machine without TensorRT and CUDA libraries gives

        def get_inputs(self):
            return [type("Input", (), {"name": "image"})()]

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    predictor = OnnxPredictor(tmp_path / "model.onnx", "auto")
    (providers,) = asked
    assert providers[0] == (
        TENSORRT,
        {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path / "trt_cache")},
    )
    assert providers[1:] == [CUDA, CPU]
    assert predictor.device == "cpu"
    OnnxPredictor(tmp_path / "model.onnx", "cpu")
    assert asked[-1] == [CPU]


def test_fallback_on_this_machine_is_one_log_line(exports, caplog):
    model = load_deploy_config(exports["fp32"] / "deploy.yaml").model_path
    with caplog.at_level(logging.INFO, logger="medseg.inference.onnx_predictor"):
        predictor = OnnxPredictor(model, "auto")
    records = [r for r in caplog.records if r.name == "medseg.inference.onnx_predictor"]
    assert len(records) == 1 and predictor.providers[0] in records[0].getMessage()
    if predictor.device == "cpu" and set(ort.get_available_providers()) & {TENSORRT, CUDA}:
        assert "not usable here" in records[0].getMessage()
    batch = np.zeros((1, 1, 32, 48, 48), np.float32)
    assert predictor(batch).shape == (1, 4, 32, 48, 48)
