"""`dataset.json`: the typed description of a preprocessed dataset (torch-free; the only reader).

Written by preparation (`medseg.preprocessing.prepare`), read by `MedicalDataset`, evaluation,
export and the tools. Keys (all optional, so a hand-made or MedicalSeg-era file still loads):

- `name`, `modalities` (one per channel), `labels` (`{"id": name}`), `num_classes`;
- `regions` (region-based training: `[{"name", "labels": [ids]}]` in painting order, see
  `medseg.preprocessing.regions`);
- `recipe` (`Recipe.to_dict()`), `label_rules` (`LabelRules.to_dict()`);
- `seed`, `val_fraction`, `test_fraction`, `splits` (`{"train", "val", "test"}`: case ids),
  `folds` (a list of `{"train", "val"}`), `failed_cases` (`{case: why}`);
- `fingerprint` and `plan` when options were planned from the data (the planner's own dicts);
- `cases`, per case id a `CaseEntry`: `image`, `label` (relative to the dataset folder),
  `source_images`, `source_label` (the raw files, relative to the dataset folder), `record`
  (`PreprocessRecord.to_dict()`, which holds the original geometry) and `hash`.

`records/<case>.json` holds one `CaseEntry` (see `CaseEntry.load`). Unknown keys are kept out
of the typed description and ignored. Errors name the file and the key to fix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.cvlibs.errors import ConfigError
from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.pipeline import PreprocessRecord
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.regions import Regions, optional_regions
from medseg.utils.atomic import write_text_atomic

logger = logging.getLogger(__name__)

FILENAME = "dataset.json"
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class CaseEntry:
    """One prepared case.

    Attributes:
        image: The preprocessed image, relative to the dataset folder (`images/<case>.npy`).
        label: The preprocessed label map, likewise.
        source_images: The raw scan file(s), relative to the dataset folder.
        source_label: The raw label map, relative to the dataset folder (None: not recorded).
        record: What preprocessing did, enough to invert it (None: not recorded).
        hash: What made the arrays (recipe, rules, sources); a rerun skips a case whose hash holds.
    """

    image: str
    label: str
    source_images: tuple[str, ...] = ()
    source_label: str | None = None
    record: PreprocessRecord | None = None
    hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the record as `PreprocessRecord.to_dict()`)."""
        data: dict[str, Any] = {"image": self.image, "label": self.label}
        data["source_images"] = list(self.source_images)
        data["source_label"] = self.source_label
        data["record"] = None if self.record is None else self.record.to_dict()
        data["hash"] = self.hash
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str, key: str) -> CaseEntry:
        """Validate one entry; errors name `where` (the file) and `key` (its dotted key)."""
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {data!r}", where, key)
        for name in ("image", "label"):
            if not isinstance(data.get(name), str):
                raise ConfigError(
                    f"expected a path string, got {data.get(name)!r}", where, key + f".{name}"
                )
        sources = data.get("source_images") or []
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise ConfigError(
                f"expected a list of paths, got {sources!r}", where, f"{key}.source_images"
            )
        source_label = data.get("source_label")
        if source_label is not None and not isinstance(source_label, str):
            raise ConfigError(
                f"expected a path string or null, got {source_label!r}",
                where,
                f"{key}.source_label",
            )
        record = data.get("record")
        if record is not None:
            try:
                record = PreprocessRecord.from_dict(record)
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                raise ConfigError(str(err), where, f"{key}.record") from None
        return cls(
            image=data["image"],
            label=data["label"],
            source_images=tuple(sources),
            source_label=source_label,
            record=record,
            hash=str(data.get("hash") or ""),
        )

    def write(self, path: str | os.PathLike) -> None:
        """Write the entry as `records/<case>.json` (atomically)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CaseEntry | None:
        """A `records/<case>.json`, or None when it is missing or unreadable (not finished)."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()), str(path), "record file")
        except (OSError, json.JSONDecodeError, ConfigError):
            return None


