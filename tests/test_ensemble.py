"""Ensembles average their members' probabilities; two identical models equal one."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import yaml

from medseg.engine.ensemble import check_ensemble
from medseg.inference.case import CasePipeline
from medseg.inference.settings import InferenceSettings
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.pipeline import preprocess_case
from medseg.preprocessing.recipe import Recipe

SETTINGS = InferenceSettings(patch_size=(8, 12, 10), overlap=0.5, batch_size=2, tta_axes=(0, 2))


def mixing_predictor(seed: int):
    """A per-voxel 'network' with 4 classes: logits fall with the distance to class centres."""
    centres = np.random.default_rng(seed).normal(size=(1, 4, 1, 1, 1)).astype(np.float32)

    def predict(batch: np.ndarray) -> np.ndarray:
        return -4 * (batch.sum(1, keepdims=True) - centres) ** 2

    return predict


@pytest.fixture(scope="module")
def case():
    geometry = Geometry(
        shape=(15, 26, 23), spacing=(2.0, 1.0, 1.0), origin=(0, 0, 0), direction=np.eye(3)
    )
    image = np.random.default_rng(0).normal(size=(1, *geometry.shape)).astype(np.float32)
    recipe = Recipe(orientation=None, crop=None, target_spacing=(1.5, 1.4, 1.2))
    image, _, record = preprocess_case(image, geometry, recipe)
    return image, record


@pytest.mark.parametrize("space", ["original", "preprocessed"])
def test_two_identical_models_give_exactly_one_models_prediction(case, space):
    image, record = case
    one = CasePipeline(mixing_predictor(1), SETTINGS, 4).preprocessed(image, record, space, True)
    predictor = mixing_predictor(1)
    two = CasePipeline([predictor, predictor], SETTINGS, 4).preprocessed(image, record, space, True)
    np.testing.assert_array_equal(two.probabilities, one.probabilities)
    np.testing.assert_array_equal(two.label, one.label)
    assert len(np.unique(one.label)) > 1


def test_a_region_ensemble_of_two_identical_models_equals_one(case):
    from medseg.preprocessing.regions import Regions

    image, record = case
    nested = [{"name": "outer", "labels": [1, 2, 3]}, {"name": "inner", "labels": [2, 3]}]
    nested.append({"name": "core", "labels": [3]})
    regions = Regions.from_list(nested, range(4))
    predictor = mixing_predictor(3)  # 4 channels; regions read the first 3

    def three(batch: np.ndarray) -> np.ndarray:  # 3 region logits, positive near a centre
        return 2 + predictor(batch)[:, :3]

    one = CasePipeline(three, SETTINGS, 4, regions=regions).preprocessed(image, record)
    two = CasePipeline([three, three], SETTINGS, 4, regions=regions).preprocessed(image, record)
    np.testing.assert_array_equal(two.label, one.label)
    assert len(np.unique(one.label)) > 1


def test_an_ensemble_averages_its_members_probabilities(case):
    image, record = case
    members = [mixing_predictor(1), mixing_predictor(2)]
    single = [
        CasePipeline(m, SETTINGS, 4).preprocessed(image, record, "preprocessed", True)
        for m in members
    ]
    both = CasePipeline(members, SETTINGS, 4).preprocessed(image, record, "preprocessed", True)
    mean = (single[0].probabilities + single[1].probabilities) / 2
    np.testing.assert_allclose(both.probabilities, mean, atol=1e-6)
    np.testing.assert_array_equal(both.label, mean.argmax(axis=0))
    assert not np.array_equal(single[0].label, single[1].label)  # the members disagree


def _ensemble_peak_bytes(depth: int, members: int) -> int:
    """Peak traced bytes of an ensemble predicting a `depth`-plane scan with K = 16."""
    geometry = Geometry(
        shape=(depth, 32, 32), spacing=(1, 1, 1), origin=(0, 0, 0), direction=np.eye(3)
    )
    image = np.random.default_rng(0).normal(size=(1, *geometry.shape)).astype(np.float32)
    image, _, record = preprocess_case(image, geometry, Recipe(orientation=None, crop=None))
    settings = InferenceSettings(patch_size=(16, 32, 32), overlap=0.5, batch_size=1)
    ramp = np.arange(16, dtype=np.float32).reshape(1, -1, 1, 1, 1)

    def predict(batch):
        return batch * ramp

    tracemalloc.start()
    CasePipeline([predict] * members, settings, 16).preprocessed(image, record)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_an_ensemble_holds_one_band_per_member_not_the_volume():
    shallow, deep = _ensemble_peak_bytes(128, 3), _ensemble_peak_bytes(512, 3)
    # Whole-scan probabilities per member would grow 4x with the depth; bands do not.
    assert deep < 1.3 * shallow, (deep, shallow)


def test_models_that_disagree_are_named():
    facts = {"a/best_model": {"classes": {0: "bg", 1: "liver"}, "inference.patch_size": (8, 8, 8)}}
    facts["b/best_model"] = {**facts["a/best_model"], "inference.patch_size": (16, 8, 8)}
    with pytest.raises(ValueError, match=r"inference\.patch_size: a/best_model has .*b/best_model"):
        check_ensemble(facts)
    check_ensemble({"a": facts["a/best_model"], "c": dict(facts["a/best_model"])})


@pytest.mark.slow
def test_val_py_ensemble_of_one_model_twice_scores_as_the_model(trained_run, tmp_path):
    from medseg.commands import val

    model = str(trained_run / "best_model")
    for name, paths in (("one", [model]), ("two", [model, model])):
        args = ["--model_path", *paths, "--save_dir", str(tmp_path / name), "--no_tta"]
        assert val.main([*args, "--save_predictions"]) == 0
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two == one
    for path in sorted((tmp_path / "one" / "predictions").glob("*.nii.gz")):
        assert path.read_bytes() == (tmp_path / "two" / "predictions" / path.name).read_bytes()
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["model_path"] == [model, model]


@pytest.mark.slow
def test_exported_ensemble_lists_its_files_and_the_runner_averages_them(
    trained_run, phantom_dir, tmp_path
):
    pytest.importorskip("onnxruntime")
    from medseg.commands import export
    from medseg.inference import Segmenter
    from medseg.inference.deploy_config import load_deploy_config

    model = str(trained_run / "best_model")
    for name, paths in (("one", [model]), ("two", [model, model])):
        assert export.main(["--model_path", *paths, "--save_dir", str(tmp_path / name)]) == 0
    deploy = yaml.safe_load((tmp_path / "two" / "deploy.yaml").read_text())
    assert deploy["model"]["files"] == ["model_0.onnx", "model_1.onnx"]
    assert "file" not in deploy["model"]
    assert len(load_deploy_config(tmp_path / "two" / "deploy.yaml").model_paths) == 2
    scan = sorted((phantom_dir / "raw" / "imagesTr").glob("*_0000.nii.gz"))[0]
    one = Segmenter(tmp_path / "one", device="cpu", tta=False).predict(scan, probabilities=True)
    two = Segmenter(tmp_path / "two", device="cpu", tta=False).predict(scan, probabilities=True)
    np.testing.assert_array_equal(two.label, one.label)
    np.testing.assert_allclose(two.probabilities, one.probabilities, atol=1e-6)


def test_deploy_yaml_with_file_and_files_is_refused(tmp_path):
    from medseg.cvlibs.errors import ConfigError
    from medseg.inference.deploy_config import load_deploy_config

    (tmp_path / "m.onnx").write_bytes(b"")
    model = {"file": "m.onnx", "files": ["m.onnx"], "output": "logits"}
    model.update(input_channels=1, num_classes=2, opset=17)
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump({"model": model}))
    with pytest.raises(ConfigError, match="exactly one of 'file' and 'files'"):
        load_deploy_config(tmp_path / "deploy.yaml")
