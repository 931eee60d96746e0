"""Sliding-window settings read from a config's `inference:` key (torch-free; used by deploy)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from medseg.cvlibs.errors import ConfigError

PATCH_TRANSFORMS = ("RandomCrop3D", "RandomResizedCrop3D", "Resize3D")
# Mirroring along every spatial axis: what val.py and export.py (hence the deploy runner) use
# when the config sets no `inference.tta_axes` (nnU-Net's default); training-time evaluation
# does not mirror unless the config says so.
MIRROR_AXES = (0, 1, 2)


@dataclass(frozen=True)
class InferenceSettings:
    """How whole volumes are predicted: window size, overlap, blending and test-time flips."""

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    batch_size: int = 1
    gaussian: bool = True
    tta_axes: tuple[int, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Plain types for YAML/JSON."""
        data = asdict(self)
        data["patch_size"] = list(self.patch_size)
        data["tta_axes"] = list(self.tta_axes)
        return data


def _as_triple(value: Any, key: str, path: str | None) -> tuple[int, int, int]:
    triple = [value] * 3 if isinstance(value, int) else value
    if (
        not isinstance(triple, (list, tuple))
        or len(triple) != 3
        or not all(isinstance(v, int) and v > 0 for v in triple)
    ):
        raise ConfigError(f"expected an int or 3 positive ints (z, y, x), got {value!r}", path, key)
    return tuple(triple)


def _patch_from_transforms(config: dict[str, Any]) -> Any:
    """The training crop size, the natural window size when `inference.patch_size` is not set."""
    transforms = (config.get("train_dataset") or {}).get("transforms") or []
    for transform in transforms:
        if isinstance(transform, dict) and transform.get("type") in PATCH_TRANSFORMS:
            return transform.get("size", transform.get("shape"))
    return None


def inference_settings(
    config: dict[str, Any], path: str | None = None, default_tta_axes: tuple[int, ...] = ()
) -> InferenceSettings:
    """Build `InferenceSettings` from a resolved config dict, with errors naming the key.

    `default_tta_axes` applies when the config has no `inference.tta_axes` (e.g. `MIRROR_AXES`).
    """
    node = dict(config.get("inference") or {})
    patch = node.pop("patch_size", None) or _patch_from_transforms(config)
    if patch is None:
        raise ConfigError(
            "no window size: set inference.patch_size or crop in train_dataset.transforms",
            path,
            "inference.patch_size",
        )
    overlap = float(node.pop("overlap", 0.5))
    if not 0 <= overlap < 1:
        raise ConfigError(f"expected 0 <= overlap < 1, got {overlap}", path, "inference.overlap")
    batch_size = node.pop("batch_size", 1)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(
            f"expected a positive int, got {batch_size!r}", path, "inference.batch_size"
        )
    tta_axes = node.pop("tta_axes", None)
    tta_axes = tuple(default_tta_axes) if tta_axes is None else tuple(tta_axes)
    if not all(a in (0, 1, 2) for a in tta_axes):
        raise ConfigError(
            f"expected spatial axes among 0, 1, 2 (z, y, x), got {list(tta_axes)}",
            path,
            "inference.tta_axes",
        )
    settings = InferenceSettings(
        patch_size=_as_triple(patch, "inference.patch_size", path),
        overlap=overlap,
        batch_size=batch_size,
        gaussian=bool(node.pop("gaussian", True)),
        tta_axes=tta_axes,
    )
    if node:
        raise ConfigError(
            f"unknown key(s) {sorted(node)}; accepted: patch_size, overlap, batch_size, gaussian, "
            "tta_axes",
            path,
            "inference",
        )
    return settings


def with_tta(settings: InferenceSettings, tta: bool) -> InferenceSettings:
    """`settings` as they are (`tta`), or without mirroring."""
    return settings if tta else replace(settings, tta_axes=())


def add_tta_arguments(parser: argparse.ArgumentParser) -> None:
    """`--tta` (the default) and `--no_tta`, into `args.tta`; val.py and the deploy runner."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--tta",
        dest="tta",
        action="store_true",
        default=True,
        help="mirror at test time, the default: inference.tta_axes, or every axis where the "
        "config sets none (evaluation during training does not mirror)",
    )
    group.add_argument(
        "--no_tta", dest="tta", action="store_false", help="predict without mirroring"
    )
