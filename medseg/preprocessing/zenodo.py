"""Download addresses and published MD5 checksums of the files of a Zenodo record.

Zenodo lists every file of a record with its MD5 in the record's public JSON
(`https://zenodo.org/api/records/<id>`), so a dataset script can verify what it downloads
without hard-coding checksums. The lookup happens only when something is downloaded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence

ZENODO = "https://zenodo.org"


def record_files(
    record: str, names: Sequence[str], timeout: float = 60.0
) -> dict[str, tuple[str, str | None]]:
    """`{name: (download URL, MD5 or None)}` for the named files of Zenodo record `record`.

    Raises:
        OSError: when the record cannot be read (network, HTTP error, not JSON).
        ValueError: when the record does not hold one of `names` (the error lists what it holds).
    """
    api = f"{ZENODO}/api/records/{record}"
    try:
        with urllib.request.urlopen(api, timeout=timeout) as response:
            meta = json.load(response)
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as err:
        raise OSError(f"cannot read the Zenodo record {api}: {err}") from err
    files = meta.get("files") or []
    if isinstance(files, dict):  # newer API: {"entries": {...}} or {"entries": [...]}
        files = files.get("entries") or []
        files = list(files.values()) if isinstance(files, dict) else files
    by_name = {f.get("key") or f.get("filename"): f for f in files if isinstance(f, dict)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(
            f"Zenodo record {record} has no file(s) {missing}; it holds {sorted(by_name)}"
        )
    result = {}
    for name in names:
        algorithm, _, digest = str(by_name[name].get("checksum") or "").partition(":")
        md5 = digest.lower() if algorithm.lower() == "md5" and digest else None
        result[name] = (f"{ZENODO}/records/{record}/files/{name}", md5)
    return result