@dataclasses.dataclass(frozen=True)
class DatasetDescription:
    """A validated `dataset.json` (see the module docstring for the keys).

    Attributes:
        root: The dataset folder (where the file lies); relative case paths resolve against it.
        name: Dataset name.
        modalities: One name per input channel.
        labels: Class names by id, background included.
        num_classes: Classes including background as recorded (None: not recorded).
        regions: The regions of region-based training (None: the dataset declares none).
        recipe: The preprocessing recipe (None: not recorded, e.g. a MedicalSeg-made dataset).
        label_rules: How raw label ids became training ids.
        seed: Split seed.
        val_fraction: Share of cases drawn for validation.
        test_fraction: Share of cases drawn for testing.
        splits: Case ids per split ("train", "val", "test").
        folds: Cross-validation folds, each {"train": ids, "val": ids}.
        failed_cases: Cases that could not be prepared, with why.
        fingerprint: The dataset fingerprint the plan was made from (the planner's dict).
        plan: The planned options (the planner's dict).
        cases: The prepared cases by id.
    """

    root: Path | None = dataclasses.field(default=None, compare=False)
    name: str = ""
    modalities: tuple[str, ...] = ()
    labels: dict[int, str] = dataclasses.field(default_factory=dict)
    num_classes: int | None = None
    regions: Regions | None = None
    recipe: Recipe | None = None
    label_rules: LabelRules = dataclasses.field(default_factory=LabelRules)
    seed: int = 0
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    splits: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    folds: tuple[dict[str, tuple[str, ...]], ...] = ()
    failed_cases: dict[str, str] = dataclasses.field(default_factory=dict)
    fingerprint: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    cases: dict[str, CaseEntry] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> Path:
        """Where the file lies (`<root>/dataset.json`)."""
        return Path(self.root or ".") / FILENAME

    def class_names(self, num_classes: int) -> list[str]:
        """`num_classes` names by id; ids without a recorded name are called `class_<id>`."""
        return [self.labels.get(i, f"class_{i}") for i in range(num_classes)]

    def resolve(self, relative: str) -> Path:
        """A path recorded relative to the dataset folder, as a path to open."""
        return Path(self.root or ".") / relative

    def source_image_paths(self, case_id: str) -> list[Path]:
        """The raw scan files of a case, one per channel (empty when not recorded)."""
        entry = self.cases.get(case_id)
        return [] if entry is None else [self.resolve(p) for p in entry.source_images]

    def source_label_path(self, case_id: str) -> Path | None:
        """The raw reference label of a case, or None when not recorded."""
        entry = self.cases.get(case_id)
        if entry is None or entry.source_label is None:
            return None
        return self.resolve(entry.source_label)

    def record(self, case_id: str) -> PreprocessRecord | None:
        """The preprocessing record of a case, or None when not recorded."""
        entry = self.cases.get(case_id)
        return None if entry is None else entry.record

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, keys in the order preparation always wrote them."""
        data: dict[str, Any] = {
            "name": self.name,
            "modalities": list(self.modalities),
            "labels": {str(i): n for i, n in sorted(self.labels.items())},
            "num_classes": len(self.labels) if self.num_classes is None else self.num_classes,
        }
        if self.regions is not None:
            data["regions"] = self.regions.to_list()
        data |= {
            "recipe": None if self.recipe is None else self.recipe.to_dict(),
            "label_rules": self.label_rules.to_dict(),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "splits": {s: list(ids) for s, ids in self.splits.items()},
            "folds": [{s: list(ids) for s, ids in fold.items()} for fold in self.folds],
            "failed_cases": dict(sorted(self.failed_cases.items())),
        }
        if self.fingerprint is not None:
            data["fingerprint"] = self.fingerprint
        if self.plan is not None:
            data["plan"] = self.plan
        data["cases"] = {c: e.to_dict() for c, e in sorted(self.cases.items())}
        return data

    def write(self, root: str | os.PathLike | None = None) -> Path:
        """Write `<root>/dataset.json` atomically (default: `self.root`); returns its path."""
        path = Path(root or self.root or ".") / FILENAME
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str, root: Path | None = None) -> DatasetDescription:
        """Validate a parsed dataset.json; errors name `where` and the key."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"expected a mapping at the top level, got {type(data).__name__}", where
            )
        labels = _labels(data.get("labels"), where)
        return cls(
            root=root,
            name=_string(data, "name", where),
            modalities=_strings(data.get("modalities"), where, "modalities"),
            labels=labels,
            num_classes=_count(data.get("num_classes"), where),
            regions=optional_regions(data.get("regions"), labels or None, where),
            recipe=_recipe(data.get("recipe"), where),
            label_rules=_label_rules(data.get("label_rules"), where),
            seed=_integer(data.get("seed", 0), where, "seed"),
            val_fraction=_fraction(data.get("val_fraction", 0.0), where, "val_fraction"),
            test_fraction=_fraction(data.get("test_fraction", 0.0), where, "test_fraction"),
            splits=_split_lists(data.get("splits"), where, "splits", SPLITS),
            folds=_folds(data.get("folds"), where),
            failed_cases=_failed(data.get("failed_cases"), where),
            fingerprint=_optional_mapping(data.get("fingerprint"), where, "fingerprint"),
            plan=_optional_mapping(data.get("plan"), where, "plan"),
            cases=_cases(data.get("cases"), where),
        )


