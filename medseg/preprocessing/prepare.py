"""Turn a raw labelled dataset into the preprocessed medseg layout, resumably and in parallel.

Inputs: a `RawDataset` (name, modalities, labels, `CaseFiles` by case id), found by
`read_nnunet_raw` for an nnU-Net v2 raw folder or by a `tools/prepare_*.py` script for other
layouts. `prepare_raw` plans "auto" options from a dataset fingerprint and calls `prepare_cases`.

Output, in `output_dir`:

- `images/<case>.npy` float32 (C, Z, Y, X) and `labels/<case>.npy` uint8 (int16 above 255 ids);
- `records/<case>.json`: the case's dataset.json entry and the hash of what made it (recipe,
  label rules, declared label ids, source file names, sizes and modification times). A case
  is finished, and skipped by a rerun, when this file exists with the same hash and both
  arrays exist (records of earlier versions, keyed without the times, count while they are
  newer than every source file);
- `train_list.txt`, `val_list.txt` (and `test_list.txt` when a test fraction is asked) with lines
  `images/<case>.npy labels/<case>.npy` (see `medseg.preprocessing.file_list`);
- with `folds=K`: `folds/fold_<k>_train_list.txt` and `folds/fold_<k>_val_list.txt` for
  k = 0..K-1, the same line format, over the cases outside the test split; the K validation
  lists are disjoint and cover those cases. Splits and folds are drawn over every case found,
  failed ones included, and the failed ones are then left out: fixing a bad case later puts it
  back where it belongs without moving any other case;
- `fingerprint.json` when something was planned (reused by a rerun over the same cases);
- `dataset.json`: `name`, `modalities` (one per channel), `labels` ({"id": name}),
  `num_classes`, `recipe`, `label_rules`, `seed`, `val_fraction`, `test_fraction`, `splits`
  ({"train", "val", "test"}), `folds`, `failed_cases` ({case: why}), `fingerprint` and `plan`
  (when planned) and `cases`, per case id: `image`, `label` (relative to `output_dir`),
  `source_images`, `source_label` (relative to `output_dir`), `record`
  (`PreprocessRecord.to_dict()`, which holds the original geometry) and `hash`.

Every file is written atomically; `dataset.json` is removed when a run starts and written last,
so its presence means the run finished. A bad case (unreadable, image and label on different
grids, undeclared label ids) is logged, skipped and listed in `failed_cases`; when any failed,
`PreparationError` is raised after everything else was written, unless `allow_failures`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.preprocessing.backend import select_backend
from medseg.preprocessing.cases import (
    IGNORE_INDEX,
    CaseFiles,
    LabelRules,
    RawDataset,
    check_labels,
    load_case,
)
from medseg.preprocessing.file_list import case_paths, write_list
from medseg.preprocessing.io import GEOMETRY_TOLERANCE
from medseg.preprocessing.options import PrepareOptions
from medseg.preprocessing.pipeline import preprocess_case
from medseg.preprocessing.planning import case_fingerprint, summarize_fingerprints
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.splits import kfold_cases, split_cases
from medseg.utils.atomic import atomic_path, remove_stale_temporaries, write_text_atomic
from medseg.utils.parallel import run_cases
from medseg.utils.paths import output_inside_inputs

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the arrays written for the same recipe change
JUNK_PREFIX = "._"  # macOS resource forks shipped in some archives (the MSD tars)

__all__ = [
    "CaseFiles",
    "PreparationError",
    "RawDataset",
    "prepare_cases",
    "prepare_dataset",
    "prepare_raw",
    "read_nnunet_raw",
]


class PreparationError(ValueError):
    """Some cases could not be prepared; `description` is what was written to dataset.json."""

    def __init__(self, message: str, description: dict[str, Any]):
        super().__init__(message)
        self.description = description


def read_nnunet_raw(raw_dir: str | os.PathLike, strict: bool = True) -> RawDataset:
    """Find the cases of an nnU-Net v2 raw folder, pairing images and labels by case id.

    A case with a missing label, a label without images or missing channels raises a ValueError
    naming it when `strict`; otherwise it is kept out of `cases` and listed in `problems`. An
    unusable `dataset.json` always raises.
    """
    raw_dir = Path(raw_dir)
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
    names = {v: k for k, v in meta["labels"].items()}
    # nnU-Net's "ignore" label (the highest id) marks voxels that were not annotated.
    ignore = [i for i, n in names.items() if n == "ignore"]
    if ignore and ignore[0] != max(names):
        raise ValueError(f"{meta_path}: the 'ignore' label must have the highest id, {names}")
    labels = check_labels({i: n for i, n in names.items() if n != "ignore"}, str(meta_path))
    num_channels = len(meta["channel_names"])
    modalities = [meta["channel_names"][str(i)] for i in range(num_channels)]
    ending = meta.get("file_ending", ".nii.gz")

    images: dict[str, dict[int, Path]] = {}
    problems: dict[str, str] = {}
    for path in sorted((raw_dir / "imagesTr").glob(f"*{ending}")):
        if path.name.startswith(JUNK_PREFIX):
            continue
        stem = path.name[: -len(ending)]
        case, _, channel = stem.rpartition("_")
        if not case or len(channel) != 4 or not channel.isdigit():
            problems[stem] = f"{path}: image names must be <case>_<XXXX>{ending}"
            continue
        images.setdefault(case, {})[int(channel)] = path
    label_files = {
        p.name[: -len(ending)]: p
        for p in (raw_dir / "labelsTr").glob(f"*{ending}")
        if not p.name.startswith(JUNK_PREFIX)
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


def _source_stat(path: Path, with_mtime: bool) -> list[Any]:
    """Name, size and newest modification time (ns) of a source file or DICOM folder's files."""
    if not path.exists():
        return [path.name, None]
    if not with_mtime:
        return [path.name, path.stat().st_size]
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return [
        path.name,
        sum(st.st_size for st in stats),
        max((st.st_mtime_ns for st in stats), default=0),
    ]


