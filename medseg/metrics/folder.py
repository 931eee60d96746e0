"""Score a folder of predicted label maps against a folder of references (torch-free).

Files are paired by case id, the file name without its extension (`case_001.nii.gz` ↔
`case_001.mha`). Each pair must lie on one grid (size exactly; spacing, origin and direction within
a tolerance): a prediction shifted or resampled against its reference would be scored against the
wrong anatomy, so such a pair is an error, not a number. Distances use the reference's spacing.
A missing partner, an unreadable file or a geometry mismatch is reported for that case and the
other cases go on; cases run in parallel in medseg's one worker pool (`medseg.utils.parallel`),
where a dead worker stops the run with `WorkerDiedError`, as in preparation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from medseg.metrics.results import CaseError, CaseResult, EvaluationResult, score_case
from medseg.preprocessing.io import GEOMETRY_TOLERANCE, READ_EXTENSIONS, Geometry, read_volume
from medseg.utils.parallel import run_cases
from medseg.utils.vocabulary import label_dtype

logger = logging.getLogger(__name__)


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


def score_pair(
    case: str,
    pred_path: Path,
    ref_path: Path,
    class_ids: Sequence[int] | None,
    metrics: Sequence[str],
    nsd_tolerance: float | None,
    tolerance: float,
    index: int = 0,
) -> CaseResult:
    """Read, check and score one pair; `class_ids=None` scores every id present in either map."""
    ref, ref_geometry = read_label_map(ref_path)
    pred, pred_geometry = read_label_map(pred_path)
    problem = ref_geometry.mismatch(pred_geometry, tolerance)
    if problem is not None:
        raise ValueError(
            f"prediction {pred_path} is not on the reference's grid ({ref_path}): "
            f"{problem} (reference vs prediction)"
        )
    ids = present_ids(ref, pred) if class_ids is None else list(class_ids)
    result = score_case(case, pred, ref, ref_geometry.spacing, ids, metrics, nsd_tolerance, index)
    return dataclasses.replace(result, reference_ids=tuple(present_ids(ref)))


def _absent_scores(
    class_ids: Sequence[int], metrics: Sequence[str], nsd_tolerance: float | None
) -> dict[int, dict[str, float]]:
    """The scores of each class absent from both maps (all NaN); also validates the request."""
    empty = np.zeros((1, 1, 1), dtype=np.uint8)
    return score_case("", empty, empty, (1.0, 1.0, 1.0), class_ids, metrics, nsd_tolerance).scores


def _complete(result: CaseResult, absent: dict[int, dict[str, float]]) -> CaseResult:
    """`result` with exactly the classes of `absent`, filling in the classes it lacks."""
    scores = {c: dict(result.scores.get(c, values)) for c, values in absent.items()}
    return dataclasses.replace(result, scores=scores)


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
    class_names: Mapping[int, str] | None = None,
) -> tuple[EvaluationResult, list[str]]:
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
        class_names: Class id → name for the report.

    Returns:
        `(result, unpredicted)`: an `EvaluationResult` (cases in case-id order; each error
        names the case and what went wrong, and is logged; classes named by `class_names`, else
        `class_<id>`) and the references skipped for want of a prediction.

    Raises:
        WorkerDiedError: A worker process died (out of memory, a crash).
    """
    # Checks the ids, metric names and NSD tolerance before any file is read.
    _absent_scores(
        [1] if class_ids is None else [int(c) for c in class_ids], metrics, nsd_tolerance
    )
    pairs, listed, unpredicted = pair_label_files(pred_dir, ref_dir)
    if require_predictions:
        listed += [{"case": c, "error": f"no prediction in {pred_dir}"} for c in unpredicted]
    elif unpredicted:
        logger.info("%d references have no prediction and are skipped", len(unpredicted))
    jobs = [
        (case, (pred, ref, class_ids, tuple(metrics), nsd_tolerance, tolerance, index))
        for index, (case, pred, ref) in enumerate(pairs)
    ]
    workers = num_workers if num_workers > 1 and len(jobs) > 1 else 0
    # spawn: the workers need only numpy/scipy/SimpleITK, and forking a process that has loaded
    # torch or started threads can deadlock.
    scored, errors = [], [CaseError(e["case"], e["error"]) for e in listed]
    for case, result, error in run_cases(score_pair, jobs, workers, "evaluate", "spawn", progress):
        if error is None:
            scored.append(result)
        else:
            errors.append(CaseError(case, error))
    for error in sorted(errors, key=lambda e: e.case):
        logger.error("case %s: %s", error.case, error.error)
    if class_ids is None:
        class_ids = sorted({c for s in scored for c in s.reference_ids})
        predicted = {c for s in scored for c in s.scores}
        extra = sorted(predicted - set(class_ids))
        if extra:
            logger.warning(
                "predictions hold ids %s that no reference holds; not scored (pass --labels to "
                "score them)",
                extra,
            )
    absent = _absent_scores(class_ids, metrics, nsd_tolerance)
    names = dict(class_names or {})
    result = EvaluationResult.collect(
        [_complete(s, absent) for s in scored],
        sorted(errors, key=lambda e: e.case),
        {c: names.get(c, f"class_{c}") for c in class_ids},
        metrics,
        space="as given (each prediction on its reference's grid)",
    )
    return result, ([] if require_predictions else unpredicted)
