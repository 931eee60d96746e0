"""Streaming sliding window and slab back-mapping: the same labels as the whole-volume path."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from medseg.inference.case import CasePipeline
from medseg.inference.settings import InferenceSettings
from medseg.inference.sliding_window import (
    importance_map,
    sliding_window_inference,
    sliding_window_slabs,
    softmax,
    window_starts,
)
from medseg.preprocessing.backmap import SlabBackMapper
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.pipeline import (
    invert_probabilities,
    preprocess_case,
    probabilities_to_original_labels,
)
from medseg.preprocessing.recipe import Recipe

# An oblique, permuted, anisotropic scan: reorientation, cropping and resampling all act.
GEOMETRY = Geometry(
    shape=(37, 41, 29),
    spacing=(1.0, 0.7, 1.3),
    origin=(4.0, -3.0, 11.0),
    direction=np.eye(3)[:, [0, 2, 1]] * [1, -1, 1],
)


def prepared(target_spacing, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(1, *GEOMETRY.shape)).astype(np.float32)
    image[:, :3] = -5.0  # cropped away
    recipe = Recipe(target_spacing=target_spacing, crop={"threshold": -4.0, "margin": 1})
    return preprocess_case(image, GEOMETRY, recipe)


def tied_predictor(num_classes):
    """Logits with exact ties: classes 1 and 2 always equal, class 3 equal to 0 in places."""
    weights = np.linspace(-1.0, 1.0, num_classes, dtype=np.float32)

    def predict(batch):
        x = batch[:, 0]
        logits = np.stack([np.round(x * w, 1) for w in weights], axis=1)
        logits[:, 2] = logits[:, 1]
        logits[:, 3] = np.where(x > 0, logits[:, 0], logits[:, 3])
        return logits

    return predict


@pytest.mark.parametrize("target_spacing", [(2.5, 1.6, 1.6), (0.5, 0.5, 2.0), None])
def test_slabs_of_any_size_give_the_whole_volume_labels(target_spacing):
    image, _, record = prepared(target_spacing)
    probabilities = np.random.default_rng(1).random((5, *image.shape[1:]), dtype=np.float32)
    probabilities[:, : image.shape[1] // 2] = 0.25  # all classes tied: class 0 wins
    probabilities[3, -2:] = probabilities[1, -2:]  # two classes tied: the lower id wins
    expected = invert_probabilities(probabilities, record).argmax(axis=0)
    np.testing.assert_array_equal(probabilities_to_original_labels(probabilities, record), expected)
    for sizes in ([1], [2, 3], [7, 1, 4]):
        mapper = SlabBackMapper(record, 5)
        start, step = 0, 0
        while start < image.shape[1]:
            count = sizes[step % len(sizes)]
            mapper.add(start, probabilities[:, start : start + count].copy())
            start, step = start + count, step + 1
        np.testing.assert_array_equal(mapper.result(), expected)


@pytest.mark.parametrize(
    ("shape", "patch", "overlap", "batch_size", "tta"),
    [
        ((2, 37, 41, 29), (8, 12, 10), 0.5, 1, ()),
        ((2, 37, 41, 29), (8, 12, 10), 0.3, 5, (0, 2)),  # batches span rows of windows
        ((2, 5, 41, 9), (8, 12, 10), 0.5, 3, ()),  # padded along z and x
        ((2, 17, 11, 29), (16, 12, 30), 0.25, 2, (1,)),  # uneven coverage along z
    ],
)
def test_streamed_slabs_equal_the_whole_volume_bit_for_bit(shape, patch, overlap, batch_size, tta):
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(3, 2)).astype(np.float32)
    image = rng.normal(size=shape).astype(np.float32)

    def predict(batch):
        return np.einsum("kc,bczyx->bkzyx", mixing, batch) ** 2 + batch.sum(1, keepdims=True)

    whole = sliding_window_inference(image, predict, patch, overlap, batch_size, tta_axes=tta)
    assert whole.shape == (3, *shape[1:])
    covered = 0
    for start, slab in sliding_window_slabs(
        image, predict, patch, overlap, batch_size, tta_axes=tta
    ):
        assert start == covered
        np.testing.assert_array_equal(slab, whole[:, start : start + slab.shape[1]])
        covered += slab.shape[1]
    assert covered == shape[1]
    # The reference without streaming: each window's weighted output summed over the volume.
    weights = importance_map(patch)
    total = np.zeros((3, *shape[1:]), np.float64)
    norm = np.zeros(shape[1:], np.float64)
    if all(s >= p for s, p in zip(shape[1:], patch, strict=True)) and not tta:
        grid = [window_starts(s, p, overlap) for s, p in zip(shape[1:], patch, strict=True)]
        for start in itertools.product(*grid):
            window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
            total[(slice(None), *window)] += (
                predict(image[(slice(None), *window)][None])[0] * weights
            )
            norm[window] += weights
        np.testing.assert_allclose(whole, total / norm, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target_spacing", [(2.5, 1.6, 1.6), None])
def test_case_pipeline_labels_equal_the_whole_volume_path_with_ties(target_spacing):
    image, _, record = prepared(target_spacing, seed=3)
    settings = InferenceSettings(patch_size=(6, 9, 7), overlap=0.4, batch_size=3, tta_axes=(2,))
    predict = tied_predictor(4)
    logits = sliding_window_inference(
        image, predict, settings.patch_size, settings.overlap, 3, tta_axes=(2,)
    )
    expected = invert_probabilities(softmax(logits), record).argmax(axis=0)
    result = CasePipeline(predict, settings, 4).preprocessed(image, record)
    assert result.label.dtype == np.uint8 and result.geometry == record.geometry
    np.testing.assert_array_equal(result.label, expected)
    assert len(np.unique(expected)) > 1
    preprocessed = CasePipeline(predict, settings, 4).preprocessed(image, record, "preprocessed")
    np.testing.assert_array_equal(preprocessed.label, logits.argmax(axis=0))


def _peak_bytes(depth: int, num_classes: int) -> tuple[int, int]:
    """Peak traced bytes of one case pipeline run on a `depth`-plane scan, and its voxel bytes."""
    geometry = Geometry(
        shape=(depth, 32, 32), spacing=(1, 1, 1), origin=(0, 0, 0), direction=np.eye(3)
    )
    image = np.random.default_rng(0).normal(size=(1, *geometry.shape)).astype(np.float32)
    image, _, record = preprocess_case(image, geometry, Recipe(orientation=None, crop=None))
    settings = InferenceSettings(patch_size=(16, 32, 32), overlap=0.5, batch_size=1)
    ramp = np.arange(num_classes, dtype=np.float32).reshape(1, -1, 1, 1, 1)

    def predict(batch):
        return batch * ramp

    tracemalloc.start()
    label = CasePipeline(predict, settings, num_classes).preprocessed(image, record).label
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(label, np.where(image[0] > 0, num_classes - 1, 0))
    return peak, image.nbytes


def test_memory_spans_a_band_of_windows_not_the_classes_times_the_volume():
    shallow, volume_bytes = _peak_bytes(192, 32)
    deep, _ = _peak_bytes(768, 32)
    # A whole-volume accumulator alone would be K = 32 float32 scans and grow with the depth;
    # the band (16 planes) and the window-sized buffers do not: 4x deeper costs < 20 % more.
    assert shallow < 16 * volume_bytes, shallow / volume_bytes
    assert deep < 1.2 * shallow, (deep, shallow)