def _case_hash(key: str, files: CaseFiles, with_mtime: bool = True) -> str:
    """The resume key of a case: what made it and its sources' names, sizes and mtimes.

    The modification time catches a label corrected in place with the same byte size.
    `with_mtime=False` gives the key of medseg versions before it (names and sizes only).
    """
    sources = [_source_stat(p, with_mtime) for p in (*files.images, files.label)]
    return hashlib.sha256(json.dumps([key, sources]).encode()).hexdigest()


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def _finished_entry(
    output_dir: Path, case: str, key: str, files: CaseFiles
) -> dict[str, Any] | None:
    """The record of a case prepared from these very sources, or None.

    A record of an earlier medseg version (keyed on names and sizes) counts when it is newer
    than every source file; it is then rewritten with the current key.
    """
    record_path = output_dir / "records" / f"{case}.json"
    try:
        entry = json.loads(record_path.read_text())
        written = record_path.stat().st_mtime_ns
    except (OSError, json.JSONDecodeError):
        return None
    if not all((output_dir / entry.get(k, "")).is_file() for k in ("image", "label")):
        return None
    case_hash = _case_hash(key, files)
    if entry.get("hash") == case_hash:
        return entry
    sources = [_source_stat(p, True) for p in (*files.images, files.label)]
    legacy = entry.get("hash") == _case_hash(key, files, with_mtime=False)
    if not legacy or any(s[1] is None or s[2] > written for s in sources):
        return None
    entry["hash"] = case_hash
    write_text_atomic(record_path, json.dumps(entry, indent=1) + "\n")
    return entry


