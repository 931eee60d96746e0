"""What a user asks of dataset preparation (values may be "auto"), and turning it into a recipe.

The same keys work on the command line of every `tools/prepare_*.py` and in a YAML file passed
with `--options`:

- `target_spacing`: `[z, y, x]` mm, "auto" (planned) or null (keep each case's spacing).
- `patch_size`: `[z, y, x]` voxels or "auto" (planned; used by the generated config).
- `normalization`: "auto" (CT window for CT channels, z-score for the others), "ct", "zscore",
  "none", or a list with one of these per channel.
- `ct_window`: `[lo, hi]` HU or "auto" (foreground 0.5 / 99.5 percentiles of the dataset).
- `crop`: "nonzero" (crop each case to its nonzero bounding box), `{"threshold": t, "margin": m}`
  (the box of `image > t`, widened by m voxels) or null.
- `orientation`: "LPS" or null; `image_order`: 1 (linear, default) or 3 (cubic);
  `label_interpolation`: "nearest" or "onehot".
- `max_patch_voxels`: memory budget of the planned patch (voxels); `patch_divisor`: 16.
- `label_map`: `{raw id: new id}`; `ignore_labels`: raw ids set to 255 (skipped by the losses).
- `use_gpu`: resample with CuPy when a GPU is usable.
- `geometry_tolerance`: how far (mm, and direction cosines) a case's label and channels may
  differ in spacing, origin and direction and still count as one grid (default 1e-3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.io import GEOMETRY_TOLERANCE
from medseg.preprocessing.planning import (
    DEFAULT_DIVISOR,
    DEFAULT_MAX_VOXELS,
    plan_ct_window,
    plan_patch_size,
    plan_spacing,
    resampled_median_shape,
)
from medseg.preprocessing.recipe import Recipe

AUTO = "auto"
NORMALIZATIONS = ("auto", "ct", "zscore", "none")


def _triple_or(value: Any, key: str, kind: type, words: tuple) -> Any:
    if value in words:
        return value
    if isinstance(value, (list, tuple)) and len(value) == 3:
        try:
            items = [kind(v) for v in value]
        except (TypeError, ValueError):
            items = []
        if len(items) == 3 and all(v > 0 for v in items):
            return items
    accepted = " or ".join([f"3 positive {kind.__name__}s (z, y, x)", *map(repr, words)])
    raise ValueError(f"option '{key}': got {value!r}; accepted: {accepted}")


def _positive(value: float) -> bool:
    return value > 0


def _check_type(
    value: Any,
    name: str,
    kind: type | tuple[type, ...],
    expected: str,
    valid: Callable[[Any], bool] = lambda _: True,
) -> None:
    """Raise a ValueError naming option `name` unless `value` is a `kind` and `valid`.

    YAML's `true` is not accepted where a number is expected (bool is an int in Python).
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    bool_slip = isinstance(value, bool) and bool not in kinds
    if not isinstance(value, kinds) or bool_slip or not valid(value):
        raise ValueError(f"option '{name}': got {value!r}; accepted: {expected}")


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    """Preparation settings; see the module docstring for each key."""

    target_spacing: Any = AUTO
    patch_size: Any = AUTO
    normalization: Any = AUTO
    ct_window: Any = AUTO
    crop: str | dict | None = "nonzero"
    orientation: str | None = "LPS"
    image_order: int = 1
    label_interpolation: str = "nearest"
    max_patch_voxels: int = DEFAULT_MAX_VOXELS
    patch_divisor: int = DEFAULT_DIVISOR
    label_map: dict = dataclasses.field(default_factory=dict)
    ignore_labels: tuple = ()
    use_gpu: bool = False
    geometry_tolerance: float = GEOMETRY_TOLERANCE

    def __post_init__(self) -> None:
        check = object.__setattr__
        check(
            self,
            "target_spacing",
            _triple_or(self.target_spacing, "target_spacing", float, (AUTO, None)),
        )
        check(self, "patch_size", _triple_or(self.patch_size, "patch_size", int, (AUTO,)))
        names = (
            self.normalization
            if isinstance(self.normalization, (list, tuple))
            else [self.normalization]
        )
        if not names or any(n not in NORMALIZATIONS for n in names):
            raise ValueError(
                f"option 'normalization': got {self.normalization!r}; accepted: one of "
                f"{list(NORMALIZATIONS)} or a list of them (one per channel)"
            )
        window = self.ct_window
        if window != AUTO and not (
            isinstance(window, (list, tuple))
            and len(window) == 2
            and float(window[0]) < float(window[1])
        ):
            raise ValueError(
                f"option 'ct_window': got {window!r}; accepted: [lo, hi] with lo < hi, or 'auto'"
            )
        if self.crop not in ("nonzero", None) and not isinstance(self.crop, dict):
            raise ValueError(
                f"option 'crop': got {self.crop!r}; accepted: 'nonzero', "
                "{'threshold': t, 'margin': m} or null"
            )
        if isinstance(self.crop, dict):
            try:
                Recipe(crop=self.crop)
            except ValueError as err:
                raise ValueError(f"option 'crop': {err}") from None
        _check_type(self.use_gpu, "use_gpu", bool, "true or false")
        _check_type(
            self.geometry_tolerance, "geometry_tolerance", (int, float), "mm > 0", _positive
        )
        _check_type(
            self.image_order, "image_order", int, "a spline order 0-5", lambda v: 0 <= v <= 5
        )
        for name in ("max_patch_voxels", "patch_divisor"):
            _check_type(getattr(self, name), name, int, "a positive integer", _positive)
        _check_type(self.label_map, "label_map", dict, "a mapping {raw id: new id}")
        _check_type(self.ignore_labels, "ignore_labels", (list, tuple), "a list of ids, e.g. [4]")
        LabelRules(self.label_map, self.ignore_labels)  # validates the ids

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "options") -> PrepareOptions:
        """Build from a YAML/CLI dict; unknown keys raise a ValueError naming them."""
        data = dict(data or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown option(s) {unknown}; accepted: {known}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe dict."""
        out = dataclasses.asdict(self)
        out["label_map"] = {int(k): int(v) for k, v in self.label_map.items()}
        out["ignore_labels"] = list(self.ignore_labels)
        return out

    @property
    def label_rules(self) -> LabelRules:
        """The label remapping and ignore rules."""
        return LabelRules(self.label_map, self.ignore_labels)

    def normalization_names(self, modalities: Sequence[str]) -> list[str]:
        """Per channel: "ct", "zscore" or "none" ("auto" decided by the modality)."""
        names = self.normalization
        if not isinstance(names, (list, tuple)):
            names = [names] * len(modalities)
        if len(names) != len(modalities):
            raise ValueError(
                f"option 'normalization' lists {len(names)} entries for {len(modalities)} "
                f"channel(s) {list(modalities)}"
            )
        return [
            ("ct" if m.upper() == "CT" else "zscore") if n == AUTO else n
            for n, m in zip(names, modalities, strict=True)
        ]

    def needs_fingerprint(self, modalities: Sequence[str]) -> bool:
        """True when something is "auto" and must be planned from the data."""
        auto_window = self.ct_window == AUTO and "ct" in self.normalization_names(modalities)
        return AUTO in (self.target_spacing, self.patch_size) or auto_window

    def base_recipe(self) -> Recipe:
        """The recipe parts that do not depend on the data (used for fingerprinting)."""
        return Recipe(
            orientation=self.orientation,
            crop=self.crop,
            image_order=self.image_order,
            label_interpolation=self.label_interpolation,
        )

    def resolve(
        self, modalities: Sequence[str], fingerprint: dict[str, Any] | None
    ) -> tuple[Recipe, dict[str, Any]]:
        """The recipe and the plan (what was decided and from what) for this dataset."""
        if fingerprint is None and self.needs_fingerprint(modalities):
            raise ValueError("an 'auto' option needs the dataset fingerprint")
        spacing = self.target_spacing
        if spacing == AUTO:
            spacing = plan_spacing(fingerprint["spacings"])
        specs = []
        for channel, name in enumerate(self.normalization_names(modalities)):
            if name == "ct":
                window = self.ct_window
                if window == AUTO:
                    window = plan_ct_window(fingerprint, channel)
                specs.append({"type": "ct", "window": [float(w) for w in window]})
            else:
                specs.append({"type": {"zscore": "zscore_nonzero", "none": "none"}[name]})
        patch = self.patch_size
        median_shape = resampled_median_shape(fingerprint, spacing) if fingerprint else None
        if patch == AUTO:
            patch = plan_patch_size(
                median_shape,
                spacing or fingerprint["median_spacing"],
                self.max_patch_voxels,
                self.patch_divisor,
            )
        recipe = dataclasses.replace(
            self.base_recipe(),
            target_spacing=spacing,
            normalization=specs if len(specs) > 1 else specs[0],
        )
        plan = {
            "target_spacing": None if spacing is None else list(spacing),
            "patch_size": list(patch),
            "median_shape_after_resampling": median_shape,
            "normalization": specs,
            "max_patch_voxels": self.max_patch_voxels,
            "patch_divisor": self.patch_divisor,
            "options": self.to_dict(),
        }
        return recipe, plan
