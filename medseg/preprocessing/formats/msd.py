"""The Medical Segmentation Decathlon layout: `TaskNN_Name/dataset.json`, `imagesTr/`, `labelsTr/`.

The only reader of an MSD `dataset.json` (`modality` as `{"0": "CT"}`, `labels` as
`{"0": "background", ...}`, `training`: a list of `{"image", "label"}` paths relative to the task
folder). 4D images (BrainTumour, Prostate) keep one file per case; the macOS `._*` files inside
the tars are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from medseg.preprocessing.archive import is_junk
from medseg.preprocessing.cases import CaseFiles, RawDataset, check_labels


def read_msd_task(raw_dir: str | os.PathLike, folder: str) -> RawDataset:
    """The training cases listed in the task's dataset.json (4D images keep one file).

    `raw_dir` is the task folder or the folder holding it (`folder`, e.g. Task09_Spleen).
    """
    raw_dir = Path(raw_dir)
    root = raw_dir if (raw_dir / "dataset.json").is_file() else raw_dir / folder
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: is --raw_dir the {folder} folder?")
    meta = json.loads(meta_path.read_text())
    for key in ("modality", "labels", "training"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing key '{key}' (MSD dataset.json expected)")
    modalities = [meta["modality"][str(i)] for i in range(len(meta["modality"]))]
    labels = check_labels({int(k): v for k, v in meta["labels"].items()}, str(meta_path))
    cases, problems = {}, {}
    for item in meta["training"]:
        image, label = root / item["image"], root / item["label"]
        if is_junk(image.name):
            continue
        case = image.name.removesuffix(".nii.gz")
        missing = [str(p) for p in (image, label) if not p.is_file()]
        if missing:
            problems[case] = f"listed in {meta_path} but missing: {missing}"
        else:
            cases[case] = CaseFiles((image,), label)
    return RawDataset(folder, modalities, labels, cases, problems)
