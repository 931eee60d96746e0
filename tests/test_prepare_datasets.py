"""The dataset scripts (COVID-19 CT, MRSpineSeg, PROMISE12, LUNA16) on tiny synthetic files in
each dataset's real folder layout and file naming, offline, end to end."""

from __future__ import annotations

import importlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from medseg.cvlibs import DATASETS, MODELS, Config
from medseg.preprocessing import zenodo
from medseg.preprocessing.description import load_description
from medseg.preprocessing.download import file_digest
from medseg.preprocessing.io import Geometry, read_volume, to_sitk, write_volume
from medseg.preprocessing.pipeline import invert_label

REPO = Path(__file__).resolve().parents[1]
SHAPE = (8, 24, 24)  # z, y, x


@pytest.fixture(scope="module")
def tools():
    names = ("lung_coronavirus", "mri_spine_seg", "prostate", "luna16")
    return {n: importlib.import_module(f"medseg.preparation.{n}") for n in names}


def _geometry(i: int) -> Geometry:
    return Geometry(SHAPE, (2.5, 1.0, 1.0), (5.0 * i, -12.0, 3.0), np.eye(3)[:, ::-1])


def _volumes(i: int, ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """An image (a brighter body on a dark margin) and a label holding `ids` in slabs along x."""
    rng = np.random.default_rng(i)
    image = rng.normal(100.0, 5.0, SHAPE).astype(np.float32)
    image[:, :2] = 0.0
    label = np.zeros(SHAPE, np.uint8)
    for k, value in enumerate(ids):
        label[2:6, 6:18, 4 + 5 * k : 8 + 5 * k] = value
        image[label == value] += 30.0 * (k + 1)
    return image, label


def _write(array: np.ndarray, i: int, path: Path) -> None:
    if path.suffix == ".mhd":  # .mhd + .raw pair, as PROMISE12 and LUNA16 ship them
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(to_sitk(array, _geometry(i)), str(path))
    else:
        write_volume(array, _geometry(i), path)


def _common(tmp_path: Path) -> list[str]:
    return ["--output_dir", str(tmp_path / "prep"), "--num_workers", "0", "--no_config"]


def _info(tmp_path: Path) -> dict:
    return load_description(tmp_path / "prep")


def _builds(config: Path, root: Path, num_classes: int) -> None:
    """The shipped config builds its model and both datasets on the prepared folder."""
    opts = [f"{key}.dataset_root={root}" for key in ("train_dataset", "val_dataset")]
    cfg = Config(config, opts=[*opts, "model.base_channels=4"])
    assert MODELS.build(cfg.model).num_classes == num_classes
    train, val = DATASETS.build(cfg.train_dataset), DATASETS.build(cfg.val_dataset)
    assert len(train) >= 1 and len(val) >= 1
    assert train.num_classes == num_classes


def test_lung_coronavirus_pairs_renamed_masks_and_maps_radiopaedia_back_to_hu(tools, tmp_path):
    raw = tmp_path / "raw"
    scans = {
        "coronacases_org_001": "coronacases_001",
        "coronacases_org_002": "coronacases_002",
        "radiopaedia_org_covid-19-pneumonia-4_85506_1-dcm": "radiopaedia_4_85506_1",
    }
    for i, (scan, case) in enumerate(scans.items()):
        image, label = _volumes(i, (1, 2))
        if scan.startswith("radiopaedia"):  # published as [-1250, 250] HU rescaled to [0, 255]
            image = np.clip((image - 1100 + 1250) / 1500 * 255, 0, 255).round().astype(np.uint8)
        else:
            image = (image - 1100).astype(np.int16)
        _write(image, i, raw / "COVID-19-CT-Seg_20cases" / f"{scan}.nii.gz")
        _write(label, i, raw / "Lung_Mask" / f"{case}.nii.gz")
        _write((label > 0).astype(np.uint8), i, raw / "Infection_Mask" / f"{case}.nii.gz")
    args = ["--raw_dir", str(raw), *_common(tmp_path), "--val_fraction", "0.34"]
    assert tools["lung_coronavirus"].main(args) == 0
    info = _info(tmp_path)
    assert sorted(info.cases) == sorted(scans.values())
    assert info.labels == {0: "background", 1: "left_lung", 2: "right_lung"}
    assert info.plan["target_spacing"] == [2.5, 2.5, 2.5]
    assert info.plan["normalization"] == [{"type": "ct", "window": [-1250.0, 250.0]}]
    entry = info.cases["radiopaedia_4_85506_1"]
    hu_file = tmp_path / "prep" / entry.source_images[0]
    assert hu_file.parent.name == "hu_scans"
    hu, geometry = read_volume(hu_file)
    published, published_geometry = read_volume(
        raw / "COVID-19-CT-Seg_20cases" / f"{next(iter(k for k in scans if 'radio' in k))}.nii.gz"
    )
    assert geometry.allclose(published_geometry)
    np.testing.assert_array_equal(hu, np.rint(published / 255.0 * 1500 - 1250))
    coronacase = tmp_path / "prep" / info.cases["coronacases_001"].source_images[0]
    assert coronacase.parent.name == "COVID-19-CT-Seg_20cases"  # already HU: used as is
    _builds(REPO / "configs/lung_coronavirus/vnet_lung_coronavirus_128_128_128_15k.yml",
            tmp_path / "prep", 3)  # fmt: skip
    _builds(REPO / "configs/lung_coronavirus/unet3d_lung_coronavirus_128_128_128_15k.yml",
            tmp_path / "prep", 3)  # fmt: skip


def test_lung_coronavirus_downloads_checked_archives_into_their_own_folders(
    tools, tmp_path, monkeypatch
):
    """Zenodo's zips hold bare files with the same names in every masks archive."""
    served = tmp_path / "zenodo"
    served.mkdir()
    for archive, names in [
        ("COVID-19-CT-Seg_20cases", [f"coronacases_org_00{i}.nii.gz" for i in (1, 2)]),
        ("Lung_and_Infection_Mask", [f"coronacases_00{i}.nii.gz" for i in (1, 2)]),
    ]:
        with zipfile.ZipFile(served / f"{archive}.zip", "w") as zf:
            for i, name in enumerate(names):
                image, label = _volumes(i, (1, 2, 3))
                volume = label if "Mask" in archive else (image - 1100).astype(np.int16)
                _write(volume, i, tmp_path / "tmp" / name)
                zf.write(tmp_path / "tmp" / name, name)
    files = [{"key": p.name, "checksum": f"md5:{file_digest(p, 'md5')}"} for p in served.iterdir()]
    monkeypatch.setattr(zenodo.urllib.request, "urlopen", _zenodo_reply(files))
    fetched = []

    def fake_download(url, dest, sha256=None, md5=None):
        source = served / url.rsplit("/", 1)[-1]
        assert md5 == file_digest(source, "md5")
        fetched.append(url)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(source, dest))

    tool = tools["lung_coronavirus"]
    monkeypatch.setattr(tool.driver, "download", fake_download)
    downloads = tmp_path / "downloads"
    args = ["--download_dir", str(downloads), *_common(tmp_path), "--val_fraction", "0.5"]
    assert tool.main([*args, "--masks", "lung_and_infection"]) == 0
    assert fetched == [
        "https://zenodo.org/records/3757476/files/COVID-19-CT-Seg_20cases.zip",
        "https://zenodo.org/records/3757476/files/Lung_and_Infection_Mask.zip",
    ]
    assert (downloads / "Lung_and_Infection_Mask" / "coronacases_001.nii.gz").is_file()
    info = _info(tmp_path)
    assert info.labels[3] == "infection"
    assert sorted(info.cases) == ["coronacases_001", "coronacases_002"]


