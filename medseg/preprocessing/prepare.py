"""Turn a raw labelled dataset into the preprocessed medseg layout, resumably and in parallel.

Inputs: a `RawDataset` (name, modalities, labels, `CaseFiles` by case id), found by a reader of
`medseg.preprocessing.formats` or of a dataset module. `prepare_raw` plans "auto" options from a
dataset fingerprint and calls `prepare_cases`, which runs one step per job: draw the splits, find
the cases a rerun can skip, prepare the others in workers, settle the splits over what was
prepared, write the lists, write `dataset.json`, report the failures.

Output, in `output_dir`:

- `images/<case>.npy` float32 (C, Z, Y, X) and `labels/<case>.npy` uint8 (int16 above 255 ids);
- `records/<case>.json`: the case's `CaseEntry` and the hash of what made it (recipe,
  label rules, declared label ids, source file names, sizes and modification times). A case
  is finished, and skipped by a rerun, when this file exists with the same hash and both
  arrays exist (records of earlier versions, keyed without the times, count while they are
  newer than every source file);
- `train_list.txt`, `val_list.txt` (and `test_list.txt` when a test fraction is asked) with lines
  `images/<case>.npy labels/<case>.npy` (see `medseg.preprocessing.file_list`);
- with `folds=K`: `folds/fold_<k>_train_list.txt` and `folds/fold_<k>_val_list.txt` for
  k = 0..K-1, the same line format, over the cases outside the test split; the K validation
  lists are disjoint and cover those cases (a one-case dataset validates on its training case,
  with a warning). Splits and folds are drawn over every case found,
  failed ones included, and the failed ones are then left out: fixing a bad case later puts it
  back where it belongs without moving any other case;
- `fingerprint.json` when something was planned (reused by a rerun over the same cases);
- `dataset.json`: the `DatasetDescription` (`medseg.preprocessing.description` owns the file
  and lists its keys).

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
from collections.abc import Iterable, Mapping
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
from medseg.preprocessing.description import FILENAME, CaseEntry, DatasetDescription
from medseg.preprocessing.file_list import case_paths, write_list
from medseg.preprocessing.io import GEOMETRY_TOLERANCE
from medseg.preprocessing.options import PrepareOptions
from medseg.preprocessing.pipeline import preprocess_case
from medseg.preprocessing.planning import case_fingerprint, summarize_fingerprints
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.regions import Regions
from medseg.preprocessing.splits import fold_list_name, kfold_cases, split_cases
from medseg.utils.atomic import atomic_path, remove_stale_temporaries, write_text_atomic
from medseg.utils.parallel import run_cases
from medseg.utils.paths import output_inside_inputs

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the arrays written for the same recipe change

__all__ = [
    "CaseFiles",
    "PreparationError",
    "PrepareSettings",
    "RawDataset",
    "prepare_cases",
    "prepare_raw",
]

Splits = dict[str, list[str]]


class PreparationError(ValueError):
    """Some cases could not be prepared.

    Attributes:
        failed_cases: The cases that failed, with why.
        description: What was written to `dataset.json` (None when no case could be prepared).
    """

    def __init__(
        self, message: str, failed_cases: Mapping[str, str], description: DatasetDescription | None
    ):
        super().__init__(message)
        self.failed_cases = dict(failed_cases)
        self.description = description


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
    """How a preparation runs (the recipe and label rules say what it makes).

    Attributes:
        val_fraction: Share of cases in the validation split.
        test_fraction: Share of cases in the test split (a `test_list.txt` only when > 0).
        seed: Split seed.
        folds: Number of cross-validation folds to write (0: none).
        num_workers: Worker processes; 0 runs in this process.
        tolerance: Allowed geometry difference between a case's channels and its label (mm).
        backend: Resampling backend, "numpy" or "cupy".
        allow_failures: Return normally even when some cases failed.
    """

    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 0
    folds: int = 0
    num_workers: int = 0
    tolerance: float = GEOMETRY_TOLERANCE
    backend: str = "numpy"
    allow_failures: bool = False


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


def _record_path(output_dir: Path, case: str) -> Path:
    return output_dir / "records" / f"{case}.json"


def _finished_entry(output_dir: Path, case: str, key: str, files: CaseFiles) -> CaseEntry | None:
    """The record of a case prepared from these very sources, or None.

    A record of an earlier medseg version (keyed on names and sizes) counts when it is newer
    than every source file; it is then rewritten with the current key.
    """
    record_path = _record_path(output_dir, case)
    entry = CaseEntry.load(record_path)
    if entry is None or not all((output_dir / p).is_file() for p in (entry.image, entry.label)):
        return None
    case_hash = _case_hash(key, files)
    if entry.hash == case_hash:
        return entry
    written = record_path.stat().st_mtime_ns
    sources = [_source_stat(p, True) for p in (*files.images, files.label)]
    legacy = entry.hash == _case_hash(key, files, with_mtime=False)
    if not legacy or any(s[1] is None or s[2] > written for s in sources):
        return None
    entry = dataclasses.replace(entry, hash=case_hash)
    entry.write(record_path)
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
) -> CaseEntry:
    image, label, geometry = load_case(case, files, declared, rules, num_channels, tol)
    image, label, record = preprocess_case(
        image, geometry, recipe, label, case=case, backend=backend
    )
    image_path, label_path = case_paths(case)
    entry = CaseEntry(
        image=image_path,
        label=label_path,
        source_images=tuple(os.path.relpath(p, output_dir) for p in files.images),
        source_label=os.path.relpath(files.label, output_dir),
        record=record,
        hash=case_hash,
    )
    _save_npy(image, output_dir / entry.image)
    _save_npy(label, output_dir / entry.label)
    entry.write(_record_path(output_dir, case))
    return entry


def _draw_splits(case_ids: Iterable[str], settings: PrepareSettings) -> tuple[Splits, list[Splits]]:
    """The splits and folds over every case found (drawn first: bad fractions stop at once)."""
    s = settings
    splits = split_cases(sorted(case_ids), s.val_fraction, s.test_fraction, s.seed)
    folds = kfold_cases(splits["train"] + splits["val"], s.folds, s.seed) if s.folds else []
    return splits, folds


def _pending(
    raw: RawDataset, output_dir: Path, key: str, args: tuple
) -> tuple[dict[str, CaseEntry], list[tuple[str, tuple]]]:
    """The cases a previous run finished with the same hash, and the jobs for the others."""
    finished: dict[str, CaseEntry] = {}
    jobs = []
    for case in sorted(raw.cases):
        files = raw.cases[case]
        entry = _finished_entry(output_dir, case, key, files)
        if entry is None:
            jobs.append((case, (files, output_dir, *args, _case_hash(key, files))))
        else:
            finished[case] = entry
    if finished:
        logger.info(
            "%d of %d case(s) already prepared with this recipe; skipped",
            len(finished),
            len(raw.cases),
        )
    return finished, jobs


def _run_jobs(
    jobs: list[tuple[str, tuple]], settings: PrepareSettings, name: str
) -> tuple[dict[str, CaseEntry], dict[str, str]]:
    """Prepare each pending case in the workers; the prepared entries and the failures."""
    # A forked worker cannot use CUDA once this process has (the backend check ran a kernel).
    start_method = "spawn" if settings.backend == "cupy" else None
    entries, failed = {}, {}
    desc = f"preparing {name}"
    for case, entry, error in run_cases(
        _prepare_one, jobs, settings.num_workers, desc, start_method
    ):
        if error is None:
            entries[case] = entry
        else:
            logger.error("case '%s' skipped: %s", case, error)
            failed[case] = error
    return entries, failed


def _settle_splits(
    planned: Splits, planned_folds: list[Splits], prepared: set[str], settings: PrepareSettings
) -> tuple[Splits, list[Splits]]:
    """The splits without the failed cases; redrawn over the prepared ones if one ran empty."""

    def kept(lists: Splits) -> Splits:
        return {split: [c for c in ids if c in prepared] for split, ids in lists.items()}

    splits, folds = kept(planned), [kept(fold) for fold in planned_folds]
    wanted = {"train": True, "val": settings.val_fraction > 0, "test": settings.test_fraction > 0}
    if (
        len(prepared) == 1
        and sum(len(ids) for ids in planned.values()) == 1
        and wanted["val"]
        and not wanted["test"]
        and not settings.folds
    ):
        # One case cannot be split; validating on the training case still lets --do_eval,
        # val.py and the notebook run end to end, and the warning says what the score means.
        (only,) = prepared
        logger.warning(
            "only one case (%s): it is both the training and the validation case, so the "
            "validation score measures fit, not generalisation; add cases for a real split",
            only,
        )
        return {"train": [only], "val": [only], "test": []}, folds
    emptied = [s for s, ids in splits.items() if wanted[s] and not ids]
    if emptied or any(not fold["val"] for fold in folds):
        logger.warning(
            "the failed case(s) leave the %s split(s) empty: splitting the %d prepared case(s) "
            "instead (once the failed ones are fixed, a rerun will split differently)",
            "/".join(emptied) or "fold",
            len(prepared),
        )
        splits, folds = _draw_splits(prepared, settings)
    return splits, folds


def _write_lists(
    output_dir: Path, splits: Splits, folds: list[Splits], settings: PrepareSettings
) -> None:
    """`<split>_list.txt` (test only when asked) and `folds/fold_<k>_<split>_list.txt`."""
    names = ["train", "val"] + (["test"] if settings.test_fraction > 0 else [])
    for split in names:
        write_list(output_dir / f"{split}_list.txt", splits[split])
    for k, fold in enumerate(folds):
        for split in ("train", "val"):
            write_list(output_dir / fold_list_name(k, split), fold[split])


def _report(description: DatasetDescription, settings: PrepareSettings) -> None:
    """Log the result; raise `PreparationError` for failed cases unless they are allowed."""
    splits = description.splits
    logger.info(
        "prepared %d case(s) of %s into %s (train %d, val %d, test %d, folds %d)",
        len(description.cases),
        description.name,
        description.root,
        len(splits["train"]),
        len(splits["val"]),
        len(splits["test"]),
        len(description.folds),
    )
    failed = description.failed_cases
    if not failed:
        return
    summary = "\n".join(f"  {c}: {why}" for c, why in sorted(failed.items()))
    name = description.name
    logger.error("%d case(s) of %s failed and were skipped:\n%s", len(failed), name, summary)
    if not settings.allow_failures:
        raise PreparationError(
            f"{len(failed)} case(s) of {name} failed (listed in {FILENAME} "
            f"'failed_cases'):\n{summary}",
            failed,
            description,
        )


def prepare_cases(
    raw: RawDataset,
    output_dir: str | os.PathLike,
    recipe: Recipe,
    settings: PrepareSettings | None = None,
    label_rules: LabelRules | None = None,
    planned: Mapping[str, Any] | None = None,
) -> DatasetDescription:
    """Preprocess the cases of `raw` into `output_dir` and write the lists and `dataset.json`.

    Args:
        raw: The cases (by id), their class names (after `label_rules`, ids consecutive from 0),
            modalities and name; `raw.problems` are listed as failed.
        output_dir: Destination folder (created).
        recipe: The preprocessing recipe.
        settings: Split, workers, tolerance, backend and failure handling.
        label_rules: Raw label remapping and ignored ids.
        planned: `fingerprint` and `plan` to record, when options were planned from the data.

    Returns:
        The description written to `dataset.json`.

    Raises:
        PreparationError: when a case failed and failures are not allowed (after writing).
    """
    settings = settings or PrepareSettings()
    rules = label_rules or LabelRules()
    output_dir = Path(output_dir).absolute()
    sources = {p.parent for files in raw.cases.values() for p in (*files.images, files.label)}
    problem = output_inside_inputs(output_dir, sorted(sources), "output_dir")
    if problem is not None:
        raise ValueError(problem)
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir, ("", "images", "labels", "records", "folds"))
    (output_dir / FILENAME).unlink(missing_ok=True)  # its presence means the run finished
    labels = check_labels(dict(raw.labels), raw.name)
    if raw.regions is not None:  # the regions must name the final ids (after --label_map)
        Regions.from_list(raw.regions.to_list(), labels, f"the regions of {raw.name}")
    failed = dict(raw.problems)
    planned_splits, planned_folds = _draw_splits(set(raw.cases) | set(failed), settings)
    key = json.dumps(
        [FORMAT_VERSION, recipe.to_dict(), rules.to_dict(), len(raw.modalities), sorted(labels)]
    )
    args = (recipe, list(labels), rules, len(raw.modalities), settings.tolerance, settings.backend)
    entries, jobs = _pending(raw, output_dir, key, args)
    prepared, errors = _run_jobs(jobs, settings, raw.name)
    entries.update(prepared)
    failed.update(errors)
    if not entries:
        raise PreparationError(f"no case of {raw.name} could be prepared: {failed}", failed, None)
    splits, folds = _settle_splits(planned_splits, planned_folds, set(entries), settings)
    _write_lists(output_dir, splits, folds, settings)
    planned = dict(planned or {})
    description = DatasetDescription(
        root=output_dir,
        name=raw.name,
        modalities=tuple(raw.modalities),
        labels=labels,
        num_classes=len(labels),
        regions=raw.regions,
        recipe=recipe,
        label_rules=rules,
        seed=settings.seed,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        splits={s: tuple(ids) for s, ids in splits.items()},
        folds=tuple({s: tuple(ids) for s, ids in fold.items()} for fold in folds),
        failed_cases=dict(sorted(failed.items())),
        fingerprint=planned.get("fingerprint"),
        plan=planned.get("plan"),
        cases=dict(sorted(entries.items())),
    )
    description.write()
    _report(description, settings)
    return description


def fingerprint_cases(
    raw: RawDataset,
    options: PrepareOptions,
    output_dir: Path,
    num_workers: int = 0,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The dataset fingerprint (see `medseg.preprocessing.planning`) and the unreadable cases.

    The result is cached in `output_dir/fingerprint.json` and reused while the cases, their
    files and the fingerprint-relevant options (orientation, crop, label rules) stay the same.
    """
    tol = options.geometry_tolerance
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
    settings: PrepareSettings | None = None,
) -> DatasetDescription:
    """Plan the "auto" options from the data, then `prepare_cases`; returns the description.

    `settings.tolerance` and `settings.backend` are taken from `options` (`geometry_tolerance`,
    `use_gpu`).

    Raises:
        PreparationError: when a case failed and failures are not allowed (after writing).
    """
    output_dir = Path(output_dir).absolute()
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.replace(
        settings or PrepareSettings(),
        tolerance=options.geometry_tolerance,
        backend=select_backend(options.use_gpu),
    )
    if set(raw.ignore_labels) - set(options.ignore_labels):
        ignored = sorted({*options.ignore_labels, *raw.ignore_labels})
        logger.info("raw label id(s) %s are ignored (set to %d)", ignored, IGNORE_INDEX)
        options = dataclasses.replace(options, ignore_labels=ignored)
    planned: dict[str, Any] = {}
    fingerprint = None
    if options.needs_fingerprint(raw.modalities):
        fingerprint, failed = fingerprint_cases(raw, options, output_dir, settings.num_workers)
        cases = {c: f for c, f in raw.cases.items() if c not in failed}
        raw = dataclasses.replace(raw, cases=cases, problems={**raw.problems, **failed})
        planned["fingerprint"] = fingerprint
    recipe, plan = options.resolve(raw.modalities, fingerprint)
    planned["plan"] = plan
    logger.info(
        "plan: target spacing %s, patch size %s, normalization %s",
        plan["target_spacing"],
        plan["patch_size"],
        plan["normalization"],
    )
    return prepare_cases(raw, output_dir, recipe, settings, options.label_rules, planned)