def _prepare_one(
    case: str,
    files: CaseFiles,
    output_dir: Path,
    recipe: Recipe,
    declared: list[int],
    rules: LabelRules,
    num_channels: int,
    tol: float,
    backend: str,
    case_hash: str,
) -> dict[str, Any]:
    image, label, geometry = load_case(case, files, declared, rules, num_channels, tol)
    image, label, record = preprocess_case(
        image, geometry, recipe, label, case=case, backend=backend
    )
    image_path, label_path = case_paths(case)
    entry = {"image": image_path, "label": label_path}
    _save_npy(image, output_dir / entry["image"])
    _save_npy(label, output_dir / entry["label"])
    entry.update(
        source_images=[os.path.relpath(p, output_dir) for p in files.images],
        source_label=os.path.relpath(files.label, output_dir),
        record=record.to_dict(),
        hash=case_hash,
    )
    write_text_atomic(output_dir / "records" / f"{case}.json", json.dumps(entry, indent=1) + "\n")
    return entry


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
    *,
    folds: int = 0,
    label_rules: LabelRules | None = None,
    backend: str = "numpy",
    problems: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    allow_failures: bool = False,
) -> dict[str, Any]:
    """Preprocess `cases` into `output_dir` and write the lists and `dataset.json`.

    Args:
        cases: Raw files by case id.
        output_dir: Destination folder (created).
        recipe: The preprocessing recipe.
        labels: Class names by id (after `label_rules`), ids consecutive from 0 (background).
        modalities: One name per channel.
        name: Dataset name.
        val_fraction: Share of cases in the validation split.
        test_fraction: Share of cases in the test split (a `test_list.txt` only when > 0).
        seed: Split seed.
        num_workers: Worker processes; 0 runs in this process.
        tol: Allowed geometry difference between a case's channels and its label.
        folds: Number of cross-validation folds to write (0: none).
        label_rules: Raw label remapping and ignored ids.
        backend: Resampling backend, "numpy" or "cupy".
        problems: Cases already known to be unusable, with why (listed in `failed_cases`).
        extra: More top-level keys for dataset.json (e.g. `fingerprint`, `plan`).
        allow_failures: Return normally even when some cases failed.

    Returns:
        The content written to `dataset.json`.

    Raises:
        PreparationError: when a case failed and `allow_failures` is False (after writing).
    """
    output_dir = Path(output_dir).absolute()
    sources = {p.parent for files in cases.values() for p in (*files.images, files.label)}
    problem = output_inside_inputs(output_dir, sorted(sources), "output_dir")
    if problem is not None:
        raise ValueError(problem)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir, ("", "images", "labels", "records", "folds"))
    (output_dir / "dataset.json").unlink(missing_ok=True)
    labels = check_labels(dict(labels), name)
    rules = label_rules or LabelRules()
    key = json.dumps(
        [FORMAT_VERSION, recipe.to_dict(), rules.to_dict(), len(modalities), sorted(labels)]
    )
    failed = dict(problems or {})
    # Drawn before any work, so bad fractions or fold counts stop the run at once.
    planned = split_cases(sorted(set(cases) | set(failed)), val_fraction, test_fraction, seed)
    planned_folds = kfold_cases(planned["train"] + planned["val"], folds, seed) if folds else []
    entries: dict[str, dict[str, Any]] = {}
    jobs = []
    for case in sorted(cases):
        entry = _finished_entry(output_dir, case, key, cases[case])
        if entry is not None:
            entries[case] = entry
            continue
        args = (cases[case], output_dir, recipe, list(labels), rules, len(modalities), tol)
        jobs.append((case, (*args, backend, _case_hash(key, cases[case]))))
    if entries:
        logger.info(
            "%d of %d case(s) already prepared with this recipe; skipped", len(entries), len(cases)
        )
    # A forked worker cannot use CUDA once this process has (the backend check ran a kernel).
    start_method = "spawn" if backend == "cupy" else None
    desc = f"preparing {name}"
    for case, entry, error in run_cases(_prepare_one, jobs, num_workers, desc, start_method):
        if error is None:
            entries[case] = entry
        else:
            logger.error("case '%s' skipped: %s", case, error)
            failed[case] = error
    if not entries:
        raise PreparationError(
            f"no case of {name} could be prepared: {failed}", {"failed_cases": failed}
        )

    order = sorted(entries)

    def prepared(lists: dict[str, list[str]]) -> dict[str, list[str]]:
        return {split: [c for c in ids if c in entries] for split, ids in lists.items()}

    splits = prepared(planned)
    fold_splits = [prepared(fold) for fold in planned_folds]
    wanted = {"train": True, "val": val_fraction > 0, "test": test_fraction > 0}
    emptied = [s for s, ids in splits.items() if wanted[s] and not ids]
    if emptied or any(not fold["val"] for fold in fold_splits):
        logger.warning(
            "the failed case(s) leave the %s split(s) empty: splitting the %d prepared case(s) "
            "instead (once the failed ones are fixed, a rerun will split differently)",
            "/".join(emptied) or "fold",
            len(order),
        )
        splits = split_cases(order, val_fraction, test_fraction, seed)
        fold_splits = kfold_cases(splits["train"] + splits["val"], folds, seed) if folds else []
    lists = {"train": splits["train"], "val": splits["val"]}
    if test_fraction > 0:
        lists["test"] = splits["test"]
    for split, ids in lists.items():
        write_list(output_dir / f"{split}_list.txt", ids)
    for k, fold in enumerate(fold_splits):
        for split in ("train", "val"):
            write_list(output_dir / "folds" / f"fold_{k}_{split}_list.txt", fold[split])
    description = {
        "name": name,
        "modalities": list(modalities),
        "labels": {str(i): n for i, n in labels.items()},
        "num_classes": len(labels),
        "recipe": recipe.to_dict(),
        "label_rules": rules.to_dict(),
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "splits": splits,
        "folds": fold_splits,
        "failed_cases": dict(sorted(failed.items())),
        **dict(extra or {}),
        "cases": {c: entries[c] for c in order},
    }
    write_text_atomic(output_dir / "dataset.json", json.dumps(description, indent=1) + "\n")
    logger.info(
        "prepared %d case(s) of %s into %s (train %d, val %d, test %d, folds %d)",
        len(order),
        name,
        output_dir,
        len(splits["train"]),
        len(splits["val"]),
        len(splits["test"]),
        len(fold_splits),
    )
    if failed:
        summary = "\n".join(f"  {c}: {why}" for c, why in sorted(failed.items()))
        logger.error("%d case(s) of %s failed and were skipped:\n%s", len(failed), name, summary)
        if not allow_failures:
            raise PreparationError(
                f"{len(failed)} case(s) of {name} failed (listed in dataset.json "
                f"'failed_cases'):\n{summary}",
                description,
            )
    return description


