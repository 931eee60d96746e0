"""Turn a raw labelled dataset into the preprocessed medseg layout.

Input (`prepare_dataset`): an nnU-Net v2 raw folder, `imagesTr/<case>_<XXXX><ending>` (one file
per channel), `labelsTr/<case><ending>` and `dataset.json` with `channel_names`, `labels`
(name → id, ids 0..K-1) and `file_ending`. Other layouts can call `prepare_cases` directly.

Output, in `output_dir`:

- `images/<case>.npy` float32 (C, Z, Y, X) and `labels/<case>.npy` uint8 (int16 above 255 ids);
- `train_list.txt`, `val_list.txt` (and `test_list.txt` when a test fraction is asked) with lines
  `images/<case>.npy labels/<case>.npy`;
- `dataset.json`: `name`, `modalities` (one per channel), `labels` ({"id": name}),
  `num_classes`, `recipe`, `seed`, `val_fraction`, `test_fraction`, `splits`
  ({"train": [...], "val": [...], "test": [...]}) and `cases`, per case id: `image`, `label`
  (paths relative to `output_dir`), `source_images`, `source_label` (relative to `output_dir`)
  and `record` (`PreprocessRecord.to_dict()`).

Every file is written atomically; `dataset.json` is written last, so its presence means done.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from medseg.preprocessing.io import GEOMETRY_TOLERANCE, Geometry, read_case, read_volume
from medseg.preprocessing.pipeline import preprocess_case
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.splits import split_cases
from medseg.utils.atomic import atomic_path, write_text_atomic

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CaseFiles:
    """The raw files of one case: one image per channel and the label map."""

    images: tuple[Path, ...]
    label: Path


@dataclasses.dataclass(frozen=True)
class RawDataset:
    """A raw dataset found on disk: its metadata and its cases by id."""

    name: str
    modalities: list[str]
    labels: dict[int, str]
    cases: dict[str, CaseFiles]


def _check_labels(labels: Mapping[int, str], source: str) -> dict[int, str]:
    ids = sorted(labels)
    if ids != list(range(len(ids))) or len(ids) < 2:
        raise ValueError(
            f"{source}: label ids must be consecutive from 0 (background) with at least one "
            f"foreground class, got {ids}"
        )
    return {i: str(labels[i]) for i in ids}


def read_nnunet_raw(raw_dir: str | os.PathLike) -> RawDataset:
    """Find the cases of an nnU-Net v2 raw folder, pairing images and labels by case id."""
    raw_dir = Path(raw_dir)
    meta_path = raw_dir / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"raw dataset description not found: {meta_path}")
    meta = json.loads(meta_path.read_text())
    for key in ("channel_names", "labels"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing key '{key}' (nnU-Net v2 format expected)")
    if any(not isinstance(v, int) for v in meta["labels"].values()):
        raise ValueError(
            f"{meta_path}: 'labels' must map names to integer ids (region labels are not "
            f"supported), got {meta['labels']}"
        )
    labels = _check_labels({v: k for k, v in meta["labels"].items()}, str(meta_path))
    num_channels = len(meta["channel_names"])
    modalities = [meta["channel_names"][str(i)] for i in range(num_channels)]
    ending = meta.get("file_ending", ".nii.gz")

    images: dict[str, dict[int, Path]] = {}
    for path in sorted((raw_dir / "imagesTr").glob(f"*{ending}")):
        stem = path.name[: -len(ending)]
        case, _, channel = stem.rpartition("_")
        if not case or len(channel) != 4 or not channel.isdigit():
            raise ValueError(f"{path}: image names must be <case>_<XXXX>{ending}")
        images.setdefault(case, {})[int(channel)] = path
    label_files = {p.name[: -len(ending)]: p for p in (raw_dir / "labelsTr").glob(f"*{ending}")}

    for case in sorted(set(images) ^ set(label_files)):
        kind = "a label but no image" if case in label_files else "images but no label"
        raise ValueError(f"case '{case}' in {raw_dir} has {kind} (file ending {ending!r})")
    if not images:
        raise ValueError(f"no cases found in {raw_dir / 'imagesTr'} with file ending {ending!r}")
    cases = {}
    for case, channels in sorted(images.items()):
        if sorted(channels) != list(range(num_channels)):
            raise ValueError(
                f"case '{case}': expected channels {list(range(num_channels))} "
                f"({modalities}), found {sorted(channels)}"
            )
        cases[case] = CaseFiles(tuple(channels[i] for i in range(num_channels)), label_files[case])
    if meta.get("numTraining", len(cases)) != len(cases):
        logger.warning(
            "%s says numTraining=%s, found %d", meta_path, meta["numTraining"], len(cases)
        )
    return RawDataset(meta.get("name", raw_dir.name), modalities, labels, cases)


def _read_label(path: Path, valid_ids: Sequence[int]) -> tuple[np.ndarray, Geometry]:
    label, geometry = read_volume(path)
    if label.dtype.kind == "f":
        rounded = np.rint(label)
        if not np.array_equal(rounded, label):
            raise ValueError(f"{path}: label map holds non-integer values")
        label = rounded.astype(np.int32)
    unexpected = sorted(set(np.unique(label).tolist()) - set(valid_ids))
    if unexpected:
        raise ValueError(f"{path}: label ids {unexpected} are not declared (declared: {valid_ids})")
    return label, geometry


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def _prepare_one(
    case: str, files: CaseFiles, output_dir: Path, recipe: Recipe, valid_ids: list[int], tol: float
) -> dict[str, Any]:
    image, geometry = read_case(files.images, tol)
    label, label_geometry = _read_label(files.label, valid_ids)
    problem = geometry.mismatch(label_geometry, tol)
    if problem is not None:
        raise ValueError(f"case '{case}': {files.images[0]} and {files.label} disagree: {problem}")
    image, label, record = preprocess_case(image, geometry, recipe, label, case=case)
    entry = {"image": f"images/{case}.npy", "label": f"labels/{case}.npy"}
    _save_npy(image, output_dir / entry["image"])
    _save_npy(label, output_dir / entry["label"])
    return {
        **entry,
        "source_images": [os.path.relpath(p, output_dir) for p in files.images],
        "source_label": os.path.relpath(files.label, output_dir),
        "record": record.to_dict(),
    }


def prepare_cases(
    cases: Mapping[str, CaseFiles],
    output_dir: str | os.PathLike,
    recipe: Recipe,
    labels: Mapping[int, str],
    modalities: Sequence[str],
    name: str,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    num_workers: int = 0,
    tol: float = GEOMETRY_TOLERANCE,
) -> dict[str, Any]:
    """Preprocess `cases` into `output_dir` and write the lists and `dataset.json`.

    Args:
        cases: Raw files by case id.
        output_dir: Destination folder (created).
        recipe: The preprocessing recipe.
        labels: Class names by id, ids consecutive from 0 (background).
        modalities: One name per channel.
        name: Dataset name.
        val_fraction: Share of cases in the validation split.
        test_fraction: Share of cases in the test split (a `test_list.txt` only when > 0).
        seed: Split seed.
        num_workers: Worker processes; 0 runs in this process.
        tol: Allowed geometry difference between a case's channels and its label.

    Returns:
        The content written to `dataset.json`.
    """
    output_dir = Path(output_dir).absolute()
    labels = _check_labels(dict(labels), name)
    splits = split_cases(cases, val_fraction, test_fraction, seed)
    order = sorted(cases)
    jobs = [(c, cases[c], output_dir, recipe, list(labels), tol) for c in order]
    progress = {"total": len(jobs), "desc": f"preparing {name}", "unit": "case"}
    if num_workers > 0:
        with ProcessPoolExecutor(num_workers) as pool:
            entries = list(tqdm(pool.map(_prepare_one, *zip(*jobs, strict=True)), **progress))
    else:
        entries = [_prepare_one(*job) for job in tqdm(jobs, **progress)]

    lists = {"train": splits["train"], "val": splits["val"]}
    if test_fraction > 0:
        lists["test"] = splits["test"]
    for split, ids in lists.items():
        lines = "".join(f"images/{c}.npy labels/{c}.npy\n" for c in ids)
        write_text_atomic(output_dir / f"{split}_list.txt", lines)
    description = {
        "name": name,
        "modalities": list(modalities),
        "labels": {str(i): n for i, n in labels.items()},
        "num_classes": len(labels),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "splits": splits,
        "cases": dict(zip(order, entries, strict=True)),
    }
    write_text_atomic(output_dir / "dataset.json", json.dumps(description, indent=1) + "\n")
    logger.info(
        "prepared %d cases of %s into %s (train %d, val %d, test %d)",
        len(order),
        name,
        output_dir,
        len(splits["train"]),
        len(splits["val"]),
        len(splits["test"]),
    )
    return description


def prepare_dataset(
    raw_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    recipe: Recipe,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Preprocess an nnU-Net v2 raw folder (see the module docstring); returns `dataset.json`."""
    raw = read_nnunet_raw(raw_dir)
    return prepare_cases(
        raw.cases,
        output_dir,
        recipe,
        raw.labels,
        raw.modalities,
        raw.name,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        num_workers=num_workers,
    )