def test_lung_coronavirus_infection_masks_option(tools, tmp_path):
    raw = tmp_path / "raw"
    for i in range(2):
        image, label = _volumes(i, (1,))
        _write((image - 1100).astype(np.int16), i, raw / "20_ncov_scan" /
               f"coronacases_org_00{i + 1}.nii.gz")  # fmt: skip
        _write(label, i, raw / "infection_mask" / f"coronacases_00{i + 1}.nii.gz")
    args = ["--raw_dir", str(raw), *_common(tmp_path), "--masks", "infection"]
    assert tools["lung_coronavirus"].main([*args, "--val_fraction", "0.5"]) == 0
    info = _info(tmp_path)
    assert info.labels == {0: "background", 1: "infection"}
    assert info.name == "lung_coronavirus"
    assert sorted(info.cases) == ["coronacases_001", "coronacases_002"]


@pytest.mark.parametrize("three_classes", [False, True])
def test_mri_spine_seg_pairs_case_and_mask_names_and_skips_the_test_set(
    tools, tmp_path, three_classes
):
    raw = tmp_path / "MRI_train" / "train"
    for i, n in enumerate((1, 2, 12)):
        image, label = _volumes(i, (2, 12, 19))
        _write(image, i, raw / "MR" / f"Case{n}.nii.gz")
        _write(label, i, raw / "Mask" / f"mask_case{n}.nii.gz")
    _write(_volumes(5, ())[0], 5, tmp_path / "MRI_test" / "MR" / "Case200.nii.gz")
    args = ["--raw_dir", str(tmp_path), *_common(tmp_path), "--val_fraction", "0.34"]
    assert tools["mri_spine_seg"].main(args + ["--three_classes"] * three_classes) == 0
    info = _info(tmp_path)
    assert sorted(info.cases) == ["Case1", "Case12", "Case2"]
    assert list(info.modalities) == ["T2"]
    assert [spec["type"] for spec in info.plan["normalization"]] == ["zscore_nonzero"]
    labels = np.load(tmp_path / "prep" / info.cases["Case12"].label)
    if three_classes:
        assert info.labels == {0: "background", 1: "vertebrae", 2: "discs"}
        assert set(np.unique(labels)) == {0, 1, 2}  # L5 (2) -> vertebrae; discs 12, 19 -> 2
    else:
        assert info.num_classes == 20
        assert info.labels[1] == "S" and info.labels[10] == "T9"
        assert info.labels[11] == "L5-S" and info.labels[19] == "T9-T10"
        assert set(np.unique(labels)) == {0, 2, 12, 19}
        for config in ("vnet", "unet3d"):
            _builds(REPO / f"configs/mri_spine_seg/{config}_mri_spine_seg_512_512_12_15k.yml",
                    tmp_path / "prep", 20)  # fmt: skip


