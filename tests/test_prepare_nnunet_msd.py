"""medseg-prepare nnunet and msd on synthetic data in their real layouts."""

from __future__ import annotations

import importlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.preprocessing.description import load_description
from medseg.preprocessing.io import read_volume, write_volume
from medseg.preprocessing.pipeline import invert_label
from tests._prepare_data import BLOB_LABELS, write_msd_4d, write_nnunet, write_nnunet_meta


@pytest.fixture(scope="module")
def nnunet():
    return importlib.import_module("medseg.preparation.nnunet")


@pytest.fixture(scope="module")
def msd():
    return importlib.import_module("medseg.preparation.msd")


def _common(out: Path) -> list[str]:
    return [
        "--output_dir",
        str(out / "prep"),
        "--config_dir",
        str(out / "cfg"),
        "--num_workers",
        "0",
    ]


def test_nnunet_multichannel_folder_is_prepared_with_a_plan_and_configs(nnunet, tmp_path):
    raw = write_nnunet(tmp_path, num_cases=4, channels=2)
    assert nnunet.main(["--raw_dir", str(raw), *_common(tmp_path), "--val_fraction", "0.25"]) == 0
    info = load_description(tmp_path / "prep")
    assert list(info.modalities) == ["CT", "T2"] and info.num_classes == 3
    assert info.labels == {0: "background", 1: "core", 2: "rim"}
    image = np.load(tmp_path / "prep" / "images" / "blob_000.npy")
    assert image.shape[0] == 2 and image.dtype == np.float32
    # auto normalisation: CT window for the CT channel, z-score for the MR channel
    assert [spec["type"] for spec in info.plan["normalization"]] == ["ct", "zscore_nonzero"]
    assert info.plan["target_spacing"] == pytest.approx([3.0, 1.0, 1.2])
    assert all(n % 16 == 0 for n in info.plan["patch_size"])
    configs = sorted(p.name for p in (tmp_path / "cfg").iterdir())
    assert configs[0] == "dataset042_blobs.yml"
    assert [c.split("_")[0] for c in configs[1:]] == ["resencunet", "unet3d", "vnet"]


def test_nnunet_ignore_label_becomes_the_ignore_index(nnunet, tmp_path):
    """nnU-Net's "ignore" label (the highest id) marks unannotated voxels: 255, not a class."""
    raw = write_nnunet(tmp_path, num_cases=3)
    write_nnunet_meta(raw, num_cases=3, labels={**BLOB_LABELS, "ignore": 3})
    label, geometry = read_volume(raw / "labelsTr" / "blob_000.nii.gz")
    label[:, :, :3] = 3  # a strip left unannotated
    write_volume(label, geometry, raw / "labelsTr" / "blob_000.nii.gz")
    args = ["--raw_dir", str(raw), *_common(tmp_path), "--val_fraction", "0.34", "--no_crop"]
    assert nnunet.main([*args, "--target_spacing", "3", "1", "1.2"]) == 0
    info = load_description(tmp_path / "prep")
    assert info.num_classes == 3 and "ignore" not in info.labels.values()
    assert info.label_rules.ignore_labels == (3,)
    prepared = np.load(tmp_path / "prep" / info.cases["blob_000"].label)
    assert set(np.unique(prepared)) == {0, 1, 2, 255}
    assert "ignore_index: 255" in next((tmp_path / "cfg").glob("dataset042*.yml")).read_text()


def test_nnunet_missing_partner_is_reported_and_the_rest_prepared(nnunet, tmp_path):
    raw = write_nnunet(tmp_path, num_cases=4)
    (raw / "labelsTr" / "blob_002.nii.gz").unlink()
    args = ["--raw_dir", str(raw), *_common(tmp_path), "--val_fraction", "0.34"]
    assert nnunet.main(args) == 1
    info = load_description(tmp_path / "prep")
    assert list(info.failed_cases) == ["blob_002"]
    assert "images but no label" in info.failed_cases["blob_002"]
    assert sorted(info.cases) == ["blob_000", "blob_001", "blob_003"]
    assert nnunet.main([*args, "--allow_failures"]) == 0


def test_msd_4d_multimodal_task_skips_junk_and_keeps_geometry(msd, tmp_path):
    root = write_msd_4d(tmp_path)
    args = ["5", "--raw_dir", str(tmp_path), *_common(tmp_path), "--target_spacing", "none"]
    assert msd.main([*args, "--val_fraction", "0.34"]) == 0
    info = load_description(tmp_path / "prep")
    assert info.name == "Task05_Prostate" and list(info.modalities) == ["T2", "ADC"]
    assert sorted(info.cases) == ["prostate_00", "prostate_01", "prostate_02"]
    assert info.failed_cases == {}
    for case, entry in info.cases.items():
        assert np.load(tmp_path / "prep" / entry.image).shape[0] == 2
        label = np.load(tmp_path / "prep" / entry.label)
        restored = invert_label(label, entry.record)
        raw_label = np.asarray(nib.load(root / "labelsTr" / f"{case}.nii.gz").dataobj)
        assert np.array_equal(restored, np.transpose(raw_label, (2, 1, 0)))
        _, geometry = read_volume(root / "labelsTr" / f"{case}.nii.gz")
        assert entry.record.geometry.allclose(geometry)


def test_msd_task_names(msd):
    assert msd.task_folder("9") == msd.task_folder("Spleen") == "Task09_Spleen"
    assert msd.task_folder("Task01_BrainTumour") == msd.task_folder("01") == "Task01_BrainTumour"
    assert len(msd.TASKS) == 10
    with pytest.raises(ValueError, match="unknown MSD task 'Task11'"):
        msd.task_folder("Task11")


@pytest.mark.parametrize("tool", ["msd", "nnunet", "folder"])
def test_help_says_where_to_get_the_data_and_the_layout(tool, capsys):
    module = importlib.import_module(f"medseg.preparation.{tool}")
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = capsys.readouterr().out
    assert "Where to get the data" in text and "layout" in text.lower()
