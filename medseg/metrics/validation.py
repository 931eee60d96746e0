"""Argument checks shared by the metric functions, with messages that show the offending values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_pair(pred: np.ndarray, ref: np.ndarray) -> None:
    """Require two boolean arrays of one shape (what every mask metric compares)."""
    for name, mask in (("pred", pred), ("ref", ref)):
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            got = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
            raise ValueError(
                f"`{name}` must be a boolean numpy mask (e.g. `labels == class_id`), got {got}"
            )
    if pred.shape != ref.shape:
        raise ValueError(
            f"`pred` and `ref` must have the same shape, got {pred.shape} and {ref.shape}"
        )


def check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    """Return `spacing` as float64, requiring one positive finite value per array axis."""
    values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if values.size != ndim or not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(
            f"`spacing` must hold {ndim} positive finite values in array-axis order (z, y, x) mm, "
            f"got {tuple(np.asarray(spacing).reshape(-1).tolist())}"
        )
    return values
