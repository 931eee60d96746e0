"""The preprocessing recipe: what to do to every case, validated, JSON/YAML round-trippable.

Keys (all optional):

- `orientation`: "LPS" (permute/flip axes to the canonical order) or null (leave as stored).
- `crop`: "nonzero", `{"threshold": float | null, "margin": int}` (foreground is
  `image > threshold`, null meaning `!= 0`) or null (no crop).
- `target_spacing`: `[z, y, x]` in mm, or null (keep the spacing).
- `image_order`: 1 (linear) or 3 (cubic) for images.
- `label_interpolation`: "nearest" or "onehot" (linear per class, then argmax).
- `normalization`: one spec for every channel or a list with one spec per channel, each
  `{"type": "ct", "window": [lo, hi]}`, `{"type": "zscore_nonzero"}` or `{"type": "none"}`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from medseg.preprocessing.intensity import NORMALIZATION_TYPES
from medseg.preprocessing.resample import IMAGE_ORDERS, LABEL_METHODS

ORIENTATIONS = ("LPS", None)


def _bad(key: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"recipe key '{key}': got {value!r}; accepted: {accepted}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_crop(value: Any) -> dict[str, Any] | None:
    accepted = "'nonzero', {'threshold': float or null, 'margin': int >= 0}, or null"
    if value is None:
        return None
    if value == "nonzero":
        return {"threshold": None, "margin": 0}
    if not isinstance(value, dict) or not set(value) <= {"threshold", "margin"}:
        raise _bad("crop", value, accepted)
    threshold, margin = value.get("threshold"), value.get("margin", 0)
    if threshold is not None and not _number(threshold):
        raise _bad("crop.threshold", threshold, "a number or null")
    if not isinstance(margin, int) or isinstance(margin, bool) or margin < 0:
        raise _bad("crop.margin", margin, "an integer >= 0")
    return {"threshold": None if threshold is None else float(threshold), "margin": margin}


def _check_spacing(value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _bad("target_spacing", value, "[z, y, x] with 3 positive numbers (mm), or null")
    if not all(_number(v) and v > 0 for v in value):
        raise _bad("target_spacing", value, "[z, y, x] with 3 positive numbers (mm), or null")
    return tuple(float(v) for v in value)


def _check_normalization_spec(spec: Any, key: str) -> dict[str, Any]:
    if not isinstance(spec, dict) or spec.get("type") not in NORMALIZATION_TYPES:
        raise _bad(key, spec, f"a dict whose 'type' is one of {list(NORMALIZATION_TYPES)}")
    allowed = {"type", "window"} if spec["type"] == "ct" else {"type"}
    if not set(spec) <= allowed:
        raise _bad(key, spec, f"only the keys {sorted(allowed)} for type {spec['type']!r}")
    if spec["type"] == "ct":
        window = spec.get("window")
        if (
            not isinstance(window, (list, tuple))
            or len(window) != 2
            or not all(_number(v) for v in window)
            or not window[0] < window[1]
        ):
            raise _bad(f"{key}.window", window, "[lo, hi] with lo < hi (HU)")
        return {"type": "ct", "window": [float(window[0]), float(window[1])]}
    return {"type": spec["type"]}


def _check_normalization(value: Any) -> dict[str, Any] | list[dict[str, Any]]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise _bad("normalization", value, "a spec dict or a non-empty list of them")
        return [_check_normalization_spec(s, f"normalization[{i}]") for i, s in enumerate(value)]
    return _check_normalization_spec(value, "normalization")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How every case of a dataset is preprocessed (see the module docstring for the keys)."""

    orientation: str | None = "LPS"
    crop: dict[str, Any] | None = dataclasses.field(
        default_factory=lambda: {"threshold": None, "margin": 0}
    )
    target_spacing: tuple[float, float, float] | None = None
    image_order: int = 3
    label_interpolation: str = "nearest"
    normalization: dict[str, Any] | list[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: {"type": "none"}
    )

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise _bad("orientation", self.orientation, "'LPS' or null")
        if type(self.image_order) is not int or self.image_order not in IMAGE_ORDERS:
            raise _bad("image_order", self.image_order, " or ".join(map(str, IMAGE_ORDERS)))
        if self.label_interpolation not in LABEL_METHODS:
            raise _bad("label_interpolation", self.label_interpolation, str(list(LABEL_METHODS)))
        object.__setattr__(self, "crop", _check_crop(self.crop))
        object.__setattr__(self, "target_spacing", _check_spacing(self.target_spacing))
        object.__setattr__(self, "normalization", _check_normalization(self.normalization))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Recipe:
        """Build and validate a recipe; unknown keys raise a ValueError naming them."""
        data = dict(data or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown recipe key(s) {unknown}; accepted keys: {known}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict that `from_dict` turns back into an equal recipe."""
        out = dataclasses.asdict(self)
        if self.target_spacing is not None:
            out["target_spacing"] = list(self.target_spacing)
        return out

    def normalization_specs(self, num_channels: int) -> list[dict[str, Any]]:
        """One normalisation spec per channel."""
        if isinstance(self.normalization, dict):
            return [self.normalization] * num_channels
        if len(self.normalization) != num_channels:
            raise ValueError(
                f"recipe key 'normalization' lists {len(self.normalization)} spec(s) but the image "
                f"has {num_channels} channel(s)"
            )
        return list(self.normalization)
