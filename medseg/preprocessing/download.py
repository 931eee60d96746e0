"""Download a file with resume (HTTP Range) and an optional checksum.

Bytes go to `<dest>.part`; a rerun continues from its size when the server honours `Range`
(status 206) and starts over when it does not (200). The finished file is checked against the
published SHA-256 or MD5 when one is given, then renamed onto `dest`, so `dest` only ever holds a
complete, verified file. A `dest` that exists and matches the checksum is not fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file ("sha256" or "md5")."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, sha256: str | None, md5: str | None) -> str | None:
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected and file_digest(path, algorithm) != expected.lower():
            return f"{algorithm} mismatch (expected {expected})"
    return None


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` to `dest`, resuming a partial download; returns `dest`.

    Raises:
        ValueError: when the downloaded file does not match the checksum (it is deleted).
        OSError: on network errors (the partial file is kept for the next try).
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 or md5) and _check(dest, sha256, md5) is None:
        logger.info("%s is already downloaded and verified", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: the part already holds every byte
            raise OSError(f"downloading {url} failed: HTTP {err.code} {err.reason}") from err
        response = None
    if response is not None:
        with response:
            resumed = offset > 0 and getattr(response, "status", 200) == 206
            if offset and not resumed:
                logger.info("%s does not support resuming; starting over", url)
            length = response.headers.get("Content-Length")
            total = (int(length) + (offset if resumed else 0)) if length else None
            with (
                open(part, "ab" if resumed else "wb") as out,
                tqdm(
                    total=total,
                    initial=offset if resumed else 0,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                ) as bar,
            ):
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
    problem = _check(part, sha256, md5)
    if problem is not None:
        part.unlink()
        raise ValueError(f"{url}: the downloaded file failed its check: {problem}; deleted")
    shutil.move(part, dest)
    return dest
