"""Deterministic twins of the random transforms, and the two new nnU-Net augmentations."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.cvlibs.registry import TRANSFORMS
from medseg.transforms import (
    Contrast,
    Flip,
    Gamma,
    GaussianBlur,
    LowResolution,
    RandomContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomLowResolution,
    RandomRotation3D,
    RandomScaleIntensity,
    RandomZoom3D,
    Rotate,
    ScaleIntensity,
    Zoom,
)


def _pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(2, 8, 12, 12)).astype(np.float32)
    label = np.zeros((8, 12, 12), dtype=np.uint8)
    label[2:6, 3:9, 4:10] = 1
    label[3:5, 5:7, 5:8] = 2
    return image, label


@pytest.mark.parametrize(
    "random_t, draw, twin",
    [
        (RandomScaleIntensity(prob=1.0), lambda r: r.uniform(0.75, 1.25, 1), ScaleIntensity),
        (RandomGamma(prob=1.0), lambda r: r.uniform(0.7, 1.5), Gamma),
        (RandomGaussianBlur(prob=1.0), lambda r: r.uniform(0.5, 1.0), GaussianBlur),
        (RandomContrast(prob=1.0), lambda r: r.uniform(0.75, 1.25), Contrast),
        (RandomLowResolution(prob=1.0), lambda r: r.uniform(0.5, 1.0), LowResolution),
        (RandomZoom3D(prob=1.0), lambda r: r.uniform(0.7, 1.4), Zoom),
    ],
)
def test_random_transform_is_its_twin_with_a_drawn_parameter(random_t, draw, twin):
    image, label = _pair()
    got = random_t(image, label, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    rng.random()  # the coin
    want = twin(draw(rng))(image, label)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    unchanged = type(random_t)(prob=0.0)(image, label, np.random.default_rng(3))
    np.testing.assert_array_equal(unchanged[0], image)


def test_rotation_twin_and_flip_twin():
    image, label = _pair()
    rng = np.random.default_rng(5)
    got = RandomRotation3D(degrees=20, rotate_planes=[[1, 2]])(image, label, rng)
    rng = np.random.default_rng(5)
    rng.random()
    angle = rng.uniform(-20, 20)
    want = Rotate(angle, (1, 2))(image, label)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    flipped, flipped_label = Flip([0, 2])(image, label)
    np.testing.assert_array_equal(flipped, image[:, ::-1, :, ::-1])
    np.testing.assert_array_equal(flipped_label, label[::-1, :, ::-1])
    with pytest.raises(ValueError, match=r"Flip\.axes"):
        Flip([3])


def test_zoom_keeps_shape_and_label_ids_and_magnifies_about_the_centre():
    image, label = _pair()
    out, out_label = Zoom(1.5)(image, label)
    assert out.shape == image.shape and out_label.shape == label.shape
    assert set(np.unique(out_label)) <= {0, 1, 2}
    assert np.count_nonzero(out_label) > np.count_nonzero(label)  # magnified
    same, same_label = Zoom(1.0)(image, label)
    np.testing.assert_allclose(same, image, atol=1e-5)
    np.testing.assert_array_equal(same_label, label)


def test_low_resolution_keeps_shape_and_label_and_removes_detail():
    image, label = _pair()
    out, out_label = LowResolution(0.5)(image, label)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out_label, label)
    roughness = lambda x: np.abs(np.diff(x, axis=-1)).mean()  # noqa: E731
    assert roughness(out) < roughness(image)
    np.testing.assert_array_equal(LowResolution(1.0)(image, label)[0], image)


def test_twins_are_registered_for_configs():
    for name in (
        "Flip",
        "Rotate",
        "Zoom",
        "ScaleIntensity",
        "Gamma",
        "GaussianBlur",
        "Contrast",
        "LowResolution",
        "RandomZoom3D",
        "RandomLowResolution",
    ):
        assert name in TRANSFORMS
