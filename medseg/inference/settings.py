"""Sliding-window settings: the `inference:` mapping of a config or deploy.yaml (torch-free)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from medseg.cvlibs.errors import ConfigError, checked
from medseg.utils.vocabulary import int_triple, positive_int

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

    def window_arguments(self) -> dict[str, Any]:
        """The keyword arguments of `sliding_window_slabs` and `sliding_window_inference`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """Plain types for YAML/JSON."""
        data = asdict(self)
        data["patch_size"] = list(self.patch_size)
        data["tta_axes"] = list(self.tta_axes)
        return data


def inference_settings(
    node: Any,
    path: str | None = None,
    default_patch: Any = None,
    default_tta_axes: tuple[int, ...] = (),
) -> InferenceSettings:
    """Validate an `inference:` mapping into `InferenceSettings`, with errors naming the key.

    Args:
        node: The mapping (None or empty: every default).
        path: Where it was written (a file, or the `--opts` entry), for error messages.
        default_patch: Window size when the mapping sets none (a config's training patch).
        default_tta_axes: Mirror axes when the mapping sets no `tta_axes` (e.g. `MIRROR_AXES`).
    """
    if node is not None and not isinstance(node, dict):
        raise ConfigError(f"expected a mapping, got {node!r}", path, "inference")
    node = dict(node or {})
    patch = node.pop("patch_size", None) or default_patch
    if patch is None:
        raise ConfigError(
            "no window size: set inference.patch_size or crop in train_dataset.transforms",
            path,
            "inference.patch_size",
        )
    try:
        overlap = float(node.pop("overlap", 0.5))
    except (TypeError, ValueError):
        overlap = -1.0
    if not 0 <= overlap < 1:
        raise ConfigError("expected a number with 0 <= overlap < 1", path, "inference.overlap")
    tta_axes = node.pop("tta_axes", None)
    tta_axes = tuple(default_tta_axes) if tta_axes is None else tuple(tta_axes)
    if not all(a in (0, 1, 2) for a in tta_axes):
        raise ConfigError(
            f"expected spatial axes among 0, 1, 2 (z, y, x), got {list(tta_axes)}",
            path,
            "inference.tta_axes",
        )
    settings = InferenceSettings(
        patch_size=checked(int_triple, patch, path, "inference.patch_size"),
        overlap=overlap,
        batch_size=checked(positive_int, node.pop("batch_size", 1), path, "inference.batch_size"),
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
