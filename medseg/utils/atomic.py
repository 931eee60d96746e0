"""Write files under a temporary name and rename, so no half-written file ever looks valid."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` when the block succeeds.

    The temporary file keeps the target's suffix (or `suffix`) so writers that choose a format
    by extension (SimpleITK, nibabel, numpy) behave. On an exception the temporary file is
    removed and `path` is left untouched.
    """
    target = Path(path)
    ext = suffix if suffix is not None else "".join(target.suffixes)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f".tmp{ext}", dir=target.parent
        )
    except OSError as err:
        raise _named(err, target) from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the permissions a plain open() would (umask applied).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        try:
            yield tmp
            os.replace(tmp, target)
        except OSError as err:
            raise _named(err, target) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _named(err: OSError, target: Path) -> OSError:
    """The error as one line naming the output folder and the errno (read-only, full)."""
    if err.errno is None or str(target.parent) in str(err.args[-1]):
        return err
    return OSError(err.errno, f"cannot write {target.name} in {target.parent}: {err.strerror}")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def is_temporary(path: str | os.PathLike) -> bool:
    """True for a temporary file of `atomic_path` (`.<name>.<random>.tmp<ext>`)."""
    name = Path(path).name
    return name.startswith(".") and ".tmp" in name


def remove_stale_temporaries(folder: str | os.PathLike, subfolders: Sequence[str] = ("",)) -> int:
    """Delete the temporary files a killed run left in `folder` (and its `subfolders`).

    Call it when a run starts writing into a folder no other run writes to at the same time.
    Returns how many files were removed.
    """
    removed = 0
    for sub in subfolders:
        where = Path(folder) / sub
        if not where.is_dir():
            continue
        for path in where.iterdir():
            if path.is_file() and not path.is_symlink() and is_temporary(path):
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        logger.info(
            "removed %d temporary file(s) left by an interrupted run in %s", removed, folder
        )
    return removed
