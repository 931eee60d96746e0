"""tools/prepare_folder.py: the user's own scans and labels to a dataset train.py trains."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from medseg.preparation import folder
from medseg.preprocessing.description import load_description
from medseg.preprocessing.io import read_volume, to_sitk, write_volume
from medseg.preprocessing.pipeline import invert_label
from tests._prepare_data import geometry, make_case, write_dicom_series

REPO = Path(__file__).resolve().parents[1]
TOTALSEG = REPO / "tests" / "data" / "totalseg_small"


@pytest.fixture(scope="module")
def folder_tool():
    return folder


def _write_folder(root: Path, num_cases: int, label_suffix: str = "") -> tuple[Path, Path]:
    images, labels = root / "scans", root / ("scans" if label_suffix else "masks")
    for i in range(num_cases):
        image, label = make_case(i)
        write_volume(image[0], geometry(i), images / f"liver_{i:03d}.nii.gz")
        write_volume(label, geometry(i), labels / f"liver_{i:03d}{label_suffix}.nii.gz")
    return images, labels


def _args(root: Path) -> list[str]:
    return [
        "--output_dir", str(root / "prep"), "--config_dir", str(root / "cfg"),
        "--num_workers", "0", "--label_names", "background", "liver", "tumour",
    ]  # fmt: skip


@pytest.mark.slow
def test_prepared_folder_trains_with_the_generated_config(folder_tool, tmp_path):
    from medseg.commands import train

    images, labels = _write_folder(tmp_path, 4)
    args = ["--images", str(images), "--labels", str(labels), "--name", "liver", *_args(tmp_path)]
    assert folder_tool.main([*args, "--patch_size", "16", "16", "16", "--iters", "2"]) == 0
    vnet = sorted((tmp_path / "cfg").glob("vnet_liver_16_16_16_2.yml"))
    assert len(vnet) == 1
    save_dir = tmp_path / "run"
    opts = ["--opts", "model.base_channels=4", "inference.patch_size=[16,16,16]"]
    assert train.main(["--config", str(vnet[0]), "--save_dir", str(save_dir), *opts]) == 0
    assert (save_dir / "iter_2").is_dir()


def test_one_folder_with_a_label_suffix_and_a_missing_partner(folder_tool, tmp_path):
    images, _ = _write_folder(tmp_path, 3, label_suffix="_seg")
    (images / "liver_001_seg.nii.gz").unlink()
    args = ["--images", str(images), "--label_suffix", "_seg", *_args(tmp_path), "--no_config"]
    assert folder_tool.main([*args, "--val_fraction", "0.5"]) == 1
    info = load_description(tmp_path / "prep")
    assert sorted(info.cases) == ["liver_000", "liver_002"]
    assert "has no label map" in info.failed_cases["liver_001"]
    assert not (tmp_path / "cfg").exists()


def test_geometry_round_trip_on_real_scans_with_label_remapping(folder_tool, tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    for case in ("ct_a", "ct_b"):
        (images / case).parent.mkdir(exist_ok=True)
        labels.mkdir(exist_ok=True)
        shutil.copy(TOTALSEG / "example_ct_sm.nii.gz", images / f"{case}.nii.gz")
        shutil.copy(TOTALSEG / "example_seg.nii.gz", labels / f"{case}.nii.gz")
    raw_label, raw_geometry = read_volume(labels / "ct_a.nii.gz")
    keep = {1: 1, 2: 2, 5: 3}  # spleen, right kidney, liver; every other structure -> 0
    mapping = [f"{i}:{keep.get(i, 0)}" for i in np.unique(raw_label) if i and i not in (1, 2)]
    args = [
        "--images", str(images), "--labels", str(labels), "--no_config", "--num_workers", "0",
        "--output_dir", str(tmp_path / "prep"), "--label_names", "bg", "spleen", "kidney", "liver",
        "--target_spacing", "1.5", "2", "2.5", "--label_map", *mapping, "--val_fraction", "0.5",
    ]  # fmt: skip
    assert folder_tool.main(args) == 0
    info = load_description(tmp_path / "prep")
    entry = info.cases["ct_a"]
    record = entry.record
    assert record.geometry == raw_geometry
    expected = np.vectorize(lambda v: keep.get(v, 0))(raw_label)
    restored = invert_label(np.load(tmp_path / "prep" / entry.label), record)
    assert np.array_equal(restored, expected)
    assert info.label_rules.label_map[5] == 3


def _prepare_own(folder_tool, root: Path, *extra: str) -> tuple[int, dict]:
    args = ["--images", str(root / "scans"), "--labels", str(root / "masks"), *_args(root)]
    code = folder_tool.main([*args, "--no_config", "--val_fraction", "0.34", *extra])
    return code, load_description(root / "prep")


def test_single_modality_names_ending_in_four_digits_are_cases(folder_tool, tmp_path):
    """scan_0001 with a label scan_0001 is a case, not channel 1 of 'scan'."""
    for i in range(3):
        image, label = make_case(i)
        write_volume(image[0], geometry(i), tmp_path / "scans" / f"scan_{i:04d}.nii.gz")
        write_volume(label, geometry(i), tmp_path / "masks" / f"scan_{i:04d}.nii.gz")
    code, info = _prepare_own(folder_tool, tmp_path)
    assert code == 0 and sorted(info.cases) == ["scan_0000", "scan_0001", "scan_0002"]


def test_modalities_as_channel_files_or_one_4d_file(folder_tool, tmp_path):
    cases = {}
    for i in range(3):
        image, label = make_case(i, channels=2)
        cases[f"mm_{i}"] = image
        write_volume(label, geometry(i), tmp_path / "masks" / f"mm_{i}.nii.gz")
        if i < 2:  # nnU-Net naming, one file per modality
            for c in range(2):
                write_volume(image[c], geometry(i), tmp_path / "scans" / f"mm_{i}_{c:04d}.nii.gz")
        else:  # one 4D file, channels along the fourth axis
            joined = sitk.JoinSeries([to_sitk(image[c], geometry(i)) for c in range(2)])
            sitk.WriteImage(joined, str(tmp_path / "scans" / f"mm_{i}.nii.gz"))
    code, info = _prepare_own(
        folder_tool, tmp_path, "--modality", "CT", "T2", "--ct_window", "0", "300"
    )
    assert code == 0 and list(info.modalities) == ["CT", "T2"]
    for case in cases:
        prepared = np.load(tmp_path / "prep" / info.cases[case].image)
        assert prepared.shape[0] == 2
        assert not np.allclose(prepared[0], prepared[1])  # two different channels kept apart


def test_dicom_series_mha_and_nrrd_scans(folder_tool, tmp_path):
    formats = {"dcm_case": None, "mha_case": ".mha", "nrrd_case": ".nrrd"}
    for i, (case, ext) in enumerate(formats.items()):
        image, label = make_case(i)
        if ext is None:
            write_dicom_series(image[0], geometry(i), tmp_path / "scans" / case)
        else:
            write_volume(image[0], geometry(i), tmp_path / "scans" / f"{case}{ext}")
        write_volume(label, geometry(i), tmp_path / "masks" / f"{case}.nii.gz")
    code, info = _prepare_own(folder_tool, tmp_path)
    assert code == 0 and sorted(info.cases) == sorted(formats)
    for i, case in enumerate(formats):
        record = info.cases[case].record
        assert record.geometry.allclose(geometry(i), tol=1e-4)


@pytest.mark.parametrize("inside", ["scans", "masks", "masks/prep"])
def test_an_output_folder_inside_the_inputs_is_refused(folder_tool, tmp_path, caplog, inside):
    images, labels = _write_folder(tmp_path, 2)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = ["--images", str(images), "--labels", str(labels), *_args(tmp_path)]
    args[args.index("--output_dir") + 1] = str(tmp_path / inside)
    assert folder_tool.main(args) == 2
    assert f"--output_dir {tmp_path / inside} lies in the input folder" in caplog.text
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
