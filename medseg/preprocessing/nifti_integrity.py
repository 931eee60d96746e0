"""Detect truncated NIfTI files and NaN/inf voxels, which SimpleITK reads without an error.

SimpleITK fills the missing voxels with zeros, so a half-downloaded scan would look valid; it
also reads NaN and infinite voxels as 0, so those are counted in the file's own bytes.

The voxel data of a NIfTI file ends at `vox_offset` + the image's byte size. An uncompressed
file must be at least that long. A gzip file stores its uncompressed length (mod 2**32) in its
last four bytes, so an intact file is confirmed without decompressing it; when that number does
not match (a truncated file, or a rare multi-member gzip), the stream is decompressed and counted.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

# sizeof_hdr, and where vox_offset lies and how it is stored, for NIfTI-1 and NIfTI-2 headers.
_HEADERS = {348: (108, "f"), 540: (168, "q")}
# Where the datatype code lies, and the float codes (float32, float64, complex64, complex128).
_DATATYPE_AT = {348: 70, 540: 12}
_FLOAT_TYPES = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}
_CHUNK = 1 << 24


def _header_fields(header: bytes, path: Path) -> tuple[str, int, int]:
    """(byte order, vox_offset, datatype code) of a NIfTI-1 or NIfTI-2 header."""
    for order in "<>":
        if len(header) >= 4 and (size := struct.unpack(order + "i", header[:4])[0]) in _HEADERS:
            at, kind = _HEADERS[size]
            if len(header) >= at + 8:
                datatype = struct.unpack_from(order + "h", header, _DATATYPE_AT[size])[0]
                return order, int(struct.unpack_from(order + kind, header, at)[0]), datatype
    raise ValueError(f"{path}: not a NIfTI-1 or NIfTI-2 header")


def _vox_offset(header: bytes, path: Path) -> int:
    return _header_fields(header, path)[1]


def _decompressed_length(path: Path, needed: int) -> int:
    """Bytes the gzip stream of `path` holds, counting no further than `needed`."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while total < needed and (chunk := stream.read1(_CHUNK)):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        pass  # a truncated or corrupt stream: what was counted is what the file holds
    return total


def check_nifti_complete(path: str | Path, data_bytes: int, written: bool = False) -> None:
    """Raise ValueError, naming the file, if it holds fewer than its header's voxel bytes.

    Args:
        path: A .nii or .nii.gz file that SimpleITK has read.
        data_bytes: The byte size of the image SimpleITK returned (voxels × components × bytes).
        written: The file was just written as one gzip member: its trailer must match exactly
            (a cut trailer is refused too, which a reader can forgive).
    """
    path = Path(path)
    compressed = path.name.lower().endswith(".gz")
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(max(_HEADERS) + 4)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path}: cannot read the NIfTI header ({err})") from None
    needed = _vox_offset(header, path) + data_bytes
    if compressed:
        with open(path, "rb") as raw:
            raw.seek(-4, 2)
            trailer = struct.unpack("<I", raw.read(4))[0]
            if trailer == needed % 2**32:
                return
        if written:
            raise ValueError(
                f"{path}: truncated: the gzip trailer records {trailer} bytes, the header and "
                f"voxels need {needed}"
            )
        held = _decompressed_length(path, needed)
    else:
        held = path.stat().st_size
    if held < needed:
        raise ValueError(
            f"{path}: truncated: the header describes {needed} bytes of header and voxels, the "
            f"file holds {held} (an interrupted download or copy?)"
        )


def count_nonfinite(path: str | Path) -> int:
    """How many NaN or infinite values the voxel data of a float NIfTI file holds (0 if none).

    Integer files hold none; a float file's voxel bytes are streamed and counted.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as stream:
        order, offset, datatype = _header_fields(stream.read(max(_HEADERS) + 4), path)
        if datatype not in _FLOAT_TYPES:
            return 0
        dtype = np.dtype(order + _FLOAT_TYPES[datatype])
        stream.seek(offset)
        count, rest = 0, b""
        while chunk := stream.read(_CHUNK):
            chunk = rest + chunk
            usable = len(chunk) - len(chunk) % dtype.itemsize
            values = np.frombuffer(chunk[:usable], dtype=dtype)
            count += int(values.size - np.count_nonzero(np.isfinite(values)))
            rest = chunk[usable:]
    return count
