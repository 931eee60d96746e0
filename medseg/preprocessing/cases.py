"""Raw cases on disk: their files, the label rules, and reading one case with every check.

`load_case` is the one place where a raw case is read for preparation or fingerprinting: the
channels must share one grid, the label map must lie on that grid (within a tolerance) and hold
only declared ids, after `LabelRules` remapped and ignored what the user asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.preprocessing.io import GEOMETRY_TOLERANCE, Geometry, read_case, read_volume
from medseg.preprocessing.regions import Regions
from medseg.utils.vocabulary import IGNORE_INDEX, label_dtype


@dataclasses.dataclass(frozen=True)
class CaseFiles:
    """The raw files of one case: one image per channel (or one 4D file) and the label map."""

    images: tuple[Path, ...]
    label: Path


@dataclasses.dataclass(frozen=True)
class RawDataset:
    """A raw dataset found on disk.

    Attributes:
        name: Dataset name.
        modalities: One name per channel (e.g. ["CT"] or ["FLAIR", "T1w", "t1gd", "T2w"]).
        labels: Class names by id, consecutive from 0 (background).
        cases: Raw files by case id.
        problems: Cases that cannot be prepared (e.g. an image without its label), with why.
        ignore_labels: Raw ids the dataset itself marks "not annotated" (nnU-Net's `ignore`
            label); they become `IGNORE_INDEX` like the `ignore_labels` option.
        regions: The regions of region-based training over the (final) label ids, written
            into dataset.json (`medseg.preprocessing.regions.Regions`), or None.
    """

    name: str
    modalities: list[str]
    labels: dict[int, str]
    cases: dict[str, CaseFiles]
    problems: dict[str, str] = dataclasses.field(default_factory=dict)
    ignore_labels: tuple[int, ...] = ()
    regions: Regions | None = None


def check_labels(labels: Mapping[int, str], source: str) -> dict[int, str]:
    """Validate class names by id: ids consecutive from 0 with at least one foreground class."""
    ids = sorted(int(i) for i in labels)
    if ids != list(range(len(ids))) or len(ids) < 2:
        raise ValueError(
            f"{source}: label ids must be consecutive from 0 (background) with at least one "
            f"foreground class, got {ids}"
        )
    return {i: str(labels[i]) for i in ids}


@dataclasses.dataclass(frozen=True)
class LabelRules:
    """How raw label ids become training ids.

    Attributes:
        label_map: Raw id -> new id (e.g. {2: 1} merges a tumour into its organ); ids not
            listed keep their value.
        ignore_labels: Raw ids set to `IGNORE_INDEX` (255), which the losses skip.
    """

    label_map: dict[int, int] = dataclasses.field(default_factory=dict)
    ignore_labels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_map", {int(k): int(v) for k, v in self.label_map.items()})
        object.__setattr__(self, "ignore_labels", tuple(sorted(int(i) for i in self.ignore_labels)))
        both = sorted(set(self.label_map) & set(self.ignore_labels))
        if both:
            raise ValueError(f"label ids {both} are both remapped and ignored; choose one")
        bad = [v for v in (*self.label_map, *self.label_map.values()) if not 0 <= v < IGNORE_INDEX]
        if bad:
            raise ValueError(f"label_map ids must lie in [0, {IGNORE_INDEX}), got {bad}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (keys as strings)."""
        return {
            "label_map": {str(k): v for k, v in sorted(self.label_map.items())},
            "ignore_labels": list(self.ignore_labels),
            "ignore_index": IGNORE_INDEX if self.ignore_labels else None,
        }

    def new_id(self, raw: int) -> int:
        """The training id of a raw id (`IGNORE_INDEX` for an ignored one)."""
        return IGNORE_INDEX if raw in self.ignore_labels else self.label_map.get(raw, raw)

    def remap(self, label: np.ndarray) -> np.ndarray:
        """Raw ids to training ids, unchecked (the input itself when there is nothing to do)."""
        if not (self.label_map or self.ignore_labels):
            return label
        raw_ids = np.unique(label).tolist()
        out = label.astype(label_dtype(max([*raw_ids, IGNORE_INDEX], default=0)))
        for raw in raw_ids:
            new = self.new_id(raw)
            if new != raw:
                out[label == raw] = new
        return out

    def apply(self, label: np.ndarray, declared: Sequence[int], source: Path) -> np.ndarray:
        """Remap and ignore ids, then check that only declared ids (and 255 if used) remain."""
        raw_ids = np.unique(label).tolist()
        out = self.remap(label)
        allowed = set(declared) | ({IGNORE_INDEX} if self.ignore_labels else set())
        unexpected = sorted(raw for raw in raw_ids if self.new_id(raw) not in allowed)
        if unexpected:
            raise ValueError(
                f"{source}: label ids {unexpected} are not declared (declared: {list(declared)}"
                + (f", remapped: {self.label_map}" if self.label_map else "")
                + (f", ignored: {list(self.ignore_labels)}" if self.ignore_labels else "")
                + ")"
            )
        return out


def read_label(path: Path) -> tuple[np.ndarray, Geometry]:
    """Read a label map; float-stored maps must hold whole numbers."""
    label, geometry = read_volume(path)
    if label.dtype.kind == "f":
        rounded = np.rint(label)
        if not np.array_equal(rounded, label):
            raise ValueError(f"{path}: label map holds non-integer values")
        label = rounded.astype(np.int32)
    if label.size and label.min() < 0:
        raise ValueError(f"{path}: label map holds negative ids (min {label.min()})")
    return label, geometry


def load_case(
    case: str,
    files: CaseFiles,
    declared: Sequence[int],
    rules: LabelRules,
    num_channels: int,
    tol: float = GEOMETRY_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Read and check one case: a float32 (C, Z, Y, X) image, its label map and its geometry."""
    image, geometry = read_case(files.images, tol)
    if image.shape[0] != num_channels:
        raise ValueError(
            f"case '{case}': {num_channels} channel(s) expected, {files.images} hold "
            f"{image.shape[0]}"
        )
    label, label_geometry = read_label(files.label)
    problem = geometry.mismatch(label_geometry, tol)
    if problem is not None:
        raise ValueError(f"case '{case}': {files.images[0]} and {files.label} disagree: {problem}")
    return image, rules.apply(label, declared, files.label), geometry
