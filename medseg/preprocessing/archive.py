"""Safe extraction of .zip, .tar, .tar.gz/.tgz and .tar.bz2/.tar.xz archives.

Every member is checked before anything is written: absolute paths, `..` components, links
(symbolic or hard) that point outside the destination, and device files are refused with an
error naming the member. macOS junk (`__MACOSX/` folders and `._*` resource forks, as shipped in
the Medical Segmentation Decathlon tars) is skipped. A finished extraction leaves a stamp
(`.<archive name>.extracted`) so that a rerun does not extract again.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tarfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from medseg.utils.atomic import write_text_atomic

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_junk(name: str) -> bool:
    """True for macOS metadata members (`__MACOSX/...`, `._*`)."""
    parts = name.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._")


def _safe_name(name: str, archive: Path) -> str:
    normal = posixpath.normpath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if normal == ".." or normal.startswith("../"):
        raise ValueError(f"{archive}: member {name!r} points outside the destination ('..')")
    return normal


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = _safe_name(member.name, archive)
    if member.issym() or member.islnk():
        base = posixpath.dirname(name) if member.issym() else ""
        target = member.linkname
        if posixpath.isabs(target):
            raise ValueError(f"{archive}: link {member.name!r} -> {target!r} is absolute")
        _safe_name(posixpath.join(base, target), archive)
    elif not (member.isfile() or member.isdir()):
        raise ValueError(f"{archive}: member {member.name!r} is a device or fifo; refusing")


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract `archive` into `dest` after checking every member; returns `dest`."""
    archive, dest = Path(archive), Path(dest)
    stamp = dest / f".{archive.name}.extracted"
    size = str(archive.stat().st_size)
    if stamp.is_file() and stamp.read_text() == size:
        logger.info("%s is already extracted into %s", archive, dest)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not is_junk(m.filename)]
            for member in members:
                _safe_name(member.filename, archive)
            for member in tqdm(members, desc=f"extracting {archive.name}", unit="file"):
                zf.extract(member, dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = [m for m in tf.getmembers() if not is_junk(m.name)]
            for member in members:
                _check_tar_member(member, archive)
            for member in tqdm(members, desc=f"extracting {archive.name}", unit="file"):
                tf.extract(member, dest, set_attrs=False, **_tar_filter())
    else:
        raise ValueError(f"{archive}: not a zip or tar archive (accepted: {ARCHIVE_SUFFIXES})")
    write_text_atomic(stamp, size)
    return dest


def _tar_filter() -> dict[str, str]:
    """Python's own "data" filter as a second guard where the interpreter has it."""
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
