"""The nnU-Net v2 raw layout: `dataset.json`, `imagesTr/<case>_XXXX<ending>`, `labelsTr/`.

The only reader and writer of an nnU-Net raw `dataset.json` (`channel_names`, `labels` as
`{name: id}`, `numTraining`, `file_ending`, optional `name`). An "ignore" label (nnU-Net's partial
annotations; the highest id) becomes `RawDataset.ignore_labels` instead of a class.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg.preprocessing.archive import is_junk
from medseg.preprocessing.cases import CaseFiles, RawDataset, check_labels
from medseg.utils.atomic import write_text_atomic

logger = logging.getLogger(__name__)

DEFAULT_ENDING = ".nii.gz"


def _read_meta(raw_dir: Path) -> tuple[Path, dict[str, Any]]:
    meta_path = raw_dir / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"raw dataset description not found: {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_path} is not valid JSON: {err}") from None
    for key in ("channel_names", "labels"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing key '{key}' (nnU-Net v2 format expected)")
    if any(not isinstance(v, int) for v in meta["labels"].values()):
        raise ValueError(
            f"{meta_path}: 'labels' must map names to integer ids (region labels are not "
            f"supported), got {meta['labels']}"
        )
    return meta_path, meta


def _channel_files(raw_dir: Path, ending: str) -> tuple[dict[str, dict[int, Path]], dict[str, str]]:
    """Images by case and channel number, and the files whose names break the rule."""
    images: dict[str, dict[int, Path]] = {}
    problems: dict[str, str] = {}
    for path in sorted((raw_dir / "imagesTr").glob(f"*{ending}")):
        if is_junk(path.name):
            continue
        stem = path.name[: -len(ending)]
        case, _, channel = stem.rpartition("_")
        if not case or len(channel) != 4 or not channel.isdigit():
            problems[stem] = f"{path}: image names must be <case>_<XXXX>{ending}"
            continue
        images.setdefault(case, {})[int(channel)] = path
    return images, problems


def read_nnunet_raw(raw_dir: str | os.PathLike, strict: bool = True) -> RawDataset:
    """Find the cases of an nnU-Net v2 raw folder, pairing images and labels by case id.

    A case with a missing label, a label without images or missing channels raises a ValueError
    naming it when `strict`; otherwise it is kept out of `cases` and listed in `problems`. An
    unusable `dataset.json` always raises.
    """
    raw_dir = Path(raw_dir)
    meta_path, meta = _read_meta(raw_dir)
    names = {v: k for k, v in meta["labels"].items()}
    ignore = [i for i, n in names.items() if n == "ignore"]
    if ignore and ignore[0] != max(names):
        raise ValueError(f"{meta_path}: the 'ignore' label must have the highest id, {names}")
    labels = check_labels({i: n for i, n in names.items() if n != "ignore"}, str(meta_path))
    num_channels = len(meta["channel_names"])
    modalities = [meta["channel_names"][str(i)] for i in range(num_channels)]
    ending = meta.get("file_ending", DEFAULT_ENDING)

    images, problems = _channel_files(raw_dir, ending)
    label_files = {
        p.name[: -len(ending)]: p
        for p in (raw_dir / "labelsTr").glob(f"*{ending}")
        if not is_junk(p.name)
    }
    if not images and not label_files:
        raise ValueError(f"no cases found in {raw_dir / 'imagesTr'} with file ending {ending!r}")
    cases = {}
    for case in sorted(set(images) | set(label_files)):
        if case not in images or case not in label_files:
            kind = "a label but no image" if case in label_files else "images but no label"
            problems[case] = f"case '{case}' in {raw_dir} has {kind} (file ending {ending!r})"
        elif sorted(images[case]) != list(range(num_channels)):
            problems[case] = (
                f"case '{case}': expected channels {list(range(num_channels))} "
                f"({modalities}), found {sorted(images[case])}"
            )
        else:
            channels = images[case]
            cases[case] = CaseFiles(
                tuple(channels[i] for i in range(num_channels)), label_files[case]
            )
    if strict and problems:
        raise ValueError(problems[min(problems)])
    if meta.get("numTraining", len(cases)) != len(cases) + len(problems):
        logger.warning(
            "%s says numTraining=%s, found %d", meta_path, meta["numTraining"], len(cases)
        )
    name = meta.get("name", raw_dir.name)
    return RawDataset(name, modalities, labels, cases, problems, tuple(ignore))


def write_nnunet_description(
    raw_dir: str | os.PathLike,
    name: str,
    modalities: Sequence[str],
    labels: Mapping[str, int],
    num_training: int,
    description: str = "",
) -> Path:
    """Write an nnU-Net v2 raw `dataset.json` (atomically); returns its path."""
    meta = {
        "name": name,
        "description": description,
        "channel_names": {str(i): m for i, m in enumerate(modalities)},
        "labels": dict(labels),
        "numTraining": num_training,
        "file_ending": DEFAULT_ENDING,
    }
    path = Path(raw_dir) / "dataset.json"
    write_text_atomic(path, json.dumps(meta, indent=2) + "\n")
    return path