def fingerprint_cases(
    raw: RawDataset,
    options: PrepareOptions,
    output_dir: Path,
    num_workers: int = 0,
    tol: float = GEOMETRY_TOLERANCE,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The dataset fingerprint (see `medseg.preprocessing.planning`) and the unreadable cases.

    The result is cached in `output_dir/fingerprint.json` and reused while the cases, their
    files and the fingerprint-relevant options (orientation, crop, label rules) stay the same.
    """
    base = options.base_recipe()
    rules = options.label_rules.to_dict()
    key = json.dumps([FORMAT_VERSION, base.orientation, base.crop, rules, tol])
    hashes = {c: _case_hash(key, f) for c, f in sorted(raw.cases.items())}
    cache_path = output_dir / "fingerprint.json"
    try:
        cached = json.loads(cache_path.read_text())
        if cached.get("hashes") == hashes:
            logger.info("reusing the dataset fingerprint in %s", cache_path)
            return cached["fingerprint"], cached["failed_cases"]
    except (OSError, json.JSONDecodeError):
        pass
    declared = list(raw.labels)
    jobs = [
        (c, (f, declared, options.label_rules, len(raw.modalities), tol, base, i))
        for i, (c, f) in enumerate(sorted(raw.cases.items()))
    ]
    found, failed = {}, {}
    for case, result, error in run_cases(_fingerprint_one, jobs, num_workers, "fingerprinting"):
        if error is None:
            found[case] = result
        else:
            logger.error("case '%s' skipped: %s", case, error)
            failed[case] = error
    fingerprint = summarize_fingerprints(found)
    cache = {"hashes": hashes, "fingerprint": fingerprint, "failed_cases": failed}
    write_text_atomic(cache_path, json.dumps(cache, indent=1) + "\n")
    return fingerprint, failed


def _fingerprint_one(
    case: str,
    files: CaseFiles,
    declared: list[int],
    rules: LabelRules,
    num_channels: int,
    tol: float,
    recipe: Recipe,
    seed: int,
) -> dict[str, Any]:
    image, label, geometry = load_case(case, files, declared, rules, num_channels, tol)
    return case_fingerprint(image, geometry, label, recipe, seed)


def prepare_raw(
    raw: RawDataset,
    output_dir: str | os.PathLike,
    options: PrepareOptions,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    num_workers: int = 0,
    folds: int = 0,
    allow_failures: bool = False,
) -> dict[str, Any]:
    """Plan the "auto" options from the data, then `prepare_cases`; returns dataset.json.

    Raises:
        PreparationError: when a case failed and `allow_failures` is False (after writing).
    """
    output_dir = Path(output_dir).absolute()
    output_dir.mkdir(parents=True, exist_ok=True)
    backend = select_backend(options.use_gpu)
    if set(raw.ignore_labels) - set(options.ignore_labels):
        ignored = sorted({*options.ignore_labels, *raw.ignore_labels})
        logger.info("raw label id(s) %s are ignored (set to %d)", ignored, IGNORE_INDEX)
        options = dataclasses.replace(options, ignore_labels=ignored)
    cases, problems, extra = dict(raw.cases), dict(raw.problems), {}
    fingerprint = None
    if options.needs_fingerprint(raw.modalities):
        fingerprint, failed = fingerprint_cases(
            raw, options, output_dir, num_workers, options.geometry_tolerance
        )
        problems.update(failed)
        cases = {c: f for c, f in cases.items() if c not in failed}
        extra["fingerprint"] = fingerprint
    recipe, plan = options.resolve(raw.modalities, fingerprint)
    extra["plan"] = plan
    logger.info(
        "plan: target spacing %s, patch size %s, normalization %s",
        plan["target_spacing"],
        plan["patch_size"],
        plan["normalization"],
    )
    return prepare_cases(
        cases,
        output_dir,
        recipe,
        raw.labels,
        raw.modalities,
        raw.name,
        val_fraction,
        test_fraction,
        seed,
        num_workers,
        options.geometry_tolerance,
        folds=folds,
        label_rules=options.label_rules,
        backend=backend,
        problems=problems,
        extra=extra,
        allow_failures=allow_failures,
    )


def prepare_dataset(
    raw_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    recipe: Recipe,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Preprocess an nnU-Net v2 raw folder with a fixed recipe; returns `dataset.json`."""
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
        problems=raw.problems,
    )
