"""Choose the post-processing on cross-validation predictions (torch-free).

For each foreground class, the largest-component filter is kept when it raises that class's mean
Dice over the cross-validation cases (nnU-Net's `find_best_configuration` does the same per
class). The filter on class c turns some of c's voxels into background and touches no other
class, so each class is decided on its own. nnU-Net first also tries all foreground classes
merged into one region; deploy.yaml's `postprocess` only knows per-class filtering, so that
variant is not tried here.

`crossval/postprocessing.json` is written and read here and nowhere else; export.py copies its
`largest_component` into deploy.yaml.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medseg.cvlibs.errors import ConfigError
from medseg.inference.postprocess import keep_largest_component, postprocess_settings
from medseg.metrics.overlap import dice
from medseg.utils.atomic import write_text_atomic

POSTPROCESSING_FILE = "postprocessing.json"


@dataclasses.dataclass(frozen=True)
class ClassChoice:
    """The decision for one foreground class.

    Attributes:
        class_id: The class.
        name: Its name.
        dice_without: Mean Dice over the cases without the filter (NaN: never present).
        dice_with: Mean Dice with the class reduced to its largest component.
        chosen: Whether the filter is kept (it raised the mean Dice).
    """

    class_id: int
    name: str
    dice_without: float
    dice_with: float
    chosen: bool


@dataclasses.dataclass(frozen=True)
class PostprocessChoice:
    """The chosen post-processing and the evidence for it.

    Attributes:
        classes: One decision per foreground class, by id.
        cases: How many cases it was decided on.
    """

    classes: tuple[ClassChoice, ...]
    cases: int

    @property
    def largest_component(self) -> tuple[int, ...]:
        """Class ids to reduce to their largest component (deploy.yaml's list)."""
        return tuple(c.class_id for c in self.classes if c.chosen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the decision first, then per class the Dice with and without."""
        return {
            "largest_component": list(self.largest_component),
            "cases": self.cases,
            "classes": {
                c.name: {
                    "class_id": c.class_id,
                    "dice_without": c.dice_without,
                    "dice_with": c.dice_with,
                    "chosen": c.chosen,
                }
                for c in self.classes
            },
        }

    def write(self, path: str | os.PathLike) -> None:
        """Write postprocessing.json atomically."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=True) + "\n")


def choose_postprocessing(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], class_names: Mapping[int, str]
) -> PostprocessChoice:
    """Decide the largest-component filter per class on (prediction, reference) label maps.

    Args:
        pairs: Predicted and reference label maps `(Z, Y, X)` of each case, on one grid; read
            one at a time, so a generator keeps one case in memory.
        class_names: Foreground class id → name: the classes decided.

    Returns:
        The filter is chosen for a class when its mean Dice with it is strictly higher; cases
        where the class is absent from both maps (Dice NaN) are left out of the means.
    """
    ids = sorted(class_names)
    without: dict[int, list[float]] = {c: [] for c in ids}
    with_filter: dict[int, list[float]] = {c: [] for c in ids}
    cases = 0
    for prediction, reference in pairs:
        cases += 1
        for c in ids:
            truth = reference == c
            without[c].append(dice(prediction == c, truth))
            filtered = keep_largest_component(prediction, [c])
            with_filter[c].append(dice(filtered == c, truth))
    choices = []
    for c in ids:
        before, after = _mean(without[c]), _mean(with_filter[c])
        chosen = not math.isnan(before) and after > before
        choices.append(ClassChoice(c, class_names[c], before, after, chosen))
    return PostprocessChoice(tuple(choices), cases)


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def postprocessing_path(path: str | os.PathLike) -> Path:
    """postprocessing.json itself, or the one in a folder (a crossval save_dir or its crossval/)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / POSTPROCESSING_FILE, path / "crossval" / POSTPROCESSING_FILE):
        if candidate.is_file():
            return candidate
    return path / "crossval" / POSTPROCESSING_FILE


def load_largest_component(path: str | os.PathLike, num_classes: int) -> tuple[int, ...]:
    """The chosen `largest_component` ids of a postprocessing.json, checked against the model."""
    path = postprocessing_path(path)
    where = str(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run medseg-crossval --evaluate first, which writes it"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"not valid JSON: {err}", where) from None
    if not isinstance(data, dict) or "largest_component" not in data:
        raise ConfigError("expected a mapping with 'largest_component'", where)
    node = {"largest_component": data["largest_component"]}
    return postprocess_settings(node, num_classes, where).largest_component
