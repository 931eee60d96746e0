"""`deploy.yaml`: everything the onnxruntime runner needs beside `model.onnx` (torch-free).

Written by `export.py`, read by `deploy/python/infer.py`. Keys:

- `medseg_version`: the version that exported the model.
- `model`: `file` (ONNX file name, relative to deploy.yaml's folder; or `files`, a list of them:
  an ensemble, e.g. cross-validation folds, whose probabilities are averaged), `output` ("logits" or
  "probabilities": what the graph returns per window), `input_channels`, `num_classes`, `opset`,
  `precision` ("fp32", or "fp16" for `export.py --fp16`: float16 inside, float32 in and out;
  optional, default fp32).
- `modalities`: one name per input channel, in channel order (`<case>_0000` is the first).
- `classes`: `{id: name}` for ids 0 (background) .. num_classes − 1.
- `regions` (optional, region-based training): `[{"name", "labels": [ids]}]`; the graph then
  returns one sigmoid channel per region (logits, or probabilities after the sigmoid) and the
  runner paints them back to label ids in order (`medseg.preprocessing.regions`).
- `recipe`: the preprocessing recipe of the training data (`Recipe.to_dict()`).
- `inference`: sliding-window settings, same keys as a training config's `inference:`.
- `postprocess`: `largest_component`: class ids whose prediction is reduced to its largest
  connected component (empty: none).
- `source` (optional, informational): the config and weights the model was exported from.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from medseg.cvlibs.errors import ConfigError, checked
from medseg.inference.postprocess import postprocess_settings
from medseg.inference.settings import InferenceSettings, inference_settings
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.regions import Regions, optional_regions
from medseg.utils.atomic import write_text_atomic
from medseg.utils.vocabulary import positive_int

OUTPUT_KINDS = ("logits", "probabilities")
MODEL_KEYS = ("file", "files", "output", "input_channels", "num_classes", "opset", "precision")
PRECISIONS = ("fp32", "fp16")
TOP_KEYS = (
    "medseg_version",
    "model",
    "modalities",
    "classes",
    "regions",
    "recipe",
    "inference",
    "postprocess",
    "source",
)


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    """A validated deploy.yaml.

    Attributes:
        model_path: The ONNX file (absolute, resolved against deploy.yaml's folder); the first
            of an ensemble.
        output: "logits" or "probabilities": what the graph returns.
        input_channels: Channels the model takes.
        num_classes: Classes of the label maps it predicts, background included.
        opset: ONNX opset of the graph.
        precision: "fp32" or "fp16" (weights and activations; inputs and outputs are float32).
        modalities: One name per input channel.
        classes: Class names by id.
        recipe: The training data's preprocessing.
        inference: Sliding-window settings.
        regions: The regions a region-trained graph returns, one channel each (None: one
            channel per class).
        largest_component: Class ids post-processed to their largest connected component.
        medseg_version: Version that wrote the file.
        source: Free-form provenance (config and weights exported).
        model_paths: Every ONNX file of an ensemble, `model_path` first (default: it alone).
    """

    model_path: Path
    output: str
    input_channels: int
    num_classes: int
    opset: int
    modalities: tuple[str, ...]
    classes: dict[int, str]
    recipe: Recipe
    inference: InferenceSettings
    precision: str = "fp32"
    largest_component: tuple[int, ...] = ()
    medseg_version: str = ""
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    regions: Regions | None = None
    model_paths: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.model_paths:
            object.__setattr__(self, "model_paths", (self.model_path,))
        elif self.model_paths[0] != self.model_path:
            raise ValueError("model_paths must start with model_path")

    def channel_names(self) -> list[str]:
        """The name of each output channel: the regions', else the classes' in id order."""
        if self.regions is not None:
            return list(self.regions.names)
        return [self.classes[i] for i in range(self.num_classes)]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict; model files are stored by name (they sit beside deploy.yaml)."""
        regions = {} if self.regions is None else {"regions": self.regions.to_list()}
        names = [p.name for p in self.model_paths]
        return {
            "medseg_version": self.medseg_version,
            "model": {
                **({"file": names[0]} if len(names) == 1 else {"files": names}),
                "output": self.output,
                "input_channels": self.input_channels,
                "num_classes": self.num_classes,
                "opset": self.opset,
                "precision": self.precision,
            },
            "modalities": list(self.modalities),
            "classes": dict(self.classes),
            **regions,
            "recipe": self.recipe.to_dict(),
            "inference": self.inference.to_dict(),
            "postprocess": {"largest_component": list(self.largest_component)},
            "source": dict(self.source),
        }

    def write(self, path: str | os.PathLike) -> None:
        """Write deploy.yaml atomically."""
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def model_positive_int(node: dict[str, Any], key: str, path: str, prefix: str = "model.") -> int:
    """`node[key]` as a positive int; the error names the file and `prefix + key`."""
    return checked(positive_int, node.get(key), path, f"{prefix}{key}")


def check_keys(data: Any, accepted: tuple[str, ...], path: str, key: str | None = None) -> dict:
    """`data` if it is a mapping of `accepted` keys only; else an error naming the file."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", path, key)
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; accepted: {list(accepted)}", path, key)
    return data


def _mapping(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"expected a mapping, got {value!r}", path, key)
    return value


def class_names(data: dict[str, Any], num_classes: int, path: str) -> dict[int, str]:
    """`data["classes"]` as `{id: name}` for ids 0 .. num_classes - 1 exactly."""
    node = _mapping(data, "classes", path)
    try:
        classes = {int(k): str(v) for k, v in node.items()}
    except ValueError:
        raise ConfigError(
            f"class ids must be integers, got {list(node)}", path, "classes"
        ) from None
    if sorted(classes) != list(range(num_classes)):
        raise ConfigError(
            f"expected ids 0..{num_classes - 1} (model.num_classes = {num_classes}), "
            f"got {sorted(classes)}",
            path,
            "classes",
        )
    return classes


def _model_files(model: dict[str, Any], path: Path) -> tuple[Path, ...]:
    """`model.file`, or the list `model.files`, as existing absolute paths."""
    where = str(path)
    if ("file" in model) == ("files" in model):
        raise ConfigError("expected exactly one of 'file' and 'files'", where, "model")
    key = "file" if "file" in model else "files"
    names = [model["file"]] if key == "file" else model["files"]
    if not isinstance(names, list) or not names:
        raise ConfigError(f"expected a list of file names, got {names!r}", where, "model.files")
    paths = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"expected a file name, got {name!r}", where, f"model.{key}")
        resolved = (path.parent / name).resolve()
        if not resolved.is_file():
            raise FileNotFoundError(f"{where}: model.{key} {name!r} not found at {resolved}")
        paths.append(resolved)
    return tuple(paths)


def load_deploy_config(path: str | os.PathLike) -> DeployConfig:
    """Read and validate deploy.yaml; every error names the file and the key to fix."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"deploy config not found: {path} (written by export.py)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", where) from None
    check_keys(data, TOP_KEYS, where)
    model = check_keys(_mapping(data, "model", where), MODEL_KEYS, where, "model")
    if model.get("output") not in OUTPUT_KINDS:
        raise ConfigError(
            f"expected one of {list(OUTPUT_KINDS)}, got {model.get('output')!r} (the runner "
            "blends windows, so the graph must not end in an argmax)",
            where,
            "model.output",
        )
    model_paths = _model_files(model, path)
    precision = model.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(
            f"expected one of {list(PRECISIONS)}, got {precision!r}", where, "model.precision"
        )
    input_channels = model_positive_int(model, "input_channels", where)
    num_classes = model_positive_int(model, "num_classes", where)

    modalities = data.get("modalities")
    if not isinstance(modalities, list) or len(modalities) != input_channels:
        raise ConfigError(
            f"expected a list of {input_channels} name(s) (model.input_channels), got "
            f"{modalities!r}",
            where,
            "modalities",
        )
    try:
        recipe = Recipe.from_dict(_mapping(data, "recipe", where))
    except ValueError as err:
        raise ConfigError(str(err), where, "recipe") from None
    return DeployConfig(
        model_path=model_paths[0],
        model_paths=model_paths,
        output=model["output"],
        input_channels=input_channels,
        num_classes=num_classes,
        opset=model_positive_int(model, "opset", where),
        precision=precision,
        modalities=tuple(str(m) for m in modalities),
        classes=class_names(data, num_classes, where),
        recipe=recipe,
        inference=inference_settings(_mapping(data, "inference", where), where),
        largest_component=postprocess_settings(
            data.get("postprocess"), num_classes, where
        ).largest_component,
        medseg_version=str(data.get("medseg_version", "")),
        source=dict(data.get("source") or {}),
        regions=optional_regions(data.get("regions"), range(num_classes), where),
    )
