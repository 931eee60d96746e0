"""Score a folder of predicted label maps against a folder of references (torch-free).

Files are paired by case id, the file name without its extension (`case_001.nii.gz` ↔
`case_001.mha`). Each pair must lie on one grid (size exactly; spacing, origin and direction within
a tolerance): a prediction shifted or resampled against its reference would be scored against the
wrong anatomy, so such a pair is an error, not a number. Distances use the reference's spacing.
A missing partner, an unreadable file or a geometry mismatch is reported for that case and the
other cases go on; cases run in parallel in a process pool.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from medseg.metrics.case import compute_case_metrics
from medseg.preprocessing.io import GEOMETRY_TOLERANCE, READ_EXTENSIONS, Geometry, read_volume
from medseg.utils.vocabulary import label_dtype

logger = logging.getLogger(__name__)

Row = dict[str, float | int]


def case_id_of(path: Path) -> str | None:
    """The case id of a readable label file (its name without extension), else None."""
    name = path.name
    for ext in sorted(READ_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def as_label_map(array: np.ndarray, source: str | os.PathLike) -> np.ndarray:
    """Return `array` as a non-negative integer label map; float files with whole values are cast.

    Many tools store label maps as float32 NIfTI; their values are still ids. Fractional, negative
    or non-finite values mean the file is not a label map (e.g. a probability map or an image).
    """
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu":
        if array.size and array.min() < 0:
            raise ValueError(f"{source}: label map holds negative id {array.min()}")
        return array
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array < 0) | (array != np.round(array))
        if np.any(bad):
            raise ValueError(
                f"{source}: stored as {array.dtype} with value {array[bad].flat[0]}, which is "
                "not a label id (ids are whole numbers >= 0); is this a probability map or image?"
            )
        high = int(array.max()) if array.size else 0
        try:
            return array.astype(label_dtype(high))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
    raise ValueError(f"{source}: expected an integer label map, got dtype {array.dtype}")


def read_label_map(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """`read_volume` for label maps: the array checked and cast by `as_label_map`."""
    array, geometry = read_volume(path)
    return as_label_map(array, path), geometry


def present_ids(*label_maps: np.ndarray) -> list[int]:
    """Sorted foreground ids (> 0) found in any of the label maps (one pass each, no copy)."""
    found: set[int] = set()
    for labels in label_maps:
        boxes = ndimage.find_objects(labels) if labels.size else []
        found.update(i + 1 for i, box in enumerate(boxes) if box is not None)
    return sorted(found)


def list_label_files(folder: str | os.PathLike) -> tuple[dict[str, Path], list[dict[str, str]]]:
    """`{case id: file}` of the readable volumes in `folder`, and errors for ambiguous case ids."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        case = case_id_of(path) if path.is_file() and not path.name.startswith(".") else None
        if case is not None:
            found.setdefault(case, []).append(path)
    files = {case: paths[0] for case, paths in found.items() if len(paths) == 1}
    errors = [
        {"case": case, "error": f"several files in {folder}: {', '.join(p.name for p in paths)}"}
        for case, paths in found.items()
        if len(paths) > 1
    ]
    return files, errors


def pair_label_files(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike
) -> tuple[list[tuple[str, Path, Path]], list[dict[str, str]], list[str]]:
    """Pair predictions with references by case id.

    Returns:
        `(pairs [(case, prediction, reference)], errors, unpredicted)`: errors for ambiguous case
        ids and predictions without a reference; `unpredicted` lists references without a
        prediction (the caller decides whether that is an error).
    """
    preds, errors = list_label_files(pred_dir)
    refs, ref_errors = list_label_files(ref_dir)
    errors += ref_errors
    bad = {e["case"] for e in errors}
    pairs = [(case, preds[case], refs[case]) for case in sorted(refs) if case in preds]
    for case in sorted(set(preds) - set(refs) - bad):
        errors.append({"case": case, "error": f"no reference in {ref_dir} for {preds[case]}"})
    unpredicted = sorted(set(refs) - set(preds) - bad)
    if not pairs and not errors and not unpredicted:
        raise FileNotFoundError(
            f"no label files ({', '.join(READ_EXTENSIONS)}) in {pred_dir} or {ref_dir}"
        )
    return pairs, sorted(errors, key=lambda e: e["case"]), unpredicted


@dataclass
class CaseScore:
    """Metric rows of one case (one per scored class) and the ids its reference holds."""

    case: str
    rows: list[Row]
    reference_ids: list[int]


def score_pair(
    case: str,
    pred_path: Path,
    ref_path: Path,
    class_ids: Sequence[int] | None,
    metrics: Sequence[str],
    nsd_tolerance: float | None,
    tolerance: float,
) -> CaseScore:
    """Read, check and score one pair; `class_ids=None` scores every id present in either map."""
    ref, ref_geometry = read_label_map(ref_path)
    pred, pred_geometry = read_label_map(pred_path)
    problem = ref_geometry.mismatch(pred_geometry, tolerance)
    if problem is not None:
        raise ValueError(
            f"prediction {pred_path} is not on the reference's grid ({ref_path}): "
            f"{problem} (reference vs prediction)"
        )
    reference_ids = present_ids(ref)
    ids = present_ids(ref, pred) if class_ids is None else list(class_ids)
    rows = compute_case_metrics(pred, ref, ref_geometry.spacing, ids, metrics, nsd_tolerance)
    return CaseScore(case, rows, reference_ids)


