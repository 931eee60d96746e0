"""Prepare a Medical Segmentation Decathlon task (all ten, incl. 4D multi-modal ones).

Where to get the data: http://medicaldecathlon.com/ (CC BY-SA 4.0). Without --raw_dir the task's
tar is downloaded from the AWS mirror that MONAI uses
(https://msd-for-monai.s3-us-west-2.amazonaws.com/<TaskNN_Name>.tar), resumably and checked
against its published MD5, and extracted safely into --download_dir (default data/downloads).

Expected layout (--raw_dir is the task folder or the folder holding it):
  TaskNN_Name/dataset.json   {"modality": {"0": "CT"}, "labels": {"0": "background", ...},
                              "training": [{"image": "./imagesTr/x.nii.gz", "label": ...}]}
  TaskNN_Name/imagesTr/*.nii.gz   3D, or 4D with one volume per modality (BrainTumour, Prostate)
  TaskNN_Name/labelsTr/*.nii.gz
The macOS `._*` files inside the tars are skipped.

Tasks: 01 BrainTumour, 02 Heart, 03 Liver, 04 Hippocampus, 05 Prostate, 06 Lung, 07 Pancreas,
08 HepaticVessel, 09 Spleen, 10 Colon. Name one by number (9), name (Spleen) or folder name
(Task09_Spleen). Configs go to configs/msd/<TaskNN_Name>/ unless --config_dir is given.

Task01 BrainTumour is trained on BraTS's regions (region-based training, as nnU-Net does):
whole tumour (edema, non-enhancing and enhancing tumour: ids 1, 2, 3), tumour core (2, 3) and
enhancing tumour (3); they are written into dataset.json and the generated configs use them.

Example:
  medseg-prepare msd 9
  python train.py --config configs/msd/Task09_Spleen/vnet_task09_spleen_<patch>_<iters>.yml
"""

from __future__ import annotations

import dataclasses

from medseg.preparation import driver
from medseg.preprocessing.cases import RawDataset
from medseg.preprocessing.formats.msd import read_msd_task
from medseg.preprocessing.regions import Regions

MIRROR = "https://msd-for-monai.s3-us-west-2.amazonaws.com"
# Task folder -> MD5 of its tar on the mirror (as published with MONAI's DecathlonDataset).
TASKS = {
    "Task01_BrainTumour": "240a19d752f0d9e9101544901065d872",
    "Task02_Heart": "06ee59366e1e5124267b774dbd654057",
    "Task03_Liver": "a90ec6c4aa7f6a3d087205e23d4e6397",
    "Task04_Hippocampus": "9d24dba78a72977dbd1d2e110310f31b",
    "Task05_Prostate": "35138f08b1efaef89d7424d2bcc928db",
    "Task06_Lung": "8afd997733c7fc0432f71255ba4e52dc",
    "Task07_Pancreas": "4f7080cfca169fa8066d17ce6eb061e4",
    "Task08_HepaticVessel": "641d79e80ec66453921d997fbf12a29c",
    "Task09_Spleen": "410d4a301da4e5b2f6f86ec3ddba524e",
    "Task10_Colon": "bad7a188931dc2f6acf72b08eb6202d0",
}


# Task folder -> its regions (region-based training), largest first.
REGIONS = {
    "Task01_BrainTumour": [
        {"name": "whole_tumour", "labels": [1, 2, 3]},
        {"name": "tumour_core", "labels": [2, 3]},
        {"name": "enhancing_tumour", "labels": [3]},
    ],
}


def read_task(raw_dir: str, folder: str) -> RawDataset:
    """The task's raw cases, with its regions when it has some (`REGIONS`)."""
    raw = read_msd_task(raw_dir, folder)
    if folder not in REGIONS:
        return raw
    regions = Regions.from_list(REGIONS[folder], raw.labels, f"the regions of {folder}")
    return dataclasses.replace(raw, regions=regions)


def task_folder(task: str) -> str:
    """The task folder (e.g. Task09_Spleen) from a number (9, 09), a name or the folder name."""
    key = task.strip().lower().removeprefix("task")
    for folder in TASKS:
        number, _, name = folder.removeprefix("Task").partition("_")
        if key in (number, str(int(number)), name.lower(), f"{number}_{name.lower()}"):
            return folder
    raise ValueError(f"unknown MSD task {task!r}; choose one of {', '.join(TASKS)}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = driver.make_parser(__doc__)
    parser.add_argument("task", help="task number, name or folder, e.g. 9, Spleen, Task09_Spleen")
    args = parser.parse_args(argv)
    try:
        folder = task_folder(args.task)
    except ValueError as err:
        parser.error(str(err))
    source = driver.Source(f"{MIRROR}/{folder}.tar", md5=TASKS[folder])
    return driver.run(
        args,
        folder,
        lambda raw_dir: read_task(raw_dir, folder),
        sources=[source],
        config_dir=driver.REPO / "configs" / "msd" / folder,
    )
