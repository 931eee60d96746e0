"""Intensity normalisation per channel: CT window, z-score over nonzero voxels, or none.

A spec is a dict: `{"type": "ct", "window": [lo, hi]}`, `{"type": "zscore_nonzero"}` or
`{"type": "none"}`. `normalize` returns the numbers it used (window, mean and std) per channel,
so that a record says exactly what was done. The functions take NumPy or CuPy arrays alike
(`backend="cupy"` runs them on the GPU; see `medseg.preprocessing.backend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medseg.preprocessing.backend import array_module

NORMALIZATION_TYPES = ("ct", "zscore_nonzero", "none")


def ct_window(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] HU and scale linearly to [0, 1]."""
    if not low < high:
        raise ValueError(f"CT window needs low < high, got [{low}, {high}]")
    return ((channel.clip(low, high) - low) / (high - low)).astype(np.float32)


def zscore_nonzero(channel: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Z-score using the mean and std of the nonzero voxels; zero voxels stay zero.

    Returns:
        The normalised channel, the mean and the std used (0 and 1 when all voxels are zero;
        a std of 0 is replaced by 1 so a constant region maps to 0 instead of dividing by 0).
    """
    mask = channel != 0
    if not mask.any():
        return channel.astype(np.float32), 0.0, 1.0
    values = channel[mask].astype(np.float64)
    mean, std = float(values.mean()), float(values.std())
    std = std if std > 0 else 1.0
    out = np.zeros_like(channel, dtype=np.float32)  # a CuPy array for CuPy input
    out[mask] = (values - mean) / std
    return out, mean, std


def normalize(
    image: np.ndarray, specs: Sequence[dict[str, Any]], backend: str = "numpy"
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Normalise each channel of a (C, Z, Y, X) image with its spec (one spec per channel).

    Returns:
        The float32 image (always a NumPy array) and, per channel, the spec completed with the
        numbers used.
    """
    if len(specs) != image.shape[0]:
        raise ValueError(
            f"normalization has {len(specs)} channel spec(s) but the image has {image.shape[0]} "
            f"channel(s) (shape {image.shape})"
        )
    xp = array_module(backend)
    channels, used = [], []
    for channel, spec in zip(xp.asarray(image), specs, strict=True):
        kind = spec["type"]
        if kind == "ct":
            low, high = (float(v) for v in spec["window"])
            channels.append(ct_window(channel, low, high))
            used.append({"type": "ct", "window": [low, high]})
        elif kind == "zscore_nonzero":
            out, mean, std = zscore_nonzero(channel)
            channels.append(out)
            used.append({"type": "zscore_nonzero", "mean": mean, "std": std})
        elif kind == "none":
            channels.append(channel.astype(np.float32))
            used.append({"type": "none"})
        else:
            raise ValueError(
                f"normalization type must be one of {NORMALIZATION_TYPES}, got {kind!r}"
            )
    stacked = xp.stack(channels)
    return (stacked if isinstance(stacked, np.ndarray) else stacked.get()), used
