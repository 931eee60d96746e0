"""Whole-volume evaluation of a torch model: sliding window, argmax, per-class metrics.

A dataset trained on regions (`regions: true`) is scored per region (`score_regions`) on the
label maps its region predictions convert back to.

Scores are computed in one of two spaces:

- "original": the prediction is mapped back onto the scan's own grid (probabilities resampled,
  then argmax) and compared with the raw reference label map, distances in the raw spacing. This
  is what a user's own evaluation of the written predictions measures, so it is the honest number.
- "preprocessed": the argmax on the preprocessed grid against the preprocessed label map (faster;
  the only choice when the dataset does not record where its cases came from).

"auto" picks "original" whenever every case has a preprocessing record and a readable source
label in dataset.json. Training and val.py both default to "auto", so they report the same number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from medseg.inference.case import CasePipeline
from medseg.inference.settings import InferenceSettings
from medseg.inference.torch_predictor import TorchPredictor
from medseg.metrics.folder import read_label_map
from medseg.metrics.results import (
    CaseError,
    CaseResult,
    EvaluationResult,
    score_case,
    score_regions,
)
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.pipeline import PreprocessRecord
from medseg.preprocessing.regions import Regions
from medseg.utils.vocabulary import EVAL_SPACES, choose

logger = logging.getLogger(__name__)


# Called with (case id, predicted label map, its geometry) for every case evaluated.
PredictionSink = Callable[[str, np.ndarray, Geometry], None]


def resolve_space(dataset: Any, space: str = "auto") -> str:
    """The space `dataset` is scored in: "original" or "preprocessed" ("auto" logs a fallback).

    Raises:
        ValueError: for an unknown space, or "original" when some case lacks a record or source.
    """
    space = choose(space, EVAL_SPACES, "evaluation space")
    if space == "preprocessed":
        return space
    lacking = []
    description = dataset.description
    for case in dataset.cases:
        source = description.source_label_path(case["id"])
        if description.record(case["id"]) is None or source is None:
            lacking.append(f"{case['id']} (no record or source_label)")
        elif not source.is_file():
            lacking.append(f"{case['id']} ({source} not found)")
    if not lacking:
        return "original"
    where = description.path
    shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
    if space == "original":
        raise ValueError(
            f"evaluation in the scans' original space needs a preprocessing record and the raw "
            f"label map of every case in {where}; missing for {shown}. Re-prepare the dataset with "
            "medseg's tools, or evaluate on the preprocessed grid (space 'preprocessed')"
        )
    logger.info(
        "evaluating on the preprocessed grid, not the scans' own: %d of %d cases lack what "
        "original-space scoring needs in %s: %s",
        len(lacking),
        len(dataset.cases),
        where,
        shown,
    )
    return "preprocessed"


def _case_record(dataset: Any, case_id: str, image: np.ndarray) -> PreprocessRecord:
    """The case's preprocessing record, checked against the grid the network predicts on."""
    record = dataset.description.record(case_id)
    if record is None:
        raise ValueError(
            f"case '{case_id}' has no preprocessing record in {dataset.description.path}; "
            "distances in mm need it"
        )
    if tuple(image.shape[1:]) != record.shape_after_resample:
        raise ValueError(
            f"case '{case_id}': the network sees a {tuple(image.shape[1:])} volume but the "
            f"preprocessed case is {record.shape_after_resample}; val_dataset.transforms must "
            "not change the spatial shape"
        )
    return record


def reference_label(
    dataset: Any, case_id: str, space: str, label: np.ndarray, geometry: Geometry
) -> np.ndarray:
    """The reference label map of a case on the grid its prediction lies on."""
    if space == "preprocessed":
        return label
    description = dataset.description
    reference_path = description.source_label_path(case_id)
    reference, reference_geometry = read_label_map(reference_path)
    # The raw label holds raw ids: remap them as preparation did (--label_map, --ignore_labels).
    reference = description.label_rules.apply(reference, range(dataset.num_classes), reference_path)
    if reference.shape != geometry.shape:
        raise ValueError(
            f"case '{case_id}': the prediction mapped back to the scan has shape "
            f"{geometry.shape} but the reference {reference_path} has {reference.shape} "
            "(z, y, x); was the dataset prepared from these raw files?"
        )
    problem = geometry.mismatch(reference_geometry)
    if problem is not None:
        raise ValueError(
            f"case '{case_id}': reference {reference_path} is not on the scan's grid: {problem}"
        )
    return reference


Models = torch.nn.Module | Sequence[torch.nn.Module]


