"""Find the cases to predict in a file, a folder or a list file (torch-free).

Rules, for a model with C input channels:

- A volume file (.nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr) named `<case>_XXXX<ext>` (four digits)
  is channel XXXX of `<case>` (nnU-Net naming); its siblings `<case>_0000 .. <case>_{C-1}` with
  the same extension are its other channels. Any other volume file is a whole case named after
  the file (it may hold all channels itself, e.g. a 4D NIfTI).
- A folder given as input is scanned (not recursively) for volume files, hidden ones (`.*`: a
  killed run's temporary files, macOS junk) left out; each sub-folder that
  holds a DICOM series is one case named after the sub-folder. A folder holding a DICOM series
  and no volume files is itself one case.
- A `.txt` file lists one input per line (a volume file, nnU-Net channel file or DICOM folder),
  relative to the list file's folder unless absolute; blank lines and `#` comments are skipped.

Problems found here (a missing channel, a case named twice, a missing path) do not stop the
search: they come back as cases with an `error`, so a batch run reports them and goes on.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Iterable
from pathlib import Path

import SimpleITK as sitk  # noqa: N813 (the library's own idiom)

from medseg.preprocessing.io import READ_EXTENSIONS

CHANNEL_PATTERN = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclasses.dataclass(frozen=True)
class InputCase:
    """One case to predict: its id, its files (one per channel, or one holding all), or why not.

    Attributes:
        case_id: Output name (`<save_dir>/<case_id>.nii.gz`).
        paths: The files or DICOM folders to read, in channel order.
        error: Why the case cannot be read as found, or None.
    """

    case_id: str
    paths: tuple[Path, ...]
    error: str | None = None


def volume_extension(path: Path) -> str | None:
    """The readable extension of `path` (".nii.gz" counts as one), or None."""
    name = path.name.lower()
    for ext in sorted(READ_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return None


def is_dicom_folder(path: Path) -> bool:
    """True when `path` is a folder in which GDCM finds at least one DICOM series."""
    try:
        return path.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))
    except RuntimeError:
        return False


def _split_name(path: Path) -> tuple[str, int | None]:
    """(case id, channel) for nnU-Net channel files, (stem, None) for others."""
    ext = volume_extension(path) or ""
    stem = path.name[: len(path.name) - len(ext)]
    match = CHANNEL_PATTERN.match(stem)
    if match is None:
        return stem, None
    return match["case"], int(match["channel"])


def _channel_case(case_id: str, files: dict[int, Path], num_channels: int) -> InputCase:
    """A case from its nnU-Net channel files, or one with an error naming what is missing."""
    expected = list(range(num_channels))
    ordered = tuple(files[c] for c in sorted(files))
    if sorted(files) != expected:
        folder = ordered[0].parent
        wanted = ", ".join(f"_{c:04d}" for c in expected)
        found = ", ".join(f"_{c:04d}" for c in sorted(files))
        return InputCase(
            case_id,
            ordered,
            f"case '{case_id}' in {folder}: the model takes {num_channels} channel(s) "
            f"({wanted}), found {found}",
        )
    return InputCase(case_id, ordered)


def _siblings(path: Path, case_id: str) -> dict[int, Path]:
    """The channel files of `case_id` beside `path` (same extension)."""
    ext = volume_extension(path) or ""
    files = {}
    for other in path.parent.glob(f"{glob.escape(case_id)}_[0-9][0-9][0-9][0-9]{ext}"):
        other_id, channel = _split_name(other)
        if other_id == case_id and channel is not None and volume_extension(other) == ext:
            files[channel] = other
    return files


def _from_file(path: Path, num_channels: int) -> InputCase:
    case_id, channel = _split_name(path)
    if channel is None:
        return InputCase(case_id, (path,))
    return _channel_case(case_id, _siblings(path, case_id), num_channels)


def _from_folder(folder: Path, num_channels: int) -> list[InputCase]:
    # Hidden entries are never cases: macOS junk, or a killed run's temporary files.
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    volumes = [p for p in entries if p.is_file() and volume_extension(p)]
    series = [p for p in entries if is_dicom_folder(p)]
    if not volumes and not series and is_dicom_folder(folder):
        return [InputCase(folder.name, (folder,))]
    cases = [InputCase(p.name, (p,)) for p in series]
    grouped: dict[str, dict[int, Path]] = {}
    for path in volumes:
        case_id, channel = _split_name(path)
        if channel is None:
            cases.append(InputCase(case_id, (path,)))
        else:
            grouped.setdefault(case_id, {})[channel] = path
    cases += [_channel_case(c, files, num_channels) for c, files in grouped.items()]
    if not cases:
        readable = ", ".join(READ_EXTENSIONS)
        cases.append(
            InputCase(
                folder.name,
                (folder,),
                f"{folder}: no volume files ({readable}) and no DICOM series found",
            )
        )
    return cases


def _from_entry(path: Path, num_channels: int) -> list[InputCase]:
    if path.is_dir():
        return [InputCase(path.name, (path,))]
    if path.is_file():
        return [_from_file(path, num_channels)]
    return [InputCase(_split_name(path)[0], (path,), f"{path}: no such file or folder")]


def _from_list(list_file: Path, num_channels: int) -> list[InputCase]:
    cases = []
    for line in list_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entry = Path(line) if Path(line).is_absolute() else list_file.parent / line
            cases += _from_entry(entry, num_channels)
    return cases


def _dedupe(cases: Iterable[InputCase]) -> list[InputCase]:
    """One entry per case id (a case listed twice through its channels counts once), sorted.

    Two different inputs with one id would write one output file: both are reported.
    """
    by_id: dict[str, list[InputCase]] = {}
    for case in cases:
        if case not in by_id.setdefault(case.case_id, []):
            by_id[case.case_id].append(case)
    result = []
    for case_id, found in sorted(by_id.items()):
        if len(found) == 1:
            result.append(found[0])
            continue
        inputs = "; ".join(", ".join(map(str, c.paths)) for c in found)
        message = f"case id '{case_id}' is given by several inputs ({inputs}); rename one"
        result.append(InputCase(case_id, found[0].paths, message))
    return result


def find_cases(image_path: str | os.PathLike, num_channels: int) -> list[InputCase]:
    """The cases behind `--image_path` (a file, a folder or a .txt list), sorted by id.

    Raises:
        FileNotFoundError: when `image_path` does not exist.
    """
    path = Path(image_path)
    if path.is_file() and path.suffix.lower() == ".txt":
        return _dedupe(_from_list(path, num_channels))
    if path.is_dir():
        return _dedupe(_from_folder(path, num_channels))
    if path.is_file():
        return _dedupe([_from_file(path, num_channels)])
    raise FileNotFoundError(f"--image_path {path} does not exist")


def save_dir_problem(
    save_dir: str | os.PathLike, image_path: str | os.PathLike, cases: Iterable[InputCase]
) -> str | None:
    """Why outputs may not go to `save_dir`, or None when they may.

    Outputs never go beside the inputs: `save_dir` may be neither a folder that holds an input
    file, nor a folder given as input (the scanned folder, a DICOM series) or one inside it.
    """
    target = Path(save_dir).resolve()
    scanned = [Path(image_path).resolve()] if Path(image_path).is_dir() else []
    for case in cases:
        for path in case.paths:
            resolved = path.resolve()
            if resolved.is_dir():
                scanned.append(resolved)
            elif target == resolved.parent:
                return f"--save_dir {save_dir} holds the input {path}; choose another folder"
    for folder in scanned:
        if target == folder or folder in target.parents:
            return (
                f"--save_dir {save_dir} lies in the input folder {folder}; outputs are never "
                "written among the inputs: choose a folder outside it"
            )
    return None
