"""Volume I/O against bad data and full disks: NaN voxels, gaps in DICOM series, short writes."""

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from medseg.preprocessing import io
from medseg.preprocessing.io import read_volume, write_volume
from tests._prepare_data import geometry, make_case, write_dicom_series

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".mha", ".nrrd"])
def test_nan_and_inf_voxels_are_refused_naming_the_file(tmp_path, ext):
    image = make_case(0)[0][0].astype(np.float32)
    image[2, 3, 4], image[5, 6, 7] = np.nan, -np.inf
    path = tmp_path / f"scan{ext}"
    write_volume(image, geometry(0), path)
    with pytest.raises(ValueError, match=f"scan{ext}: holds 2 NaN or infinite voxel"):
        read_volume(path)
    image[2, 3, 4] = image[5, 6, 7] = 0.0
    write_volume(image, geometry(0), path)
    assert np.array_equal(read_volume(path)[0], image)


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path):
    image = make_case(0)[0][0]
    write_dicom_series(image, geometry(0), tmp_path / "series")
    assert read_volume(tmp_path / "series")[0].shape == image.shape
    (tmp_path / "series" / "s2_004.dcm").unlink()
    with pytest.raises(ValueError, match=r"series: DICOM series .* is not evenly spaced") as err:
        read_volume(tmp_path / "series")
    assert "s2_003.dcm and s2_005.dcm lie 6.000 mm apart, the others 3.000 mm" in str(err.value)


class ShortWrite:
    """SimpleITK's NIfTI writer on a full disk: no error, the file cut short."""

    def __init__(self, keep):
        self.keep = keep
        self.write = sitk.WriteImage

    def __call__(self, image, name, **options):
        self.write(image, name, **options)
        with open(name, "r+b") as handle:
            handle.truncate(self.keep(handle.seek(0, 2)))


@pytest.mark.parametrize("keep", [lambda size: 0, lambda size: size // 2, lambda size: size - 3])
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_a_short_write_raises_and_leaves_the_old_file(tmp_path, monkeypatch, ext, keep):
    path = tmp_path / f"pred{ext}"
    label = make_case(0)[1]
    write_volume(label, geometry(0), path)
    before = path.read_bytes()
    monkeypatch.setattr(io.sitk, "WriteImage", ShortWrite(keep))
    with pytest.raises(OSError, match=f"pred{ext}: the written file is incomplete"):
        write_volume(np.zeros_like(label), geometry(0), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_killed_parent_takes_its_preparation_workers_along(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, time  # medseg comes from PYTHONPATH (conftest.py)
        from medseg.utils.parallel import run_cases

        def work(case, folder):
            (folder / f"{{case}}.pid").write_text(str(os.getpid()))
            time.sleep(120)

        if __name__ == "__main__":
            from pathlib import Path
            list(run_cases(work, [("a", (Path({str(tmp_path)!r}),))], 1, "test"))
        """)
    )
    parent = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.DEVNULL)
    pid_file = tmp_path / "a.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert parent.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived its killed parent"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split()[2] == "Z")


def test_an_unwritable_output_folder_is_one_line_naming_it_and_the_errno(tmp_path, capsys):
    from medseg.utils.logging import setup_logging

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as code:
        setup_logging(blocker / "out" / "train.log")
    assert code.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1
    assert f"cannot write to the output folder {blocker / 'out'}: [Errno 20]" in lines[0]
    assert "ENOTDIR" in lines[0]


def test_a_full_disk_during_an_atomic_write_names_the_folder_and_errno(tmp_path):
    from medseg.utils.atomic import atomic_path

    full = OSError(errno.ENOSPC, "No space left on device")
    message = rf"\[Errno 28\] cannot write out\.npy in {tmp_path}"
    with pytest.raises(OSError, match=message), atomic_path(tmp_path / "out.npy"):
        raise full
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    from medseg.utils.atomic import remove_stale_temporaries

    (tmp_path / ".case.nii.gz.ab12cd.tmp.nii.gz").write_text("half")
    (tmp_path / "case.nii.gz").write_text("done")
    (tmp_path / ".hidden_config").write_text("user's")
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_config", "case.nii.gz"]