def load_description(
    path: str | os.PathLike, missing_ok: bool = False, root: str | os.PathLike | None = None
) -> DatasetDescription:
    """Read and validate a dataset.json (`path` is the file or its folder).

    Args:
        path: The file (a `.json`), or the dataset folder holding it.
        missing_ok: Return an empty description when the file is absent, as for a dataset
            prepared by hand with only the list files.
        root: The dataset folder the case paths are relative to (default: the file's folder).

    Raises:
        FileNotFoundError: when the file is absent and not `missing_ok`.
        ConfigError: naming the file and key, when it is not valid JSON or a value is wrong.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() != ".json":
        path = path / FILENAME
    if not path.is_file():
        if missing_ok:
            return DatasetDescription(root=Path(root or path.parent))
        raise FileNotFoundError(f"dataset description not found: {path} (written by preparation)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"not valid JSON: {err}", str(path)) from None
    return DatasetDescription.from_dict(data, str(path), Path(root or path.parent))


def read_class_names(path: str | os.PathLike) -> dict[int, str]:
    """Class names by id from a dataset.json in any layout, or a bare `labels` mapping.

    Both directions are understood: medseg/MSD `{"1": "liver"}` and nnU-Net v2 `{"liver": 1}`.
    The regions of nnU-Net's region-based training (`{"whole_tumour": [1, 2, 3]}`) name no single
    id; they are skipped with a warning.

    Raises:
        ValueError: naming the file, when it is not JSON or holds no usable mapping.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as JSON ({err})") from None
    labels = data.get("labels", data) if isinstance(data, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f'{path}: expected a `labels` mapping such as {{"1": "liver"}}')
    names: dict[int, str] = {}
    regions = []
    for key, value in labels.items():
        if isinstance(key, str) and key.strip().isdigit():
            names[int(key)] = str(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            names[value] = str(key)
        elif isinstance(value, list):
            regions.append(str(key))
        else:
            raise ValueError(
                f"{path}: label entry {key!r}: {value!r} is neither id → name nor name → id"
            )
    if regions:
        logger.warning("%s: region labels %s name no single id; skipped", path, regions)
    if not names:
        raise ValueError(f"{path}: no label entry maps an id to a name: {dict(labels)}")
    return dict(sorted(names.items()))


def _string(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {value!r}", where, key)
    return value


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"expected a list of strings, got {value!r}", where, key)
    return tuple(value)


def _labels(value: Any, where: str) -> dict[int, str]:
    value = value or {}
    if not isinstance(value, dict):
        raise ConfigError(f'expected a mapping {{"id": name}}, got {value!r}', where, "labels")
    try:
        return {int(k): str(v) for k, v in sorted(value.items(), key=lambda kv: int(kv[0]))}
    except (TypeError, ValueError):
        raise ConfigError(
            f"class ids must be integers, got {list(value)}", where, "labels"
        ) from None


def _integer(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer, got {value!r}", where, key)
    return value


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if _integer(value, where, "num_classes") < 1:
        raise ConfigError(f"expected a positive integer, got {value!r}", where, "num_classes")
    return value


def _fraction(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"expected a number in [0, 1), got {value!r}", where, key)
    return float(value)


def _recipe(value: Any, where: str) -> Recipe | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {value!r}", where, "recipe")
    try:
        return Recipe.from_dict(value)
    except ValueError as err:
        raise ConfigError(str(err), where, "recipe") from None


def _label_rules(value: Any, where: str) -> LabelRules:
    if value is None:
        return LabelRules()
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {value!r}", where, "label_rules")
    try:
        return LabelRules(
            label_map={int(k): int(v) for k, v in (value.get("label_map") or {}).items()},
            ignore_labels=tuple(int(i) for i in value.get("ignore_labels") or ()),
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err), where, "label_rules") from None


def _split_lists(
    value: Any, where: str, key: str, names: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    value = value or {}
    if not isinstance(value, dict) or not set(value) <= set(names):
        raise ConfigError(
            f"expected a mapping with keys among {list(names)}, got {value!r}", where, key
        )
    return {s: _strings(ids, where, f"{key}.{s}") for s, ids in value.items()}


def _folds(value: Any, where: str) -> tuple[dict[str, tuple[str, ...]], ...]:
    value = value or []
    if not isinstance(value, list):
        raise ConfigError(f"expected a list of folds, got {value!r}", where, "folds")
    return tuple(
        _split_lists(fold, where, f"folds.{k}", ("train", "val")) for k, fold in enumerate(value)
    )


def _failed(value: Any, where: str) -> dict[str, str]:
    value = value or {}
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping {{case: why}}, got {value!r}", where, "failed_cases")
    return {str(c): str(why) for c, why in value.items()}


def _optional_mapping(value: Any, where: str, key: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {value!r}", where, key)
    return value


def _cases(value: Any, where: str) -> dict[str, CaseEntry]:
    value = value or {}
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping {{case id: entry}}, got {value!r}", where, "cases")
    return {str(c): CaseEntry.from_dict(e, where, f"cases.{c}") for c, e in value.items()}