def test_prostate_pairs_mhd_segmentations_skips_test_data_and_reports_a_lonely_scan(
    tools, tmp_path
):
    raw = tmp_path / "promise12"
    for i, (part, case) in enumerate([(1, "Case00"), (1, "Case01"), (2, "Case02")]):
        image, label = _volumes(i, (1,))
        _write(image, i, raw / f"TrainingData_Part{part}" / f"{case}.mhd")
        _write(label, i, raw / f"TrainingData_Part{part}" / f"{case}_segmentation.mhd")
    _write(_volumes(7, ())[0], 7, raw / "TrainingData_Part2" / "Case03.mhd")  # no segmentation
    _write(_volumes(8, ())[0], 8, raw / "TestData" / "Case00.mhd")  # test set: skipped
    args = ["--raw_dir", str(raw), *_common(tmp_path), "--val_fraction", "0.34"]
    assert tools["prostate"].main(args) == 1
    info = _info(tmp_path)
    assert sorted(info.cases) == ["Case00", "Case01", "Case02"]
    assert list(info.failed_cases) == ["Case03"]
    assert "Case03_segmentation.mhd" in info.failed_cases["Case03"]
    assert info.labels == {0: "background", 1: "prostate"}
    assert set(info.splits["train"]).isdisjoint(info.splits["val"])
    entry = info.cases["Case00"]
    record = entry.record
    raw_label, raw_geometry = read_volume(raw / "TrainingData_Part1" / "Case00_segmentation.mhd")
    assert record.geometry.allclose(raw_geometry)
    restored = invert_label(np.load(tmp_path / "prep" / entry.label), record)
    np.testing.assert_array_equal(restored, raw_label)
    for config in ("vnet_prostate_32_192_192_15k", "unet3d_prostate_32_192_192_15k"):
        _builds(REPO / f"configs/prostate/{config}.yml", tmp_path / "prep", 2)


