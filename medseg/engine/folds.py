"""k-fold cross-validation: which cases a fold trains and validates on, where its run lives.

Torch-free. Preparation with `--folds K` records the folds in dataset.json (`folds`) and writes
`folds/fold_<k>_{train,val}_list.txt`; `train.py --fold k` trains on the fold's train list,
validates on its val list and saves into `<save_dir>/fold_<k>/`. A folder holding such
`fold_<k>/best_model/` folders (a `medseg-crossval` save_dir) stands for all its fold models
wherever a model path is taken (val.py, export.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from medseg.preprocessing.description import DatasetDescription, load_description
from medseg.preprocessing.splits import fold_list_name

FOLD_PATTERN = re.compile(r"fold_(\d+)")
BEST_MODEL = "best_model"


def fold_dir(save_dir: str | os.PathLike, fold: int) -> Path:
    """The run folder of fold `fold` under `save_dir`."""
    return Path(save_dir) / f"fold_{fold}"


def training_description(cfg: Any) -> DatasetDescription:
    """The dataset.json of the config's training dataset (empty when the file is absent)."""
    node = cfg.train_dataset
    root = node.get("dataset_root")
    if not root:
        raise ValueError(f"train_dataset.dataset_root is not set in {cfg.path}")
    return load_description(node.get("dataset_json_path") or root, missing_ok=True, root=root)


def fold_count(cfg: Any) -> int:
    """How many folds the config's training dataset was prepared with (0: none)."""
    return len(training_description(cfg).folds)


def fold_opts(cfg: Any, fold: int) -> list[str]:
    """`--opts` entries that point the config's datasets at fold `fold`'s train and val lists.

    Raises:
        ValueError: naming dataset.json and `folds` when the dataset has no such fold or its
            list files are missing.
    """
    description = training_description(cfg)
    count = len(description.folds)
    if count == 0:
        raise ValueError(
            f"{description.path} records no 'folds': prepare the dataset with --folds K "
            "(e.g. tools/prepare_folder.py ... --folds 5) to train or evaluate a fold"
        )
    if not 0 <= fold < count:
        raise ValueError(
            f"fold {fold} does not exist: {description.path} records {count} 'folds' "
            f"(0..{count - 1})"
        )
    opts = []
    for key, split in (("train_dataset", "train"), ("val_dataset", "val")):
        if key == "val_dataset" and cfg.val_dataset is None:
            continue
        name = fold_list_name(fold, split)
        path = description.resolve(name)
        if not path.is_file():
            raise ValueError(
                f"{path} is missing although {description.path} records {count} 'folds'; "
                "prepare the dataset again with --folds K"
            )
        opts.append(f"{key}.file_list={name}")
    val = cfg.val_dataset
    train_root = cfg.train_dataset["dataset_root"]
    if val is not None and Path(val.get("dataset_root", "")) != Path(train_root):
        raise ValueError(
            f"--fold needs train_dataset and val_dataset on one dataset_root in {cfg.path}: "
            f"got {train_root} and {val.get('dataset_root')}"
        )
    return opts


def fold_models(folder: str | os.PathLike) -> list[Path]:
    """`fold_<k>/best_model` folders under `folder`, by fold number ([] when there are none)."""
    found = []
    for child in Path(folder).iterdir():
        match = FOLD_PATTERN.fullmatch(child.name)
        if match and (child / BEST_MODEL).is_dir():
            found.append((int(match.group(1)), child / BEST_MODEL))
    return [path for _, path in sorted(found)]


def expand_model_paths(paths: list[str]) -> list[str]:
    """Model paths with every cross-validation folder replaced by its fold models."""
    expanded = []
    for path in paths:
        folds = fold_models(path) if Path(path).is_dir() else []
        if folds:
            expanded.extend(str(p) for p in folds)
        else:
            expanded.append(path)
    return expanded
