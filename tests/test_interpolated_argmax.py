"""Back-mapping that resamples only the classes that can win gives every-class labels."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.inference.sliding_window import softmax
from medseg.preprocessing import backmap, interpolated_argmax
from medseg.preprocessing.backmap import SlabBackMapper
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.pipeline import invert_probabilities, preprocess_case
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.resample import _linear, linear_box

GEOMETRY = Geometry(
    shape=(40, 44, 30),
    spacing=(1.0, 0.7, 1.3),
    origin=(4.0, -3.0, 11.0),
    direction=np.eye(3)[:, [0, 2, 1]] * [1, -1, 1],
)


def prepared(target_spacing):
    image = np.random.default_rng(0).normal(size=(1, *GEOMETRY.shape)).astype(np.float32)
    image[:, :3] = -5.0  # cropped away
    recipe = Recipe(target_spacing=target_spacing, crop={"threshold": -4.0, "margin": 1})
    return preprocess_case(image, GEOMETRY, recipe)


def organ_like(shape, num_classes, seed=0, tied_planes=True):
    """Softmax of smooth logits: large regions of one class, boundaries between, exact ties."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij"))
    logits = np.empty((num_classes, *shape), np.float32)
    for k in range(num_classes):
        centre = rng.uniform(0, 1, 3).reshape(3, 1, 1, 1)
        logits[k] = 6.0 - 14.0 * np.sqrt(((grid - centre) ** 2).sum(0))
    if num_classes > 2:
        logits[2] = logits[1]  # two classes tied everywhere: the lower id wins
    if tied_planes:
        logits[:, : shape[0] // 3] = 0.0  # every class tied: class 0 wins
    return softmax(logits)


def streamed(record, probabilities, sizes=(3, 1, 5)):
    mapper = SlabBackMapper(record, probabilities.shape[0])
    start, step = 0, 0
    while start < probabilities.shape[1]:
        count = sizes[step % len(sizes)]
        mapper.add(start, probabilities[:, start : start + count].copy())
        start, step = start + count, step + 1
    return mapper.result()


@pytest.fixture
def outcomes(monkeypatch):
    """What `interpolated_argmax` returned at each step (True: the classes' bounds were used).

    Tiles of a few hundred voxels, so that these small volumes hold many.
    """
    monkeypatch.setattr(interpolated_argmax, "TILE_VOXELS", 256)
    seen = []
    real = backmap.interpolated_argmax

    def recording(*args):
        seen.append(real(*args))
        return seen[-1]

    monkeypatch.setattr(backmap, "interpolated_argmax", recording)
    return seen


@pytest.mark.parametrize("target_spacing", [(2.5, 1.6, 1.6), (0.5, 0.5, 2.0), None])
@pytest.mark.parametrize("num_classes", [2, 7])
def test_pruned_labels_equal_every_class_resampled(target_spacing, num_classes, outcomes):
    image, _, record = prepared(target_spacing)
    probabilities = organ_like(image.shape[1:], num_classes)
    expected = invert_probabilities(probabilities, record).argmax(axis=0)
    np.testing.assert_array_equal(streamed(record, probabilities), expected)
    assert len(np.unique(expected)) >= 2  # real boundaries were crossed
    if num_classes > 2:  # the bounds decided somewhere (all-tied planes: every class)
        assert any(outcomes)


def test_without_global_ties_the_bounds_decide_every_step(outcomes):
    image, _, record = prepared((2.5, 1.6, 1.6))
    probabilities = organ_like(image.shape[1:], 12, seed=5, tied_planes=False)
    expected = invert_probabilities(probabilities, record).argmax(axis=0)
    np.testing.assert_array_equal(streamed(record, probabilities), expected)
    assert outcomes and all(outcomes)
    assert len(np.unique(expected)) >= 4


def test_noise_falls_back_to_every_class_with_the_same_labels(outcomes):
    image, _, record = prepared((2.5, 1.6, 1.6))
    probabilities = np.random.default_rng(1).random((9, *image.shape[1:]), dtype=np.float32)
    expected = invert_probabilities(probabilities, record).argmax(axis=0)
    np.testing.assert_array_equal(streamed(record, probabilities), expected)
    assert outcomes and not any(outcomes)


def test_near_ties_within_rounding_are_resampled_not_guessed(outcomes):
    """Class 1 below class 0 by less than float32 rounding somewhere: both stay candidates."""
    image, _, record = prepared((2.5, 1.6, 1.6))
    probabilities = organ_like(image.shape[1:], 3, seed=2)
    probabilities[1] = np.nextafter(probabilities[0], np.float32(0))  # one ulp below class 0
    expected = invert_probabilities(probabilities, record).argmax(axis=0)
    np.testing.assert_array_equal(streamed(record, probabilities), expected)
    assert any(outcomes)


@pytest.mark.parametrize("shape", [(50, 21, 33), (12, 40, 33), (25, 21, 7)])
def test_linear_box_equals_the_whole_volume_bit_for_bit(shape):
    volume = np.random.default_rng(3).normal(size=(25, 21, 33)).astype(np.float32)
    whole = _linear(volume, shape, "numpy")
    rng = np.random.default_rng(4)
    for _ in range(5):
        box = [tuple(sorted(rng.choice(n + 1, 2, replace=False))) for n in shape]
        sizes = zip(box, shape, volume.shape, strict=True)
        part_offset = [max(0, int(b[0] * s / n) - 1) for b, n, s in sizes]
        part = volume[tuple(slice(o, None) for o in part_offset)]
        result = linear_box(part, volume.shape, shape, box, part_offset)
        np.testing.assert_array_equal(result, whole[tuple(slice(a, b) for a, b in box)])
