"""Safe extraction of .zip, .tar, .tar.gz/.tgz and .tar.bz2/.tar.xz archives.

Every member is checked before anything is written: absolute paths, `..` components in member
names, members written through a link, links (symbolic or hard) that resolve outside the
destination or past PATH_MAX, and device files are refused with an error naming the member.
Links are resolved here, in memory, as extraction would follow them: the interpreter's
`filter="data"` is only a second guard (on some Python versions it misses long link chains,
CVE-2025-4517). macOS junk (`__MACOSX/` folders and `._*` resource forks, as shipped in
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


_MAX_LINK_HOPS = 40  # the kernel's limit on symbolic links followed in one path lookup
_PATH_MAX = 4096


def _safe_name(name: str, archive: Path) -> str:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    # No `..` at all: `a/link/..` is not `a` when `link` is a symbolic link.
    if ".." in name.replace("\\", "/").split("/"):
        raise ValueError(f"{archive}: member {name!r} points outside the destination ('..')")
    return posixpath.normpath(name.replace("\\", "/"))


class _TarLinks:
    """The symbolic links a tar declares, to resolve its paths as extraction would."""

    def __init__(self, members: list[tarfile.TarInfo], archive: Path, dest: Path):
        self.archive = archive
        self.dest_length = len(str(dest.absolute()))
        self.links = {_safe_name(m.name, archive): m.linkname for m in members if m.issym()}

    def _too_long(self, path: str, what: str) -> None:
        if self.dest_length + 1 + len(path) >= _PATH_MAX:
            raise ValueError(
                f"{self.archive}: {what} reaches a path longer than PATH_MAX ({_PATH_MAX}) in "
                "the destination; refusing"
            )

    def resolve(self, start: list[str], target: str, what: str, hops: int = 0) -> list[str]:
        """The folders and name that `target`, followed from folder `start`, ends at."""
        if posixpath.isabs(target) or target.startswith("\\"):
            raise ValueError(f"{self.archive}: {what} is absolute")
        path = list(start)
        for part in target.replace("\\", "/").split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not path:
                    raise ValueError(f"{self.archive}: {what} points outside the destination")
                path.pop()
                continue
            path.append(part)
            self._too_long("/".join(path), what)
            link = self.links.get("/".join(path))
            if link is not None:
                if hops >= _MAX_LINK_HOPS:
                    raise ValueError(f"{self.archive}: {what} follows more than 40 links")
                path = self.resolve(path[:-1], link, what, hops + 1)
        return path

    def check(self, member: tarfile.TarInfo) -> None:
        """Raise, naming `member`, unless it and what it links to stay inside the destination."""
        name = _safe_name(member.name, self.archive)
        parts = name.split("/")
        self._too_long(name, f"member {member.name!r}")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in self.links:
                raise ValueError(
                    f"{self.archive}: member {member.name!r} is written through the link "
                    f"{'/'.join(parts[:depth])!r}; refusing"
                )
        if member.issym():
            self.resolve(
                parts[:-1], member.linkname, f"link {member.name!r} -> {member.linkname!r}"
            )
        elif member.islnk():
            self.resolve([], member.linkname, f"link {member.name!r} -> {member.linkname!r}")
        elif not (member.isfile() or member.isdir()):
            raise ValueError(
                f"{self.archive}: member {member.name!r} is a device or fifo; refusing"
            )


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
            links = _TarLinks(members, archive, dest)
            for member in members:
                links.check(member)
            for member in tqdm(members, desc=f"extracting {archive.name}", unit="file"):
                tf.extract(member, dest, set_attrs=False, **_tar_filter())
    else:
        raise ValueError(f"{archive}: not a zip or tar archive (accepted: {ARCHIVE_SUFFIXES})")
    write_text_atomic(stamp, size)
    return dest


def _tar_filter() -> dict[str, str]:
    """Python's own "data" filter as a second guard where the interpreter has it."""
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
