"""Region-based training's rules: label maps ↔ regions, dataset.json validation, region losses,
region back-mapping and scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.cvlibs.errors import ConfigError
from medseg.inference.case import CasePipeline
from medseg.inference.settings import InferenceSettings
from medseg.inference.sliding_window import sigmoid, sliding_window_inference
from medseg.metrics.results import score_case, score_regions
from medseg.models.losses import BCELoss, DiceLoss, build_losses, loss_computation
from medseg.preprocessing.backmap import SlabBackMapper
from medseg.preprocessing.description import DatasetDescription, load_description
from medseg.preprocessing.pipeline import invert_probabilities
from medseg.preprocessing.regions import Regions
from tests.test_backmap import prepared

BRATS = [
    {"name": "whole_tumour", "labels": [1, 2, 3]},
    {"name": "tumour_core", "labels": [2, 3]},
    {"name": "enhancing", "labels": [3]},
]
LABEL_IDS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def regions() -> Regions:
    return Regions.from_list(BRATS, LABEL_IDS, "dataset.json")


def test_label_map_to_regions_and_back_is_exact(regions):
    label = np.random.default_rng(0).integers(0, 4, (6, 7, 8)).astype(np.uint8)
    masks = regions.to_masks(label)
    assert masks.shape == (3, 6, 7, 8) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], label > 0)
    np.testing.assert_array_equal(masks[1], label >= 2)
    np.testing.assert_array_equal(masks[2], label == 3)
    assert regions.paint_ids == (1, 2, 3)
    np.testing.assert_array_equal(regions.to_labels(masks), label)
    # Probabilities: a region counts above one half; later regions paint over earlier ones.
    probabilities = np.where(masks, 0.9, 0.2).astype(np.float32)
    np.testing.assert_array_equal(regions.to_labels(probabilities), label)
    probabilities = np.array([[0.6, 0.6, 0.4], [0.4, 0.7, 0.9], [0.5, 0.2, 0.8]])
    np.testing.assert_array_equal(regions.to_labels(probabilities), [1, 2, 3])
    # Disjoint regions (one label each) convert back as well.
    single = Regions.from_list([{"name": "a", "labels": [2]}, {"name": "b", "labels": [1]}])
    np.testing.assert_array_equal(
        single.to_labels(single.to_masks(label[..., :2] % 3)), label[..., :2] % 3
    )


@pytest.mark.parametrize(
    ("regions", "key", "message"),
    [
        ([], "regions", "non-empty list"),
        ([{"name": "a"}], "regions.0", '"labels"'),
        (
            [{"name": "wt", "labels": [1, 2, 3]}, {"name": "wt", "labels": [3]}],
            "regions.1.name",
            "used twice",
        ),
        ([*BRATS[:2], {"name": "et", "labels": [4]}], "regions.2.labels", "not foreground ids"),
        ([{"name": "wt", "labels": [0, 1, 2, 3]}], "regions.0.labels", "not foreground ids"),
        ([{"name": "x", "labels": []}], "regions.0.labels", "non-empty list"),
        ([BRATS[2], BRATS[1], BRATS[0]], "regions.0", "no id(s)"),
        ([{"name": "wt", "labels": [1, 2, 3]}], "regions.0", "[1, 2, 3] id(s)"),
        (BRATS[1:], "regions", "label ids [1] are in no region"),
    ],
)
def test_description_rejects_bad_regions_naming_the_file_and_key(tmp_path, regions, key, message):
    path = tmp_path / "dataset.json"
    labels = {"0": "background", "1": "edema", "2": "core", "3": "enhancing"}
    path.write_text(json.dumps({"name": "brats", "labels": labels, "regions": regions}))
    with pytest.raises(ConfigError, match=f"in {path} at key '{key}'") as err:
        load_description(path)
    assert message in str(err.value)


def test_description_writes_and_reads_regions(tmp_path, regions):
    labels = {0: "background", 1: "edema", 2: "core", 3: "enhancing"}
    DatasetDescription(root=tmp_path, name="brats", labels=labels, regions=regions).write()
    loaded = load_description(tmp_path)
    assert loaded.regions == regions and loaded.regions.names == (
        "whole_tumour",
        "tumour_core",
        "enhancing",
    )
    assert json.loads((tmp_path / "dataset.json").read_text())["regions"] == BRATS
    assert load_description(tmp_path, root=tmp_path).regions is not None
    # A description without regions writes none (old files read and write as before).
    DatasetDescription(root=tmp_path, name="plain", labels=labels).write()
    assert "regions" not in json.loads((tmp_path / "dataset.json").read_text())


def test_region_losses_against_hand_values(regions):
    # Two voxels: label 3 (in every region) and label 1 (whole tumour only); one ignored voxel.
    labels = torch.tensor([[3, 1, 255]])
    logits = torch.tensor([[[0.0, 2.0, 5.0], [1.0, -1.0, 5.0], [-1.0, 0.0, 5.0]]])
    bce = BCELoss(ignore_index=255)
    bce.regions = regions
    targets = [[1, 1], [1, 0], [1, 0]]
    expected = 0.0
    for channel, target in zip(logits[0, :, :2].tolist(), targets, strict=True):
        for x, t in zip(channel, target, strict=True):
            p = 1 / (1 + np.exp(-x))
            expected -= t * np.log(p) + (1 - t) * np.log(1 - p)
    assert bce(logits, labels).item() == pytest.approx(expected / 6, rel=1e-6)

    dice = DiceLoss(ignore_index=255, smooth=0.0, sigmoid_norm=True)
    dice.regions = regions
    p = 1 / (1 + np.exp(-logits[0, :, :2].numpy()))
    t = np.array(targets, dtype=np.float64)
    per_region = 2 * (p * t).sum(1) / (p.sum(1) + t.sum(1))
    assert dice(logits, labels).item() == pytest.approx(1 - per_region.mean(), rel=1e-6)


def test_build_losses_gives_the_regions_and_refuses_a_softmax_loss(regions):
    node = {
        "types": [
            {
                "type": "MixedLoss",
                "losses": [{"type": "BCELoss"}, {"type": "DiceLoss", "sigmoid_norm": True}],
                "coef": [1, 1],
            }
        ],
        "coef": [1.0, 0.5],
    }
    losses = build_losses(node, 255, regions)
    assert all(m.regions is regions for m in losses["types"][0].losses)
    # Deep supervision: the half-size output is scored on id-safe downsampled labels.
    rng = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (1, 8, 8, 8), generator=rng)
    full, half = (
        torch.randn(1, 3, 8, 8, 8, generator=rng),
        torch.randn(1, 3, 4, 4, 4, generator=rng),
    )
    total, _ = loss_computation([full, half], labels, losses)
    loss = losses["types"][0]
    expected = loss(full, labels) + 0.5 * loss(half, labels[:, 1::2, 1::2, 1::2])
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="have 4 channels but the training data has 3 regions"):
        loss(torch.randn(1, 4, 8, 8, 8), labels)
    for bad in ({"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}):
        with pytest.raises(ConfigError, match=r"at key 'loss.types.0'.*own sigmoid"):
            build_losses({"types": [bad], "coef": [1]}, None, regions)


@pytest.mark.parametrize("target_spacing", [(2.5, 1.6, 1.6), None])
def test_region_back_mapping_equals_the_whole_volume_conversion(regions, target_spacing):
    image, _, record = prepared(target_spacing, seed=2)
    rng = np.random.default_rng(3)
    probabilities = rng.random((3, *image.shape[1:]), dtype=np.float32)
    expected = regions.to_labels(invert_probabilities(probabilities, record, background=None))
    assert len(np.unique(expected)) == 4
    for size in (1, 3, 5):
        mapper = SlabBackMapper(record, 3, regions=regions)
        for start in range(0, image.shape[1], size):
            mapper.add(start, probabilities[:, start : start + size].copy())
        np.testing.assert_array_equal(mapper.result(), expected)


def test_case_pipeline_converts_region_logits(regions):
    image, _, record = prepared((2.5, 1.6, 1.6), seed=4)
    offsets = np.array([1.5, 0.5, -0.5], dtype=np.float32)  # nested: each region inside the last

    def predict(batch):
        return np.stack([offset - batch[:, 0] for offset in offsets], axis=1)

    settings = InferenceSettings(patch_size=(6, 9, 7), overlap=0.4, batch_size=2)
    logits = sliding_window_inference(
        image, predict, settings.patch_size, settings.overlap, 2, num_classes=3
    )
    pipeline = CasePipeline(predict, settings, 4, regions=regions)
    result = pipeline.preprocessed(image, record, probabilities=True)
    probabilities = invert_probabilities(sigmoid(logits.copy()), record, background=None)
    np.testing.assert_array_equal(result.label, regions.to_labels(probabilities))
    np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-6)
    on_grid = pipeline.preprocessed(image, record, "preprocessed")
    np.testing.assert_array_equal(on_grid.label, regions.to_labels(sigmoid(logits.copy())))
    assert len(np.unique(on_grid.label)) == 4


def test_regions_are_scored_as_unions_of_their_labels(regions):
    reference = np.zeros((4, 6, 6), np.uint8)
    reference[1:3, 1:5, 1:5] = 1
    reference[1:3, 2:4, 2:4] = 3
    prediction = reference.copy()
    prediction[1:3, 2:4, 2:4] = 2  # right tumour core, no enhancing tumour
    result = score_regions("c", prediction, reference, (1, 1, 1), regions, ["dice"])
    assert [result.scores[k]["dice"] for k in (1, 2, 3)] == [1.0, 1.0, 0.0]
    whole = score_case(
        "c",
        (prediction > 0).astype(np.uint8),
        (reference > 0).astype(np.uint8),
        (1, 1, 1),
        [1],
        ["dice"],
    )
    assert result.scores[1] == whole.scores[1]
    assert regions.reported_names() == {1: "whole_tumour", 2: "tumour_core", 3: "enhancing"}
