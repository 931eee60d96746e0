"""The small rules every stage shares, written once (torch-free).

Choosing among named options (with a "did you mean"), positive integers and (z, y, x) triples,
the label-map dtype, the ignore id, device names and evaluation-space names. Callers turn the
`ValueError`s into their own one-line errors (a config key, a flag, a file).

>>> device_name("cpu")
'cpu'
>>> device_name("cuda")  # PyTorch's name of the GPU
'gpu'
>>> choose("orignal", EVAL_SPACES, "evaluation space")
Traceback (most recent call last):
...
ValueError: unknown evaluation space 'orignal'; did you mean 'original'? (choose from ...)
>>> int_triple(64, "patch_size")
(64, 64, 64)
>>> label_dtype(300)
dtype('int16')
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

# Label value the losses skip and the metrics never count (MedicalSeg's "unlabelled" id).
IGNORE_INDEX = 255

# Where a model runs. "cuda" (PyTorch's name) is accepted as another spelling of "gpu".
DEVICES = ("auto", "cpu", "gpu")
DEVICE_ALIASES = {"cuda": "gpu"}
DEVICE_CHOICES = (*DEVICES, *DEVICE_ALIASES)  # what a --device flag accepts

# Where a prediction is scored: on each scan's own grid, or on the preprocessed grid;
# "auto" takes "original" when the dataset records how to invert its preprocessing.
EVAL_SPACES = ("auto", "original", "preprocessed")


def closest(value: str, options: Iterable[str]) -> str | None:
    """The option most like `value` (case ignored), or None when none is close."""
    by_lower = {str(o).lower(): str(o) for o in options}
    match = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1, cutoff=0.5)
    return by_lower[match[0]] if match else None


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` for the closest option, or an empty string."""
    match = closest(value, options)
    return f"; did you mean '{match}'?" if match else ""


def choose(
    value: Any, options: Iterable[str], what: str, aliases: Mapping[str, str] | None = None
) -> str:
    """Return `value` when it is one of `options` (or an alias of one), else raise.

    Raises:
        ValueError: "unknown <what> '<value>'; did you mean ...? (choose from ...)".
    """
    options = list(options)
    if isinstance(value, str):
        value = (aliases or {}).get(value, value)
        if value in options:
            return value
    hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
    raise ValueError(f"unknown {what} {value!r}{hint} (choose from {', '.join(options)})")


def device_name(value: Any) -> str:
    """One of `DEVICES` ("cuda" means "gpu")."""
    return choose(value, DEVICES, "device", DEVICE_ALIASES)


def _prefix(what: str | None) -> str:
    return f"{what}: " if what else ""


def positive_int(value: Any, what: str | None = None) -> int:
    """`value` as an int >= 1 (booleans and floats refused); `what` prefixes the error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{_prefix(what)}expected a positive integer, got {value!r}")
    return int(value)


def positive_number(value: Any, what: str | None = None) -> float:
    """`value` as a float > 0 (booleans and strings refused); `what` prefixes the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or value <= 0:
        raise ValueError(f"{_prefix(what)}expected a positive number, got {value!r}")
    return float(value)


def int_triple(value: Any, what: str | None = None) -> tuple[int, int, int]:
    """One positive int for all three axes, or three of them in (z, y, x) order.

    A string "64,64,32" or "64 64 32" (a command-line value) is read as three ints.
    """
    items = [value] * 3 if isinstance(value, (int, np.integer)) else value
    if isinstance(items, str):
        items = items.replace(",", " ").split()
        try:
            items = [int(v) for v in items]
        except ValueError:
            items = None
    message = f"{_prefix(what)}expected an int or 3 positive ints (z, y, x), got {value!r}"
    if not isinstance(items, (list, tuple)) or len(items) != 3:
        raise ValueError(message)
    try:
        return tuple(positive_int(v) for v in items)  # type: ignore[return-value]
    except ValueError:
        raise ValueError(message) from None


def label_dtype(highest_id: int) -> np.dtype:
    """The dtype a label map is stored in: uint8 while every id fits, else int16."""
    if highest_id > np.iinfo(np.int16).max:
        raise ValueError(f"label id {highest_id} does not fit a label map (at most 32767)")
    return np.dtype(np.uint8 if highest_id <= np.iinfo(np.uint8).max else np.int16)