def test_luna16_remaps_mask_ids_keeps_chosen_subsets_and_writes_configs_that_build(tools, tmp_path):
    raw = tmp_path / "luna16"
    uids = [f"1.3.6.1.4.1.14519.5.2.1.6279.6001.10{i}" for i in range(4)]
    for i, uid in enumerate(uids):
        image, label = _volumes(i, (3, 4, 5))
        _write((image - 1100).astype(np.int16), i, raw / f"subset{i % 3}" / f"{uid}.mhd")
        _write(label, i, raw / "seg-lungs-LUNA16" / f"{uid}.mhd")
    (raw / "subset2" / "notes.txt").write_text("not a scan")
    args = [
        "--raw_dir", str(raw), "--output_dir", str(tmp_path / "prep"), "--num_workers", "0",
        "--config_dir", str(tmp_path / "cfg"), "--subsets", "0", "1", "--val_fraction", "0.34",
        "--patch_size", "16", "16", "16", "--target_spacing", "2.5", "1", "1",
    ]  # fmt: skip
    assert tools["luna16"].main(args) == 0
    info = _info(tmp_path)
    assert sorted(info.cases) == sorted(uids[i] for i in (0, 1, 3))  # subset2 left out
    assert info.labels == {
        0: "background", 1: "left_lung", 2: "right_lung", 3: "trachea",
    }  # fmt: skip
    assert info.label_rules.label_map == {3: 1, 4: 2, 5: 3}
    entry = info.cases[uids[0]]
    record = entry.record
    raw_label, _ = read_volume(raw / "seg-lungs-LUNA16" / f"{uids[0]}.mhd")
    restored = invert_label(np.load(tmp_path / "prep" / entry.label), record)
    np.testing.assert_array_equal(restored, np.where(raw_label > 0, raw_label - 2, 0))
    _builds(REPO / "configs/luna16/vnet_luna16_96_160_160_15k.yml", tmp_path / "prep", 4)
    _builds(REPO / "configs/luna16/unet3d_luna16_96_160_160_15k.yml", tmp_path / "prep", 4)
    generated = sorted((tmp_path / "cfg").glob("vnet_luna16_16_16_16_*.yml"))
    assert len(generated) == 1
    cfg = Config(generated[0], opts=["model.base_channels=4"])
    assert MODELS.build(cfg.model).num_classes == 4 and len(DATASETS.build(cfg.train_dataset)) == 2


@pytest.mark.parametrize("name", ["lung_coronavirus", "mri_spine_seg", "prostate", "luna16"])
def test_help_says_where_to_get_the_data_and_the_layout(tools, name, capsys):
    with pytest.raises(SystemExit):
        tools[name].main(["--help"])
    text = capsys.readouterr().out
    assert "Where to get the data" in text and "Expected layout" in text


@pytest.mark.parametrize("name", ["mri_spine_seg", "prostate"])
def test_datasets_shared_on_request_need_raw_dir(tools, name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tools[name].main(["--output_dir", "unused"])
    assert exit_info.value.code == 2
    assert "--raw_dir is required" in capsys.readouterr().err


def _zenodo_reply(files: list[dict]):
    def urlopen(url, timeout):
        assert url.startswith("https://zenodo.org/api/records/")
        return io.BytesIO(json.dumps({"files": files}).encode())

    return urlopen


def test_luna16_downloads_the_chosen_subsets_with_zenodo_md5s(tools, monkeypatch):
    files = [{"key": f"subset{k}.zip", "checksum": f"md5:{k:032d}"} for k in range(10)]
    files.append({"key": "seg-lungs-LUNA16.zip", "checksum": "md5:" + "f" * 32})
    monkeypatch.setattr(zenodo.urllib.request, "urlopen", _zenodo_reply(files))
    sources = tools["luna16"].sources([0, 8])
    assert [s.filename for s in sources] == ["subset0.zip", "seg-lungs-LUNA16.zip", "subset8.zip"]
    assert sources[0].url == "https://zenodo.org/records/3723295/files/subset0.zip"
    assert sources[2].url == "https://zenodo.org/records/4121926/files/subset8.zip"
    assert [s.md5 for s in sources] == ["0" * 32, "f" * 32, f"{8:032d}"]


def test_zenodo_names_a_missing_file(monkeypatch):
    monkeypatch.setattr(
        zenodo.urllib.request, "urlopen", _zenodo_reply([{"key": "a.zip", "checksum": "x"}])
    )
    assert zenodo.record_files("1", ["a.zip"]) == {
        "a.zip": ("https://zenodo.org/records/1/files/a.zip", None)
    }
    with pytest.raises(ValueError, match=r"no file\(s\) \['b.zip'\]; it holds \['a.zip'\]"):
        zenodo.record_files("1", ["b.zip"])
