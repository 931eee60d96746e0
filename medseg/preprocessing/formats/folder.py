"""A user's own scans and label maps, paired by case id (no dataset description needed).

Scans are volume files (NIfTI, MHA/MHD, NRRD) or DICOM series folders. Label maps lie in their
own folder (same case names, optionally with a suffix) or beside the scans with a suffix.
Several modalities: one file per modality named `<case>_0000`, `<case>_0001`, ... (nnU-Net
naming), or one 4D file per case.
"""

from __future__ import annotations

import re
from pathlib import Path

from medseg.preprocessing.cases import CaseFiles, RawDataset
from medseg.preprocessing.io import READ_EXTENSIONS

CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _stem(path: Path) -> str | None:
    """The case name of a volume file or DICOM series folder; None for others and junk."""
    if path.name.startswith("."):
        return None
    if path.is_dir():
        return path.name
    for ext in sorted(READ_EXTENSIONS, key=len, reverse=True):
        if path.name.lower().endswith(ext):
            return path.name[: -len(ext)]
    return None


def _volumes(folder: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(folder.iterdir()):
        stem = _stem(path)
        if stem is not None:
            if stem in found:
                raise ValueError(f"{folder}: two files for '{stem}': {found[stem]} and {path}")
            found[stem] = path
    return found


def read_folder(
    images: Path,
    labels: Path | None,
    label_suffix: str | None,
    modalities: list[str],
    class_names: dict[int, str],
    name: str,
) -> RawDataset:
    """Pair scans and label maps by case id (see the module docstring)."""
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images} is not a folder")
    scans = _volumes(images)
    if labels is not None:
        label_files = {s.removesuffix(label_suffix or ""): p for s, p in _volumes(labels).items()}
    elif label_suffix:
        label_files = {
            s[: -len(label_suffix)]: p for s, p in scans.items() if s.endswith(label_suffix)
        }
        scans = {s: p for s, p in scans.items() if not s.endswith(label_suffix)}
    else:
        raise ValueError("give --labels DIR, or --label_suffix for labels beside the scans")
    channels: dict[str, dict[int, Path]] = {}
    for stem, path in scans.items():
        # <case>_0000 is a channel of <case> (nnU-Net naming), unless a label is named after
        # the whole stem: then it is a single-modality case whose name ends in digits.
        match = CHANNEL.match(stem)
        if match and stem not in label_files:
            case, channel = match["case"], int(match["channel"])
        else:
            case, channel = stem, None
        channels.setdefault(case, {})[channel] = path
    cases, problems = {}, {}
    for case in sorted(set(channels) | set(label_files)):
        files = channels.get(case, {})
        if not files:
            problems[case] = f"label {label_files[case]} has no scan in {images}"
        elif case not in label_files:
            problems[case] = f"scan {next(iter(files.values()))} has no label map"
        elif None in files and len(files) == 1:
            cases[case] = CaseFiles((files[None],), label_files[case])
        elif sorted(files) == list(range(len(modalities))):
            cases[case] = CaseFiles(tuple(files[i] for i in sorted(files)), label_files[case])
        elif sorted(files) == [0] and len(modalities) > 1:  # <case>_0000 holding a 4D volume
            cases[case] = CaseFiles((files[0],), label_files[case])
        else:
            found = sorted(p.name for p in files.values())
            problems[case] = f"expected one file per modality {modalities}, found {found}"
    if not cases and not problems:
        raise ValueError(f"no scans found in {images} (readable: {', '.join(READ_EXTENSIONS)})")
    return RawDataset(name, list(modalities), class_names, cases, problems)
