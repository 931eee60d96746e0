"""Whole-volume evaluation of a torch model: sliding window, argmax, per-class metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from medseg.inference.settings import InferenceSettings
from medseg.inference.sliding_window import sliding_window_inference
from medseg.inference.torch_predictor import TorchPredictor
from medseg.metrics import compute_case_metrics, summarize

logger = logging.getLogger(__name__)


def predict_logits(
    predictor: TorchPredictor, image: np.ndarray, settings: InferenceSettings, num_classes: int
) -> np.ndarray:
    """Blended logits `(K, Z, Y, X)` of one preprocessed image `(C, Z, Y, X)`."""
    return sliding_window_inference(
        image,
        predictor,
        patch_size=settings.patch_size,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
        gaussian=settings.gaussian,
        tta_axes=settings.tta_axes,
        num_classes=num_classes,
    )


def evaluate(
    model: torch.nn.Module,
    dataset: Any,
    settings: InferenceSettings,
    device: torch.device,
    amp: bool = False,
    metrics: Sequence[str] = ("dice",),
    progress: bool = True,
) -> dict[str, Any]:
    """Score `model` on every case of `dataset` on the preprocessed grid.

    Returns:
        `{"rows": per case and class, "summary": summarize(...), "mean_dice": float,
        "class_dice": {name: mean Dice}}`; the mean is over foreground classes of the per-class
        means, classes absent from both maps of a case (NaN) left out.
    """
    model.eval()
    predictor = TorchPredictor(model, device, amp=amp)
    class_ids = list(range(1, dataset.num_classes))
    names = {i: dataset.class_names[i] for i in class_ids}
    rows: list[dict[str, Any]] = []
    for index in tqdm(range(len(dataset)), desc="evaluate", disable=not progress, leave=False):
        image, label, case_id = dataset[index]
        logits = predict_logits(predictor, image, settings, dataset.num_classes)
        prediction = logits.argmax(axis=0).astype(label.dtype)
        case_rows = compute_case_metrics(
            prediction, label, dataset.case_spacing(case_id), class_ids, metrics=metrics
        )
        for row in case_rows:
            rows.append({"case": case_id, "class_name": names[row["class_id"]], **row})
    summary = summarize(rows, names)
    class_dice = {name: summary["per_class"][name]["dice"]["mean"] for name in names.values()}
    return {
        "rows": rows,
        "summary": summary,
        "mean_dice": summary["foreground_mean"]["dice"],
        "class_dice": class_dice,
    }
