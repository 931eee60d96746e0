"""One case pipeline: val.py's written predictions are the deploy runner's files, voxel for voxel;
the in-memory `Segmenter` gives the runner's files; a killed batch resumes with --skip_existing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from medseg.preprocessing.io import read_volume
from tests.conftest import REPO, load_tool

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

INFER = REPO / "deploy" / "python" / "infer.py"


@pytest.fixture(scope="module")
def infer():
    return load_tool(INFER)


@pytest.fixture(scope="module")
def lcc_config(tiny_config, tmp_path_factory) -> Path:
    """The training config with a largest-component filter on every class."""
    path = tmp_path_factory.mktemp("lcc") / "config.yml"
    path.write_text(f"_base_: {tiny_config}\npostprocess: {{largest_component: [1, 2, 3]}}\n")
    return path


@pytest.fixture(scope="module")
def exported(lcc_config, trained_run, tmp_path_factory) -> Path:
    """The best model exported with that filter."""
    import export

    save_dir = tmp_path_factory.mktemp("export_lcc")
    model = trained_run / "best_model"
    args = ["--config", str(lcc_config), "--model_path", str(model), "--save_dir", str(save_dir)]
    assert export.main(args) == 0
    return save_dir


@pytest.fixture(scope="module")
def val_case(phantom_dir) -> Path:
    (line,) = (phantom_dir / "preprocessed" / "val_list.txt").read_text().split("\n")[:1]
    case = Path(line.split()[0]).name.removesuffix(".npy")
    return phantom_dir / "raw" / "imagesTr" / f"{case}_0000.nii.gz"


def test_val_predictions_equal_the_runner_outputs(
    infer, exported, lcc_config, trained_run, val_case, tmp_path, monkeypatch
):
    import val
    from medseg.cvlibs import MODELS, Config
    from medseg.engine.checkpoint import load_model_weights
    from medseg.inference import segmenter
    from medseg.inference.torch_predictor import TorchPredictor

    model_path = trained_run / "best_model"
    val_dir = tmp_path / "val"
    args = ["--config", str(lcc_config), "--model_path", str(model_path)]
    assert val.main([*args, "--save_dir", str(val_dir), "--save_predictions"]) == 0
    case_id = val_case.name.removesuffix("_0000.nii.gz")
    scored, scored_geometry = read_volume(val_dir / "predictions" / f"{case_id}.nii.gz")

    # The runner with the same torch model behind it: the same file, bit for bit.
    model = MODELS.build(Config(lcc_config).model)
    load_model_weights(model, model_path)
    torch_predictor = TorchPredictor(model, "cpu")
    with monkeypatch.context() as patch:
        patch.setattr(segmenter, "OnnxPredictor", lambda *args: torch_predictor)
        out = tmp_path / "runner_torch"
        assert (
            infer.main(
                ["--config", str(exported), "--image_path", str(val_case), "--save_dir", str(out)]
            )
            == 0
        )
    written, geometry = read_volume(out / f"{case_id}.nii.gz")
    assert geometry.mismatch(scored_geometry) is None
    np.testing.assert_array_equal(written, scored)
    assert len(np.unique(written)) > 1

    # onnxruntime itself: the same map up to float rounding of a few voxels.
    out = tmp_path / "runner_onnx"
    assert (
        infer.main(
            [
                "--config",
                str(exported),
                "--image_path",
                str(val_case),
                "--save_dir",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert np.mean(read_volume(out / f"{case_id}.nii.gz")[0] == scored) > 0.999


def test_segmenter_gives_the_runner_files(infer, exported, val_case, tmp_path):
    from medseg.inference import Segmenter

    out = tmp_path / "cli"
    args = ["--config", str(exported / "deploy.yaml"), "--image_path", str(val_case)]
    assert infer.main([*args, "--save_dir", str(out), "--device", "cpu", "--no_tta"]) == 0
    case_id = val_case.name.removesuffix("_0000.nii.gz")
    written = read_volume(out / f"{case_id}.nii.gz")[0]

    seg = Segmenter(exported, device="cpu", tta=False)
    image = sitk.ReadImage(str(val_case))
    label = seg(image)
    assert label.GetSize() == image.GetSize() and label.GetSpacing() == image.GetSpacing()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), written)
    array, array_geometry = read_volume(val_case)
    result = seg.predict(array, array_geometry, probabilities=True)
    np.testing.assert_array_equal(result.label, written)
    assert result.probabilities.shape == (4, *written.shape)
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-5)
    (from_path,) = seg.batch([val_case])
    np.testing.assert_array_equal(from_path.label, written)
    with pytest.raises(ValueError, match="needs its Geometry"):
        seg.predict(array)
    with pytest.raises(ValueError, match=r"takes 1 channel\(s\) \(CT\), the input gave 2"):
        seg.predict(np.stack([array, array]), array_geometry)


def finished(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.nii.gz") if not p.name.startswith("."))


def test_killed_batch_resumes_with_skip_existing(exported, phantom_dir, tmp_path):
    images = sorted((phantom_dir / "raw" / "imagesTr").glob("*_0000.nii.gz"))[:3]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for image in images:
        os.symlink(image, inputs / image.name)
    out = tmp_path / "out"
    # Kill the runner while it writes the second label map: its temporary file stays behind.
    shim = textwrap.dedent(
        f"""
        import os, runpy, signal, sys
        import medseg.preprocessing.io as io

        real = io.write_volume
        count = 0

        def write_then_die(array, geometry, path):
            global count
            count += 1
            if count == 2:
                partial = os.path.join(os.path.dirname(path), f".{{os.path.basename(path)}}.tmp")
                open(partial + ".nii.gz", "wb").write(b"partial")
                os.kill(os.getpid(), signal.SIGKILL)
            real(array, geometry, path)

        io.write_volume = write_then_die
        sys.argv = ["infer.py", "--config", {str(exported)!r}, "--image_path", {str(inputs)!r},
                    "--save_dir", {str(out)!r}, "--device", "cpu", "--no_tta", "--skip_existing"]
        runpy.run_path({str(INFER)!r}, run_name="__main__")
        """
    )
    killed = subprocess.run([sys.executable, "-c", shim], cwd=REPO, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    names = [image.name.removesuffix("_0000.nii.gz") for image in images]
    assert finished(out) == [f"{names[0]}.nii.gz"]
    assert list(out.glob(".*.tmp.nii.gz"))  # the partial file, under its temporary name
    first = (out / f"{names[0]}.nii.gz").stat().st_mtime_ns
    report = json.loads((out / "infer_report.json").read_text())
    assert [row["status"] for row in report["cases"]] == ["written"]

    infer = load_tool(INFER)
    args = ["--config", str(exported), "--image_path", str(inputs), "--save_dir", str(out)]
    assert infer.main([*args, "--device", "cpu", "--no_tta", "--skip_existing"]) == 0
    assert finished(out) == [f"{n}.nii.gz" for n in names]
    assert (out / f"{names[0]}.nii.gz").stat().st_mtime_ns == first  # never recomputed
    report = json.loads((out / "infer_report.json").read_text())
    assert [row["status"] for row in report["cases"]] == ["skipped", "written", "written"]
    assert all(row["seconds"] > 0 for row in report["cases"][1:])
    csv_lines = (out / "infer_report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("case,status,seconds,read,preprocess,inference")
    assert len(csv_lines) == 4
