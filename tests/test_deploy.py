"""deploy/python/infer.py and its torch-free helpers: inputs, geometry, failures, no torch."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from medseg.inference.inputs import find_cases
from medseg.inference.postprocess import keep_largest_component
from medseg.preprocessing.io import Geometry, read_case, read_volume, write_volume
from tests._prepare_data import write_dicom_series
from tests.conftest import REPO

pytest.importorskip("onnxruntime")

INFER = REPO / "deploy" / "python" / "infer.py"
TOTALSEG = REPO / "tests" / "data" / "totalseg_small"
# The outputs are NIfTI, whose header keeps float32 positions: 1e-4 mm is far below a voxel.
GEOMETRY_TOL = 1e-4


@pytest.fixture(scope="module")
def infer():
    return importlib.import_module("medseg.commands.infer")


@pytest.fixture(scope="module")
def deploy_yaml(tiny_config, trained_run, tmp_path_factory) -> Path:
    from medseg.commands import export

    save_dir = tmp_path_factory.mktemp("export")
    model = trained_run / "best_model" / "model.pth"
    args = ["--config", str(tiny_config), "--model_path", str(model), "--save_dir", str(save_dir)]
    assert export.main(args) == 0
    return save_dir / "deploy.yaml"


@pytest.fixture(scope="module")
def raw_images(phantom_dir) -> list[Path]:
    return sorted((phantom_dir / "raw" / "imagesTr").glob("*_0000.nii.gz"))


def run(infer, deploy_yaml, image_path, save_dir, *extra: str) -> int:
    args = ["--config", str(deploy_yaml), "--image_path", str(image_path), "--save_dir"]
    return infer.main([*args, str(save_dir), "--device", "cpu", *extra])


def case_id(path: Path) -> str:
    return path.name.removesuffix(".nii.gz").removesuffix("_0000")


def assert_same_grid(output: Path, source: Path | Geometry) -> np.ndarray:
    label, geometry = read_volume(output)
    expected = source if isinstance(source, Geometry) else read_case([source])[1]
    assert geometry.mismatch(expected, GEOMETRY_TOL) is None, output
    return label


def flipped_and_permuted(image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, Geometry]:
    """The same physical scan stored differently: x reversed, then y and x swapped."""
    flipped = image[:, :, ::-1]
    direction = geometry.matrix.copy()
    direction[:, 2] *= -1
    origin = geometry.physical_point((0, 0, geometry.shape[2] - 1))
    stored = geometry.replace(shape=flipped.shape, origin=tuple(origin), direction=direction)
    permuted = np.ascontiguousarray(flipped.transpose(0, 2, 1))
    spacing = (stored.spacing[0], stored.spacing[2], stored.spacing[1])
    return permuted, stored.replace(
        shape=permuted.shape, spacing=spacing, direction=stored.matrix[:, [0, 2, 1]]
    )


@pytest.mark.slow
def test_phantom_folder_predictions_keep_each_scan_grid(infer, deploy_yaml, raw_images, tmp_path):
    assert run(infer, deploy_yaml, raw_images[0].parent, tmp_path) == 0
    written = sorted(p.name for p in tmp_path.glob("*.nii.gz"))
    assert written == sorted(f"{case_id(p)}.nii.gz" for p in raw_images)
    for image in raw_images:
        label = assert_same_grid(tmp_path / f"{case_id(image)}.nii.gz", image)
        assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, 2, 3}
    assert "case(s) written" in (tmp_path / "infer.log").read_text()
    assert not list(raw_images[0].parent.glob("*.log"))


@pytest.mark.slow
def test_geometry_of_oblique_anisotropic_and_real_scans(infer, deploy_yaml, raw_images, tmp_path):
    image, geometry = read_volume(raw_images[0])
    inputs = tmp_path / "inputs"
    oblique = geometry.replace(
        spacing=(3.1, 0.7, 1.3),
        origin=(-12.5, 40.25, 300.0),
        direction=[[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]],
    )
    write_volume(image, oblique, inputs / "oblique.nrrd")
    write_volume(image, oblique, inputs / "oblique_nifti.nii.gz")
    write_volume(image, geometry, inputs / "plain.nii.gz")
    write_volume(*flipped_and_permuted(image, geometry), inputs / "restored.nii.gz")
    shutil.copy(TOTALSEG / "example_ct_sm.nii.gz", inputs / "ct_ras.nii.gz")
    shutil.copy(TOTALSEG / "example_mr_sm.nii.gz", inputs / "mr_lps.nii.gz")
    out = tmp_path / "out"
    assert run(infer, deploy_yaml, inputs, out, "--save_probabilities", "--batch_size", "2") == 0
    for source in sorted(inputs.iterdir()):
        name = source.name.removesuffix(".nii.gz").removesuffix(".nrrd")
        assert_same_grid(out / f"{name}.nii.gz", source)

    # The same physical scan stored flipped and permuted gets the same prediction, voxel for voxel.
    plain = read_volume(out / "plain.nii.gz")[0]
    restored = read_volume(out / "restored.nii.gz")[0].transpose(0, 2, 1)[:, :, ::-1]
    np.testing.assert_array_equal(restored, plain)

    saved = np.load(out / "plain_probabilities.npz")
    assert saved["probabilities"].shape == (4, *image.shape)
    np.testing.assert_allclose(saved["probabilities"].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(saved["probabilities"].argmax(axis=0), plain)
    assert list(saved["class_names"]) == ["background", "liver", "spleen", "kidney"]
    np.testing.assert_allclose(saved["spacing"], geometry.spacing)


@pytest.mark.slow
def test_bad_cases_are_reported_and_the_rest_written(
    infer, deploy_yaml, raw_images, tmp_path, caplog
):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for image in raw_images[:2]:
        shutil.copy(image, inputs / image.name)
    (inputs / "broken_0000.nii.gz").write_bytes(b"not a NIfTI file at all")
    two = sitk.JoinSeries([sitk.Image(8, 8, 8, sitk.sitkInt16)] * 2)
    sitk.WriteImage(two, str(inputs / "two_channels.nii.gz"))
    out = tmp_path / "out"
    assert run(infer, deploy_yaml, inputs, out) == 1
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(
        f"{case_id(p)}.nii.gz" for p in raw_images[:2]
    )
    log = (out / "infer.log").read_text()
    assert "broken_0000.nii.gz" in log
    assert "the model takes 1 channel(s) (CT)" in log and "gave 2" in log
    assert "2 case(s) failed: broken, two_channels" in log
    assert sorted(p.name for p in inputs.iterdir()) == sorted(
        [*(p.name for p in raw_images[:2]), "broken_0000.nii.gz", "two_channels.nii.gz"]
    )


@pytest.mark.slow
def test_runs_with_torch_unimportable(deploy_yaml, raw_images, tmp_path):
    shim = textwrap.dedent(
        f"""
        import runpy, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, NoTorch())
        sys.argv = [
            "infer.py", "--config", {str(deploy_yaml)!r}, "--image_path",
            {str(raw_images[0])!r}, "--save_dir", {str(tmp_path)!r}, "--benchmark",
        ]
        try:
            runpy.run_path({str(INFER)!r}, run_name="__main__")
        finally:
            assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        """
    )
    env = dict(os.environ)  # medseg importable as an install makes it (conftest.py)
    result = subprocess.run(
        [sys.executable, "-c", shim],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / f"{case_id(raw_images[0])}.nii.gz").is_file()
    assert "mean of 1" in result.stdout and "Mvox/s" in result.stdout
    assert "onnxruntime" in result.stdout and "CPU:" in result.stdout


@pytest.mark.slow
def test_shards_split_the_sorted_cases(infer, deploy_yaml, raw_images, tmp_path):
    folder = raw_images[0].parent
    names = [f"{case_id(p)}.nii.gz" for p in raw_images]
    assert run(infer, deploy_yaml, folder, tmp_path / "0", "--shard", "0/4") == 0
    assert run(infer, deploy_yaml, folder, tmp_path / "3", "--shard", "3/4") == 0
    assert sorted(p.name for p in (tmp_path / "0").glob("*.nii.gz")) == names[0::4]
    assert sorted(p.name for p in (tmp_path / "3").glob("*.nii.gz")) == names[3::4]
    assert infer.parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(SystemExit):
            infer.parse_args(["--config", "x", "--image_path", "y", "--shard", bad])


@pytest.mark.slow
def test_list_file_with_relative_paths_and_lcc(infer, deploy_yaml, raw_images, tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.copy(raw_images[1], tmp_path / "sub" / raw_images[1].name)
    list_file = tmp_path / "cases.txt"
    list_file.write_text(f"# scans\n{raw_images[0]}\n\nsub/{raw_images[1].name}  # relative\n")
    out = tmp_path / "out"
    assert run(infer, deploy_yaml, list_file, out, "--lcc") == 0
    expected = sorted(f"{case_id(p)}.nii.gz" for p in raw_images[:2])
    assert sorted(p.name for p in out.glob("*.nii.gz")) == expected
    import scipy.ndimage

    for image in raw_images[:2]:
        label = assert_same_grid(out / f"{case_id(image)}.nii.gz", image)
        for class_id in np.unique(label)[1:]:
            _, count = scipy.ndimage.label(label == class_id, structure=np.ones((3, 3, 3)))
            assert count == 1


@pytest.mark.slow
def test_dicom_series_folder(infer, deploy_yaml, raw_images, tmp_path):
    image, geometry = read_volume(raw_images[0])
    write_dicom_series(image, geometry, tmp_path / "dicom" / "series_a")
    array, read_geometry = read_volume(tmp_path / "dicom" / "series_a")
    np.testing.assert_array_equal(array, image)
    assert read_geometry.mismatch(geometry, GEOMETRY_TOL) is None

    out = tmp_path / "out"
    assert run(infer, deploy_yaml, tmp_path / "dicom", out) == 0
    label = assert_same_grid(out / "series_a.nii.gz", read_geometry)
    reference = tmp_path / "reference"
    assert run(infer, deploy_yaml, raw_images[0], reference) == 0
    assert np.mean(label == read_volume(reference / f"{case_id(raw_images[0])}.nii.gz")[0]) > 0.999

    write_dicom_series(image[:3], geometry.replace(shape=(3, *image.shape[1:])), tmp_path / "b")
    write_dicom_series(image[:3], geometry.replace(shape=(3, *image.shape[1:])), tmp_path / "b", 3)
    with pytest.raises(ValueError, match="holds 2 DICOM series"):
        read_volume(tmp_path / "b")
    with pytest.raises(ValueError, match="no DICOM series was found"):
        read_volume(out)


@pytest.mark.slow
def test_outputs_never_go_into_input_folders(infer, deploy_yaml, raw_images, tmp_path, caplog):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(raw_images[0], inputs / raw_images[0].name)
    assert run(infer, deploy_yaml, inputs, inputs / "predictions") == 2
    assert "lies in the input folder" in caplog.text
    assert run(infer, deploy_yaml, inputs / raw_images[0].name, inputs) == 2
    assert "holds the input" in caplog.text
    assert [p.name for p in inputs.iterdir()] == [raw_images[0].name]


def test_find_cases_pairs_nnunet_channels(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "c.nrrd", "notes.json"):
        (folder / name).touch()
    cases = {c.case_id: c for c in find_cases(folder, num_channels=2)}
    assert sorted(cases) == ["a", "b", "c"]
    assert [p.name for p in cases["a"].paths] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert cases["a"].error is None and cases["c"].error is None
    assert "takes 2 channel(s) (_0000, _0001), found _0000" in cases["b"].error

    (single,) = find_cases(folder / "a_0001.nii.gz", num_channels=2)
    assert single.case_id == "a" and [p.name for p in single.paths] == [
        "a_0000.nii.gz",
        "a_0001.nii.gz",
    ]
    (one_channel,) = find_cases(folder / "b_0000.nii.gz", num_channels=1)
    assert (one_channel.case_id, one_channel.error) == ("b", None)

    other = tmp_path / "other"
    other.mkdir()
    (other / "c.nii.gz").touch()
    list_file = tmp_path / "list.txt"
    list_file.write_text(f"scans/c.nrrd\n{other / 'c.nii.gz'}\nmissing.nii.gz\n")
    cases = {c.case_id: c for c in find_cases(list_file, num_channels=1)}
    assert "given by several inputs" in cases["c"].error
    assert "no such file or folder" in cases["missing"].error
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_cases(tmp_path / "nowhere", 1)


def test_read_case_takes_channels_from_a_4d_file(tmp_path):
    rng = np.random.default_rng(0)
    channels = rng.integers(-100, 100, size=(2, 5, 6, 7)).astype(np.int16)
    image = sitk.JoinSeries([sitk.GetImageFromArray(c) for c in channels])
    image.SetSpacing((0.8, 0.9, 2.5, 1.0))
    image.SetOrigin((10.0, -20.0, 30.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "two.nii.gz"))
    # Identity ITK direction: array axis z (column 0) runs along physical z.
    write_volume(
        channels[0],
        Geometry((5, 6, 7), (2.5, 0.9, 0.8), (10.0, -20.0, 30.0), np.eye(3)[:, ::-1]),
        tmp_path / "one.nii.gz",
    )
    array, geometry = read_case([tmp_path / "two.nii.gz", tmp_path / "one.nii.gz"])
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, np.concatenate([channels, channels[:1]]))
    assert geometry.spacing == pytest.approx((2.5, 0.9, 0.8))
    assert geometry.origin == pytest.approx((10.0, -20.0, 30.0))
    with pytest.raises(ValueError, match="expected a 3D scalar volume"):
        read_volume(tmp_path / "two.nii.gz")


def test_keep_largest_component_per_class():
    label = np.zeros((6, 6, 6), dtype=np.uint8)
    label[0:2, 0:2, 0:2] = 1  # 8 voxels
    label[2, 2, 2] = 1  # touches the block by a corner only: same component
    label[5, 5, 5] = 1  # 1 voxel, apart
    label[0, 5, 0:3] = 2  # 3 voxels
    label[5, 0, 5] = 2  # 1 voxel, apart
    out = keep_largest_component(label, [1])
    expected = label.copy()
    expected[5, 5, 5] = 0
    np.testing.assert_array_equal(out, expected)
    both = keep_largest_component(label, [1, 2, 3])
    assert both[5, 0, 5] == 0 and np.sum(both == 2) == 3 and np.sum(both == 1) == 9
    assert label[5, 5, 5] == 1  # input untouched


@pytest.mark.slow
def test_dicom_seg_round_trip_references_the_series(infer, deploy_yaml, raw_images, tmp_path):
    pytest.importorskip("highdicom")
    import highdicom
    import pydicom

    from medseg.inference.dicom_seg import read_dicom_seg, series_files

    image, geometry = read_volume(raw_images[0])
    series = tmp_path / "dicom" / "ct"
    write_dicom_series(image, geometry, series)
    nifti, seg = tmp_path / "nifti", tmp_path / "seg"
    assert run(infer, deploy_yaml, series, nifti, "--no_tta") == 0
    assert run(infer, deploy_yaml, series, seg, "--no_tta", "--output_format", "dicom-seg") == 0
    expected = read_volume(nifti / "ct.nii.gz")[0]
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(read_dicom_seg(seg / "ct.dcm", series), expected)

    dataset = highdicom.seg.segread(str(seg / "ct.dcm"))
    assert [s.SegmentLabel for s in dataset.SegmentSequence] == ["liver", "spleen", "kidney"]
    assert all("RecommendedDisplayCIELabValue" in s for s in dataset.SegmentSequence)
    source = pydicom.dcmread(series_files(series)[0], stop_before_pixels=True)
    assert dataset.StudyInstanceUID == source.StudyInstanceUID
    referenced = dataset.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID

    # A volume file cannot become a SEG: that case is reported, the batch goes on.
    assert (
        run(infer, deploy_yaml, raw_images[0], tmp_path / "x", "--output_format", "dicom-seg") == 1
    )


def test_a_short_write_fails_the_case_and_leaves_no_output(
    infer, deploy_yaml, raw_images, tmp_path, monkeypatch, caplog
):
    """SimpleITK's NIfTI writer ignores a full disk: the runner must not count such a case."""
    real_write = sitk.WriteImage

    def write_half(image, name, **options):
        real_write(image, name, **options)
        with open(name, "r+b") as handle:
            handle.truncate(handle.seek(0, 2) // 2)

    monkeypatch.setattr(sitk, "WriteImage", write_half)
    out = tmp_path / "out"
    assert run(infer, deploy_yaml, raw_images[0], out) == 1
    assert not list(out.glob("*.nii.gz")) and not list(out.glob(".*"))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("the written file is incomplete" in e and "\n" not in e for e in errors)
    assert "0 of 1 case(s) written" in caplog.text


def test_hidden_leftovers_are_no_cases_and_stale_temporaries_go(
    infer, deploy_yaml, raw_images, tmp_path
):
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    shutil.copy(raw_images[0], inputs / raw_images[0].name)
    shutil.copy(raw_images[0], inputs / f".{raw_images[0].name}.x1y2.tmp.nii.gz")
    (out / ".old_case.nii.gz.k3j4.tmp.nii.gz").write_bytes(b"half")
    assert run(infer, deploy_yaml, inputs, out) == 0
    expected = sorted(
        [f"{case_id(raw_images[0])}.nii.gz", "infer.log", "infer_report.csv", "infer_report.json"]
    )
    assert sorted(p.name for p in out.iterdir()) == expected