def case_pipeline(
    model: Models,
    settings: InferenceSettings,
    device: torch.device,
    num_classes: int,
    amp_dtype: torch.dtype | None = None,
    largest_component: Sequence[int] = (),
    regions: Regions | None = None,
) -> CasePipeline:
    """The case pipeline of one model, or of several whose probabilities are averaged."""
    models = [model] if isinstance(model, torch.nn.Module) else list(model)
    predictors = [TorchPredictor(m.eval(), device, amp_dtype) for m in models]
    return CasePipeline(
        predictors,
        settings,
        num_classes,
        largest_component=largest_component,
        regions=regions,
    )


def score_cases(
    model: Models,
    dataset: Any,
    settings: InferenceSettings,
    device: torch.device,
    indices: Sequence[int],
    space: str,
    amp_dtype: torch.dtype | None = None,
    metrics: Sequence[str] = ("dice",),
    progress: bool = True,
    nsd_tolerance: float | None = None,
    on_prediction: PredictionSink | None = None,
    largest_component: Sequence[int] = (),
) -> tuple[list[CaseResult], list[CaseError]]:
    """Predict and score the cases at `indices` in a resolved `space` ("original"/"preprocessed").

    The building block of `evaluate`; a distributed run gives each rank its own `indices` and
    merges the results with `summarize_cases`, which sorts by case index so the summary is
    computed exactly as a single process would. Predictions go through the deploy runner's
    `CasePipeline`, post-processing (`largest_component`) included; scoring is
    `medseg.metrics.score_case`, the function tools/evaluate.py scores files with. Several
    models are an ensemble: their class probabilities are averaged.
    """
    regions = getattr(dataset, "regions", None)
    pipeline = case_pipeline(
        model, settings, device, dataset.num_classes, amp_dtype, largest_component, regions
    )
    class_ids = list(range(1, dataset.num_classes))
    scored: list[CaseResult] = []
    errors: list[CaseError] = []
    for index in tqdm(indices, desc=f"evaluate ({space} space)", disable=not progress):
        image, label, case_id = dataset[index]
        try:
            record = _case_record(dataset, case_id, image)
            predicted = pipeline.preprocessed(image, record, space)
            prediction, geometry = predicted.label, predicted.geometry
            reference = reference_label(dataset, case_id, space, label, geometry)
            if regions is None:
                result = score_case(
                    case_id,
                    prediction,
                    reference,
                    geometry.spacing,
                    class_ids,
                    metrics,
                    nsd_tolerance,
                    index,
                )
            else:
                result = score_regions(
                    case_id,
                    prediction,
                    reference,
                    geometry.spacing,
                    regions,
                    metrics,
                    nsd_tolerance,
                    index,
                )
            if on_prediction is not None:
                on_prediction(case_id, prediction, geometry)
        except (ValueError, OSError) as err:
            logger.error("case %s: %s", case_id, err)
            errors.append(CaseError(case_id, str(err), index))
            continue
        scored.append(result)
    return scored, errors


def summarize_cases(
    dataset: Any,
    space: str,
    scored: Sequence[CaseResult],
    errors: Sequence[CaseError],
    metrics: Sequence[str] = ("dice",),
) -> EvaluationResult:
    """The `evaluate` result from all cases' scores, put in dataset order whatever their rank.

    A region-trained dataset reports its regions (ids 1 .. R) instead of its classes.
    """
    regions = getattr(dataset, "regions", None)
    names = {i: dataset.class_names[i] for i in range(1, dataset.num_classes)}
    if regions is not None:
        names = regions.reported_names()
    return EvaluationResult.collect(scored, errors, names, metrics, space)


def evaluate(
    model: Models,
    dataset: Any,
    settings: InferenceSettings,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    metrics: Sequence[str] = ("dice",),
    progress: bool = True,
    space: str = "auto",
    nsd_tolerance: float | None = None,
    on_prediction: PredictionSink | None = None,
    largest_component: Sequence[int] = (),
) -> EvaluationResult:
    """Score `model` (or an ensemble) on every case of `dataset` in the chosen space.

    See the module docstring for the spaces.

    A case that cannot be scored (unreadable reference, shape mismatch) is logged and listed in
    `errors`; the others go on.

    Returns:
        The `EvaluationResult`; its `mean_dice` is over foreground classes of the per-class
        means, classes absent from both maps of a case (NaN) left out.
    """
    space = resolve_space(dataset, space)
    scored, errors = score_cases(
        model,
        dataset,
        settings,
        device,
        range(len(dataset)),
        space,
        amp_dtype=amp_dtype,
        metrics=metrics,
        progress=progress,
        nsd_tolerance=nsd_tolerance,
        on_prediction=on_prediction,
        largest_component=largest_component,
    )
    return summarize_cases(dataset, space, scored, errors, metrics)
