"""Predict one case: sliding window on the preprocessed grid, then back onto the scan's grid.

Torch-free: val.py drives it with a torch predictor, the deploy runner with onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medseg.inference.settings import InferenceSettings
from medseg.inference.sliding_window import sliding_window_inference, softmax
from medseg.preprocessing.pipeline import PreprocessRecord, probabilities_to_original_labels

Predictor = Callable[[np.ndarray], np.ndarray]


def predict_logits(
    image: np.ndarray, predictor: Predictor, settings: InferenceSettings, num_classes: int
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


def logits_to_original_labels(logits: np.ndarray, record: PreprocessRecord) -> np.ndarray:
    """Label map in the scan's own grid (size, orientation) from preprocessed-grid logits.

    Probabilities, not label ids, are resampled (linearly) before the argmax, so the result is
    as smooth as the network's output and no id is ever interpolated.
    """
    return probabilities_to_original_labels(softmax(logits, axis=0), record)
