"""Tests for medseg.transforms: label safety, alignment, reproducibility, known answers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from medseg.cvlibs.registry import TRANSFORMS
from medseg.transforms import (
    Compose,
    Normalize,
    RandomContrast,
    RandomCrop3D,
    RandomFlip3D,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomResizedCrop3D,
    RandomRotation3D,
    RandomScaleIntensity,
    Resize3D,
)

IDS = (0, 1, 3)
SHAPE = (20, 24, 28)


def make_label(shape=SHAPE, dtype=np.uint8) -> np.ndarray:
    """Ids {0, 1, 3}: a ball of 1 with a box of 3 inside and a slab of 3 at one corner."""
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2
    label = np.zeros(shape, dtype=dtype)
    ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < (
        shape[0] / 2.5
    ) ** 2
    label[ball] = 1
    label[8:12, 10:14, 12:17] = 3
    label[:4, :6, :] = 3
    return label


def one_hot(label: np.ndarray) -> np.ndarray:
    """Image whose channel k is the indicator of class IDS[k] (float32, C=3)."""
    return np.stack([(label == i) for i in IDS]).astype(np.float32)


def aligned_fraction(image: np.ndarray, label: np.ndarray) -> float:
    """Check image/label alignment exactly; return the fraction of voxels it could check.

    Where an indicator channel is ~1, every interpolation neighbour of that voxel belonged to that
    class, so the nearest-neighbour label there must be that class. Raises AssertionError if not.
    """
    checked = np.zeros(label.shape, dtype=bool)
    for k, class_id in enumerate(IDS):
        pure = image[k] >= 1 - 1e-4
        assert np.all(label[pure] == class_id), f"label disagrees with image for class {class_id}"
        checked |= pure
    return float(checked.mean())


SPATIAL = {
    "flip": (RandomFlip3D(prob=1.0), SHAPE),
    "flip_per_axis": (RandomFlip3D(prob=0.5, flip_axis=[0, 2], per_axis=True), SHAPE),
    "rotate": (RandomRotation3D(degrees=45), SHAPE),
    "rotate_yx_nearest_image": (
        RandomRotation3D(degrees=[-30, 30], rotate_planes=[[1, 2]], order=0, image_fill=0),
        SHAPE,
    ),
    "resize": (Resize3D([15, 30, 21]), (15, 30, 21)),
    "resize_int_keep_z": (Resize3D(10, keep_z=True), (20, 12, 14)),
    "resized_crop": (RandomResizedCrop3D(size=[16, 18, 14], scale=[0.5, 1.2]), (16, 18, 14)),
    "resized_crop_pre": (
        RandomResizedCrop3D(size=12, scale=[0.8, 1.2], pre_crop=True, nonzero_mask=True),
        (12, 12, 12),
    ),
    "crop": (RandomCrop3D([16, 16, 16], fg_prob=0.5), (16, 16, 16)),
    "crop_pad": (RandomCrop3D([32, 12, 20], fg_prob=0.5), (32, 12, 20)),
}
RANDOM_SPATIAL = [k for k in SPATIAL if not k.startswith("resize")]


@pytest.mark.parametrize("name", list(SPATIAL))
def test_spatial_keeps_ids_alignment_shape_and_dtype(name):
    transform, expected_shape = SPATIAL[name]
    label = make_label()
    image = one_hot(label)
    checked = []
    for seed in range(12):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape == (3, *expected_shape)
        assert out_label.shape == expected_shape
        assert out_image.dtype == np.float32 and out_label.dtype == np.uint8
        assert out_image.flags.c_contiguous and out_label.flags.c_contiguous
        assert set(np.unique(out_label)) <= set(IDS)
        checked.append(aligned_fraction(out_image, out_label))
    assert np.mean(checked) > 0.5  # the alignment check covered most voxels


def test_alignment_check_detects_a_one_voxel_shift():
    label = make_label()
    image = one_hot(label)
    with pytest.raises(AssertionError):
        aligned_fraction(image, np.roll(label, 1, axis=2))


@pytest.mark.parametrize("name", RANDOM_SPATIAL)
def test_same_seed_same_output_different_seed_differs(name):
    transform, _ = SPATIAL[name]
    label = make_label()
    image = one_hot(label)
    first = transform(image, label, np.random.default_rng(7))
    again = transform(image, label, np.random.default_rng(7))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    outputs = {transform(image, label, np.random.default_rng(s))[0].tobytes() for s in range(8)}
    assert len(outputs) > 1


def test_no_transform_touches_global_numpy_rng():
    label = make_label()
    image = one_hot(label)
    np.random.seed(1234)
    before = np.random.get_state()
    transforms = [t for t, _ in SPATIAL.values()] + list(INTENSITY.values())
    for seed, transform in enumerate(transforms):
        transform(image, label, np.random.default_rng(seed))
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_label_dtype_is_kept_and_label_none_is_supported():
    label = make_label(dtype=np.int64)
    image = one_hot(label)
    rng = np.random.default_rng(0)
    for transform, _ in SPATIAL.values():
        out_image, out_label = transform(image, label, rng)
        assert out_label.dtype == np.int64
        image_only, none = transform(image, None, np.random.default_rng(0))
        assert none is None and image_only.shape == out_image.shape


def test_flip_is_involutive_and_flips_the_named_axis():
    label = make_label()
    image = one_hot(label)
    rng = np.random.default_rng(0)
    for axis in range(3):
        flip = RandomFlip3D(prob=1.0, flip_axis=[axis])
        once = flip(image, label, rng)
        assert np.array_equal(once[1], np.flip(label, axis))
        assert np.array_equal(once[0], np.flip(image, axis + 1))
        twice = flip(*once, rng)
        assert np.array_equal(twice[0], image) and np.array_equal(twice[1], label)


def test_flip_prob_zero_is_identity():
    label = make_label()
    out = RandomFlip3D(prob=0.0)(one_hot(label), label, np.random.default_rng(0))
    assert np.array_equal(out[1], label)


def test_resize_same_size_is_identity_and_2x_nearest_repeats_voxels():
    label = make_label()
    image = one_hot(label)
    same = Resize3D(list(SHAPE))(image, label)
    assert np.array_equal(same[0], image) and np.array_equal(same[1], label)
    up = Resize3D([2 * n for n in SHAPE])(image, label)
    expected = label.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert np.array_equal(up[1], expected)


def test_resized_crop_of_whole_volume_equals_resize():
    label = make_label()
    image = one_hot(label)
    crop = RandomResizedCrop3D(size=[10, 12, 14], scale=[1.0, 1.0], ratio=[1.0, 1.0])
    got = crop(image, label, np.random.default_rng(3))
    want = Resize3D([10, 12, 14])(image, label)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_rotation_known_answers():
    label = make_label((8, 16, 16))
    image = one_hot(label)
    rng = np.random.default_rng(0)
    still = RandomRotation3D(degrees=[0, 0])(image, label, rng)
    assert np.array_equal(still[0], image) and np.array_equal(still[1], label)
    quarter = RandomRotation3D(degrees=[90, 90], rotate_planes=[[1, 2]])(image, label, rng)
    assert np.array_equal(quarter[1], np.rot90(label, k=1, axes=(1, 2)))
    np.testing.assert_allclose(quarter[0], np.rot90(image, k=1, axes=(2, 3)), atol=1e-5)
    for plane in ([0, 1], [0, 2], [1, 2]):  # same direction as scipy (and MedicalSeg)
        turned, _ = RandomRotation3D(degrees=[17, 17], rotate_planes=[plane])(image, None, rng)
        want = ndimage.rotate(image[1], 17, axes=plane, reshape=False, order=1)
        np.testing.assert_allclose(turned[1][2:-2, 2:-2, 2:-2], want[2:-2, 2:-2, 2:-2], atol=1e-5)


def test_rotation_fills_image_with_channel_minimum_and_label_with_zero():
    label = np.full((6, 20, 20), 3, dtype=np.uint8)
    image = np.full((1, 6, 20, 20), 5.0, dtype=np.float32)
    image[0, :, 0, 0] = -2.0  # channel minimum
    out_image, out_label = RandomRotation3D(degrees=[45, 45], rotate_planes=[[1, 2]])(
        image, label, np.random.default_rng(0)
    )
    outside = out_label == 0
    assert outside[:, 0, 0].all() and outside.sum() > 0  # rotated-in corners
    np.testing.assert_allclose(out_image[0][outside], -2.0, atol=1e-5)


def test_random_crop_with_fg_prob_one_always_contains_foreground_of_every_class():
    label = np.zeros((40, 60, 60), dtype=np.uint8)
    label[30, 50, 7] = 3  # one voxel
    label[5:8, 5:9, 40:45] = 1
    image = one_hot(label)
    crop = RandomCrop3D(16, fg_prob=1.0)
    seen = set()
    for seed in range(60):
        out_image, out_label = crop(image, label, np.random.default_rng(seed))
        assert out_label.shape == (16, 16, 16) and out_image.shape == (3, 16, 16, 16)
        present = set(np.unique(out_label)) - {0}
        assert present
        seen |= present
        aligned_fraction(out_image, out_label)
    assert seen == {1, 3}  # classes are drawn uniformly, so the single voxel is found too


def test_random_crop_jitter_zero_centres_the_foreground_voxel():
    label = np.zeros((40, 40, 40), dtype=np.uint8)
    label[20, 17, 23] = 1
    out = RandomCrop3D([10, 12, 14], fg_prob=1.0, jitter=0.0)(
        one_hot(label), label, np.random.default_rng(0)
    )
    assert out[1][5, 6, 7] == 1 and out[1].sum() == 1


def test_random_crop_pads_small_volumes_to_exact_size():
    label = make_label((10, 12, 14))
    image = one_hot(label) * 2.0 + 1.0  # channel minimum is 1.0
    for seed in range(10):
        out_image, out_label = RandomCrop3D(16, fg_prob=0.33)(
            image, label, np.random.default_rng(seed)
        )
        assert out_image.shape == (3, 16, 16, 16) and out_label.shape == (16, 16, 16)
        for class_id in IDS[1:]:  # the whole volume is inside the patch
            assert (out_label == class_id).sum() == (label == class_id).sum()
        padded = out_image.max(axis=0) == 1.0  # padding: every channel at its minimum
        assert padded.sum() == 16**3 - label.size
        assert np.all(out_label[padded] == 0)


def test_random_crop_without_foreground_falls_back_to_uniform():
    label = np.zeros((20, 20, 20), dtype=np.uint8)
    out = RandomCrop3D(8, fg_prob=1.0)(one_hot(label), label, np.random.default_rng(0))
    assert out[1].shape == (8, 8, 8) and not out[1].any()


def test_random_crop_never_oversamples_the_ignore_index():
    label = np.zeros((40, 40, 40), dtype=np.uint8)
    label[:8, :8, :8] = 255
    label[35, 35, 35] = 1
    crop = RandomCrop3D(8, fg_prob=1.0, ignore_index=255)
    for seed in range(20):
        out = crop(one_hot(label), label, np.random.default_rng(seed))[1]
        assert 1 in out and 255 not in out


INTENSITY = {
    "normalize": Normalize(),
    "scale": RandomScaleIntensity(prob=1.0, per_channel=True),
    "gamma": RandomGamma(prob=1.0),
    "noise": RandomGaussianNoise(prob=1.0),
    "blur": RandomGaussianBlur(prob=1.0),
    "contrast": RandomContrast(prob=1.0),
}


def textured_image(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, *SHAPE)) * 3 + 10).astype(np.float32)


@pytest.mark.parametrize("name", list(INTENSITY))
def test_intensity_keeps_shape_dtype_and_label(name):
    transform = INTENSITY[name]
    image, label = textured_image(), make_label()
    out_image, out_label = transform(image, label, np.random.default_rng(0))
    assert out_image.shape == image.shape and out_image.dtype == np.float32
    assert out_label is not None and out_label.dtype == label.dtype
    assert np.array_equal(out_label, make_label())
    assert not np.array_equal(out_image, image)
    assert np.array_equal(image, textured_image())  # input not modified in place


def test_gamma_keeps_each_channel_range():
    image = textured_image()
    out, _ = RandomGamma(gamma=[0.5, 2.0], prob=1.0)(image, None, np.random.default_rng(1))
    np.testing.assert_allclose(out.min(axis=(1, 2, 3)), image.min(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(out.max(axis=(1, 2, 3)), image.max(axis=(1, 2, 3)), rtol=1e-6)


def test_intensity_known_answers():
    image = textured_image()
    rng = np.random.default_rng(0)
    doubled, _ = RandomScaleIntensity(scale=[2, 2], prob=1.0)(image, None, rng)
    np.testing.assert_array_equal(doubled, image * 2)
    flat, _ = RandomContrast(factor=[0.5, 0.5], prob=1.0)(image, None, rng)
    mean = image.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(flat, (image - mean) * 0.5 + mean, atol=1e-5)
    steep, _ = RandomContrast(factor=[3, 3], prob=1.0)(image, None, rng)
    assert steep.min() >= image.min() and steep.max() <= image.max()
    noisy, _ = RandomGaussianNoise(std=[0.5, 0.5], prob=1.0)(np.zeros_like(image), None, rng)
    assert abs(noisy.std() - 0.5) < 0.01 and abs(noisy.mean()) < 0.01
    for transform in INTENSITY.values():
        if transform is not INTENSITY["normalize"]:
            kept, _ = type(transform)(prob=0.0)(image, None, rng)
            np.testing.assert_array_equal(kept, image)


def test_blur_works_per_channel_and_keeps_mass():
    image = np.zeros((2, 15, 15, 15), dtype=np.float32)
    image[1, 7, 7, 7] = 1.0
    out, _ = RandomGaussianBlur(sigma=[1, 1], prob=1.0)(image, None, np.random.default_rng(0))
    assert not out[0].any()
    assert out[1, 7, 7, 7] < 0.1 and abs(out[1].sum() - 1.0) < 1e-4


def test_normalize_statistics():
    image = textured_image()
    out, _ = Normalize()(image, None)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)
    given, _ = Normalize(mean=[10, 0], std=[2, 1])(image, None)
    np.testing.assert_allclose(given[0], (image[0] - 10) / 2, atol=1e-5)
    np.testing.assert_allclose(given[1], image[1], atol=1e-6)
    image[:, :5] = 0
    masked, _ = Normalize(nonzero=True)(image, None)
    assert not masked[:, :5].any()
    np.testing.assert_allclose(masked[:, 5:].mean(axis=(1, 2, 3)), 0, atol=1e-4)
    with pytest.raises(ValueError, match="3 values but the image has 2 channels"):
        Normalize(mean=[1, 2, 3])(image, None)


def test_registry_builds_medicalseg_style_configs():
    configs = [  # from MedicalSeg's lung_coronavirus, mri_spine_seg and synapse configs
        {"type": "RandomResizedCrop3D", "size": 16, "scale": [0.8, 1.2]},
        {"type": "RandomRotation3D", "degrees": 90},
        {"type": "RandomRotation3D", "degrees": 20, "rotate_planes": [[1, 2]]},
        {"type": "RandomFlip3D", "flip_axis": [1, 2]},
        {"type": "RandomFlip3D"},
        {"type": "Resize3D", "size": [1, 16, 16], "keep_z": True, "order": 1},
        {"type": "RandomResizedCrop3D", "size": [8, 16, 16], "interpolation": 3, "pre_crop": True},
    ]
    built = [
        TRANSFORMS.get(c["type"])(**{k: v for k, v in c.items() if k != "type"}) for c in configs
    ]
    label = make_label()
    image, out = Compose(built)(one_hot(label), label, np.random.default_rng(0))
    assert image.shape == (3, 8, 16, 16) and out.shape == (8, 16, 16)
    assert set(np.unique(out)) <= set(IDS)
    assert TRANSFORMS.get("RandomFlip3D") is RandomFlip3D
    assert TRANSFORMS.get("Compose") is Compose


def test_errors_name_the_problem():
    label = make_label()
    image = one_hot(label)
    with pytest.raises(ValueError, match=r"label shape \(20, 24, 27\)"):
        Resize3D(8)(image, label[..., :-1])
    with pytest.raises(ValueError, match=r"needs a numpy\.random\.Generator"):
        RandomFlip3D()(image, label)
    with pytest.raises(ValueError, match="integer class ids"):
        RandomFlip3D()(image, label.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(C, Z, Y, X\)"):
        RandomFlip3D()(image[0], label, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rotate_planes"):
        RandomRotation3D(10, rotate_planes=[[1, 1]])
    with pytest.raises(ValueError, match="size"):
        RandomCrop3D([16, 16])
    with pytest.raises(ValueError, match="Compose: transforms\\[0\\]"):
        Compose([{"type": "RandomFlip3D"}])


def test_import_is_torch_free():
    code = "import sys, medseg.transforms; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
