"""Tests of the phantom generator and of preparing a dataset from nnU-Net raw layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.preparation import phantom as phantom_module
from medseg.preprocessing.description import load_description
from medseg.preprocessing.formats.nnunet import read_nnunet_raw
from medseg.preprocessing.io import read_volume, write_volume
from medseg.preprocessing.pipeline import invert_label
from medseg.preprocessing.prepare import PrepareSettings, prepare_cases
from medseg.preprocessing.recipe import Recipe

SMALL = ["--size", "64", "64", "24"]  # 2 × 2 × 5 mm raw voxels: fast, same anatomy


@pytest.fixture(scope="module")
def phantom():
    return phantom_module


@pytest.fixture(scope="module")
def prepared(phantom, tmp_path_factory):
    output = tmp_path_factory.mktemp("phantom")
    assert phantom.main(["--num_cases", "3", "--output_dir", str(output), *SMALL]) == 0
    return output


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_cases_are_ct_like_and_deterministic(phantom):
    size = (64, 64, 24)
    for index in range(4):
        image, label, geometry = phantom.make_case(index, seed=5, size=size)
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert sorted(geometry.shape) == sorted(size[::-1])
        assert set(np.unique(label)) == {0, 1, 2, 3}
        assert image.min() < -900  # air
        means = [np.median(image[label == v]) for v in (1, 2, 3)]
        assert 80 < means[0] < means[1] - 30 and means[1] < means[2] - 30 < 230
        voxel_ml = np.prod(geometry.spacing) / 1000.0
        for value in (1, 2, 3):  # organs large enough to segment at ~2 mm
            assert np.count_nonzero(label == value) * voxel_ml > 10.0
    again = phantom.make_case(1, seed=5, size=size)
    assert np.array_equal(again[0], phantom.make_case(1, 5, size)[0])
    assert not np.array_equal(again[0], phantom.make_case(1, 6, size)[0])


def test_geometries_cover_flips_permutation_and_an_oblique_case(phantom):
    geometries = [phantom.make_case(i, 0, (32, 32, 12))[2] for i in range(6)]
    canonical = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    assert geometries[0].direction == canonical
    assert geometries[1].direction == ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0), (1.0, 0.0, 0.0))
    assert geometries[5].shape == (32, 32, 12)  # stored with the slice axis last
    oblique = np.abs(geometries[2].matrix)
    assert 0.01 < np.sort(oblique, axis=None)[-4] < 0.2  # a few degrees off the axes
    assert all(np.linalg.norm(g.origin) > 100 for g in geometries)
    assert geometries[0].spacing[0] > 2 * geometries[0].spacing[1]  # anisotropic


def test_prepare_writes_the_layout_and_invertible_records(prepared):
    root = prepared / "preprocessed"
    description = load_description(root)
    assert description.labels == {0: "background", 1: "liver", 2: "spleen", 3: "kidney"}
    assert description.num_classes == 4 and description.modalities == ("CT",)
    assert description.recipe.target_spacing == (2.5, 1.6, 1.6)
    splits = description.splits
    assert len(splits["val"]) == 1 and len(splits["train"]) == 2 and splits["test"] == ()
    assert sorted(splits["train"] + splits["val"]) == sorted(description.cases)
    for split in ("train", "val"):
        lines = (root / f"{split}_list.txt").read_text().splitlines()
        assert lines == [f"images/{c}.npy labels/{c}.npy" for c in splits[split]]
    assert not (root / "test_list.txt").exists()

    for case, entry in description.cases.items():
        image = np.load(root / entry.image)
        label = np.load(root / entry.label)
        record = entry.record
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert image.shape == (1, *label.shape) and label.shape == record.shape_after_resample
        assert image.min() >= 0.0 and image.max() <= 1.0
        raw_label, raw_geometry = read_volume(root / entry.source_label)
        assert Path(root / entry.source_images[0]).name == f"{case}_0000.nii.gz"
        assert record.geometry == raw_geometry
        back = invert_label(label, record)
        if all(n >= m for n, m in zip(label.shape, record.shape_after_crop, strict=True)):
            assert np.array_equal(back, raw_label)
        for value in (1, 2, 3):
            assert dice(back == value, raw_label == value) > 0.95


def test_upsampling_recipe_inverts_every_raw_label_exactly(prepared, tmp_path):
    recipe = Recipe.from_dict({"target_spacing": [1.5, 1.0, 1.0], "image_order": 1})
    settings = PrepareSettings(val_fraction=0.34, test_fraction=0.34, num_workers=2)
    description = prepare_cases(read_nnunet_raw(prepared / "raw"), tmp_path, recipe, settings)
    assert description == load_description(tmp_path)  # what was returned is what was written
    assert [len(description.splits[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    assert (tmp_path / "test_list.txt").read_text().count(".npy") == 2
    for entry in description.cases.values():
        label = np.load(tmp_path / entry.label)
        raw_label, _ = read_volume(tmp_path / entry.source_label)
        assert np.array_equal(invert_label(label, entry.record), raw_label)


def test_rerun_with_the_same_arguments_is_skipped(phantom, prepared):
    description = prepared / "preprocessed" / "dataset.json"
    before = description.stat().st_mtime_ns
    assert phantom.main(["--num_cases", "3", "--output_dir", str(prepared), *SMALL]) == 0
    assert description.stat().st_mtime_ns == before


def test_force_and_changed_arguments_regenerate(phantom, tmp_path):
    args = ["--output_dir", str(tmp_path), "--size", "32", "32", "12"]
    phantom.main(["--num_cases", "3", *args])
    phantom.main(["--num_cases", "2", *args])  # fewer cases: stale files must go
    assert len(list((tmp_path / "raw" / "imagesTr").iterdir())) == 2
    before = (tmp_path / "phantom.json").stat().st_mtime_ns
    phantom.main(["--num_cases", "2", "--force", *args])
    assert (tmp_path / "phantom.json").stat().st_mtime_ns != before


def test_raw_layout_errors_name_the_case(phantom, tmp_path):
    raw = tmp_path / "raw"
    phantom.write_raw(raw, num_cases=2, seed=0, size=(24, 24, 8))
    assert sorted(read_nnunet_raw(raw).cases) == ["phantom_000", "phantom_001"]
    (raw / "imagesTr" / "phantom_001_0000.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"'phantom_001'.*a label but no image"):
        read_nnunet_raw(raw)
    (raw / "labelsTr" / "phantom_001.nii.gz").unlink()
    (raw / "labelsTr" / "phantom_000.nii.gz").rename(raw / "labelsTr" / "other.nii.gz")
    with pytest.raises(ValueError, match=r"'other'.*a label but no image"):
        read_nnunet_raw(raw)


def test_undeclared_label_ids_are_rejected_with_the_file_name(phantom, tmp_path):
    raw = tmp_path / "raw"
    phantom.write_raw(raw, num_cases=2, seed=0, size=(24, 24, 8))
    label_path = raw / "labelsTr" / "phantom_001.nii.gz"
    label, geometry = read_volume(label_path)
    label[0, 0, 0] = 9
    write_volume(label, geometry, label_path)
    with pytest.raises(ValueError, match=r"phantom_001\.nii\.gz: label ids \[9\] are not declared"):
        prepare_cases(read_nnunet_raw(raw), tmp_path / "out", Recipe())