def _score_task(args: tuple) -> CaseScore | dict[str, str]:
    """Pool entry point: a `CaseScore`, or `{"case", "error"}` for a bad case."""
    case = args[0]
    try:
        return score_pair(*args)
    except (ValueError, OSError) as err:
        return {"case": case, "error": str(err)}


@dataclass
class FolderEvaluation:
    """Outcome of `evaluate_folders`: rows per case (sorted), the classes scored, the errors."""

    rows: dict[str, list[Row]]
    class_ids: list[int]
    errors: list[dict[str, str]] = field(default_factory=list)
    unpredicted: list[str] = field(default_factory=list)


def _absent_rows(
    class_ids: Sequence[int], metrics: Sequence[str], nsd_tolerance: float | None
) -> dict[int, Row]:
    """The row of each class absent from both maps (all NaN); also validates the request."""
    empty = np.zeros((1, 1, 1), dtype=np.uint8)
    rows = compute_case_metrics(empty, empty, (1.0, 1.0, 1.0), class_ids, metrics, nsd_tolerance)
    return {int(row["class_id"]): row for row in rows}


def _complete_rows(scores: list[CaseScore], absent: dict[int, Row]) -> dict[str, list[Row]]:
    """Rows of every case for exactly the classes of `absent`, filling in classes it lacks."""
    complete = {}
    for score in scores:
        by_id = {int(row["class_id"]): row for row in score.rows}
        complete[score.case] = [dict(by_id.get(c, row)) for c, row in absent.items()]
    return complete


def _run(tasks: list[tuple], num_workers: int, progress: bool) -> list[CaseScore | dict]:
    """Score `tasks` in a spawn-started process pool (serially when `num_workers` <= 1)."""
    bar = tqdm(total=len(tasks), desc="evaluate", unit="case", disable=not progress)
    results: list[CaseScore | dict] = []
    if num_workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            results.append(_score_task(task))
            bar.update()
        bar.close()
        return results
    # spawn: the workers need only numpy/scipy/SimpleITK, and forking a process that has loaded
    # torch or started threads can deadlock.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
        futures = {pool.submit(_score_task, task): task[0] for task in tasks}
        for future in concurrent.futures.as_completed(futures):
            try:
                results.append(future.result())
            except Exception as err:  # a dead worker must not end the whole run
                results.append({"case": futures[future], "error": f"{type(err).__name__}: {err}"})
            bar.update()
    bar.close()
    return results


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    class_ids: Sequence[int] | None = None,
    metrics: Sequence[str] = ("dice", "hd95"),
    nsd_tolerance: float | None = None,
    tolerance: float = GEOMETRY_TOLERANCE,
    num_workers: int = 1,
    progress: bool = True,
    require_predictions: bool = True,
) -> FolderEvaluation:
    """Score every prediction in `pred_dir` against the reference of the same case in `ref_dir`.

    Args:
        pred_dir: Folder of predicted label maps.
        ref_dir: Folder of reference label maps.
        class_ids: Foreground ids to score; None = every id > 0 found in the references read
            (ids found only in predictions are then logged and not scored).
        metrics: Names from `METRIC_NAMES`.
        nsd_tolerance: NSD tolerance in mm (needed for "nsd").
        tolerance: Largest spacing/origin/direction difference accepted between a pair's headers.
        num_workers: Processes scoring cases in parallel.
        progress: Show a progress bar over cases.
        require_predictions: A reference without a prediction is an error (a skipped case would
            flatter the means); False skips such cases and lists them in `unpredicted`.

    Returns:
        A `FolderEvaluation`; each error names the case and what went wrong, and is logged.
    """
    # Checks the ids, metric names and NSD tolerance before any file is read.
    _absent_rows([1] if class_ids is None else [int(c) for c in class_ids], metrics, nsd_tolerance)
    pairs, errors, unpredicted = pair_label_files(pred_dir, ref_dir)
    if require_predictions:
        errors += [{"case": c, "error": f"no prediction in {pred_dir}"} for c in unpredicted]
    elif unpredicted:
        logger.info("%d references have no prediction and are skipped", len(unpredicted))
    tasks = [
        (case, pred, ref, class_ids, tuple(metrics), nsd_tolerance, tolerance)
        for case, pred, ref in pairs
    ]
    results = _run(tasks, num_workers, progress)
    scores = sorted((r for r in results if isinstance(r, CaseScore)), key=lambda s: s.case)
    errors = sorted(errors + [r for r in results if isinstance(r, dict)], key=lambda e: e["case"])
    for error in errors:
        logger.error("case %s: %s", error["case"], error["error"])
    if class_ids is None:
        class_ids = sorted({c for s in scores for c in s.reference_ids})
        predicted = {int(r["class_id"]) for s in scores for r in s.rows}
        extra = sorted(predicted - set(class_ids))
        if extra:
            logger.warning(
                "predictions hold ids %s that no reference holds; not scored (pass --labels to "
                "score them)",
                extra,
            )
    rows = _complete_rows(scores, _absent_rows(class_ids, metrics, nsd_tolerance))
    return FolderEvaluation(
        rows=rows,
        class_ids=list(class_ids),
        errors=errors,
        unpredicted=[] if require_predictions else unpredicted,
    )
