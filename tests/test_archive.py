"""Archive extraction refuses crafted link chains without relying on Python's tar filter."""

import io
import tarfile

import pytest

from medseg.preprocessing import archive as archive_module
from medseg.preprocessing.archive import extract


def add_dir(tf, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    tf.addfile(info)


def add_link(tf, name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tf.addfile(info)


def add_file(tf, name, data=b"pwned"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def no_interpreter_filter(monkeypatch):
    """Extract as an interpreter without a working `filter="data"` would (3.11.7, CVE-2025-4517)."""
    monkeypatch.setattr(archive_module, "_tar_filter", dict)


def test_a_link_to_dot_then_dotdot_is_refused(tmp_path, no_interpreter_filter):
    """`d/s -> .` makes `d/s/..` the parent of `d`; `d/esc -> s/../..` reads as inside."""
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tf:
        add_dir(tf, "d")
        add_link(tf, "d/s", ".")
        add_link(tf, "d/esc", "s/../..")
        add_file(tf, "d/esc/evil.txt")
    dest = tmp_path / "sub" / "dest"
    with pytest.raises(ValueError, match="outside the destination"):
        extract(path, dest)
    assert not (tmp_path / "sub" / "evil.txt").exists()
    assert not any(dest.rglob("*"))


def test_a_symlink_chain_longer_than_path_max_is_refused(tmp_path, no_interpreter_filter):
    """The CVE-2025-4517 shape: each one-letter link names a 247-character folder, so the
    resolved path passes PATH_MAX while every name in the archive stays short."""
    long = "d" * 247
    steps = "abcdefghijklmnop"
    path = tmp_path / "chain.tar"
    with tarfile.open(path, "w") as tf:
        folder = ""
        for step in steps:
            add_dir(tf, f"{folder}{long}")
            add_link(tf, f"{folder}{step}", long)
            folder = f"{folder}{long}/"
        deep = "/".join(steps) + "/" + "l" * 254
        add_link(tf, deep, "../" * len(steps))
        add_link(tf, "escape", f"{deep}/..")
        add_file(tf, "escape/evil.txt")
    dest = tmp_path / "sub" / "dest"
    with pytest.raises(
        ValueError, match=r"PATH_MAX|outside the destination|written through the link"
    ):
        extract(path, dest)
    assert not (tmp_path / "sub" / "evil.txt").exists()
    assert not any(dest.rglob("*"))


def test_a_member_written_through_a_link_is_refused(tmp_path, no_interpreter_filter):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tf:
        add_dir(tf, "data")
        add_link(tf, "data/alias", ".")
        add_file(tf, "data/alias/x.txt")
    with pytest.raises(ValueError, match="written through the link 'data/alias'"):
        extract(path, tmp_path / "dest")


def test_a_hard_link_to_a_file_outside_is_refused(tmp_path, no_interpreter_filter):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tf:
        add_link(tf, "up", "..")
        info = tarfile.TarInfo("stolen")
        info.type, info.linkname = tarfile.LNKTYPE, "up/secret.txt"
        tf.addfile(info)
    with pytest.raises(ValueError, match="outside the destination"):
        extract(path, tmp_path / "dest")


def test_links_inside_the_destination_still_extract(tmp_path, no_interpreter_filter):
    path = tmp_path / "good.tar"
    with tarfile.open(path, "w") as tf:
        add_dir(tf, "Task/imagesTr")
        add_file(tf, "Task/imagesTr/a.nii.gz", b"a")
        add_link(tf, "Task/latest.nii.gz", "imagesTr/a.nii.gz")
    extract(path, tmp_path / "dest")
    assert (tmp_path / "dest" / "Task" / "latest.nii.gz").read_bytes() == b"a"


def test_a_link_loop_is_refused(tmp_path, no_interpreter_filter):
    path = tmp_path / "loop.tar"
    with tarfile.open(path, "w") as tf:
        add_link(tf, "a", "b/x")
        add_link(tf, "b", "a/..")
    with pytest.raises(ValueError, match="more than 40 links"):
        extract(path, tmp_path / "dest")


def test_a_member_past_path_max_is_refused(tmp_path, no_interpreter_filter):
    path = tmp_path / "long.tar"
    with tarfile.open(path, "w") as tf:
        add_file(tf, "/".join(["d" * 250] * 17))
    with pytest.raises(ValueError, match="PATH_MAX"):
        extract(path, tmp_path / "dest")
