"""`model_info.json`: what a model folder (`best_model/`, `iter_N/`) holds for inference.

Torch-free.

Written by training beside the weights, read by export.py, so a model exports on any machine
from its own folder, without the preprocessed dataset. Keys: `medseg_version`, `input_channels`,
`num_classes`, `modalities` (one name per channel), `classes` (`{id: name}`), `recipe` (the
preprocessing recipe, `Recipe.to_dict()`, or null when the dataset recorded none), `inference`
(sliding-window settings), `postprocess` (`largest_component`) and `regions` (the regions of a
region-trained model, or null), as in deploy.yaml, and `fold` (only for a model trained with
`train.py --fold k`: the cross-validation fold).

Checkpoints written before this file existed still load: `model_info_for` falls back to the
config and the training dataset's dataset.json, with a log line saying so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from medseg import __version__
from medseg.cvlibs.errors import ConfigError
from medseg.inference.deploy_config import check_keys, class_names, model_positive_int
from medseg.inference.postprocess import postprocess_settings
from medseg.inference.settings import InferenceSettings, inference_settings
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.regions import Regions, optional_regions
from medseg.utils.atomic import write_text_atomic

logger = logging.getLogger(__name__)

MODEL_INFO_FILE = "model_info.json"
KEYS = (
    "medseg_version",
    "input_channels",
    "num_classes",
    "modalities",
    "classes",
    "recipe",
    "inference",
    "postprocess",
    "regions",
    "fold",
)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A validated model_info.json.

    Attributes:
        input_channels: Channels the model takes.
        num_classes: Classes of the label maps it predicts, background included.
        modalities: One name per input channel.
        classes: Class names by id, 0 .. num_classes - 1.
        recipe: The training data's preprocessing, or None when the dataset recorded none.
        inference: Sliding-window settings of the training config.
        largest_component: Class ids post-processed to their largest connected component.
        medseg_version: Version that wrote the file.
        regions: The regions it predicts, one output channel each (None: one per class).
        fold: The cross-validation fold it was trained on, or None.
    """

    input_channels: int
    num_classes: int
    modalities: tuple[str, ...]
    classes: dict[int, str]
    recipe: Recipe | None
    inference: InferenceSettings
    largest_component: tuple[int, ...] = ()
    medseg_version: str = __version__
    regions: Regions | None = None
    fold: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (class ids as strings, JSON's only key type)."""
        data = {
            "medseg_version": self.medseg_version,
            "input_channels": self.input_channels,
            "num_classes": self.num_classes,
            "modalities": list(self.modalities),
            "classes": {str(k): v for k, v in self.classes.items()},
            "recipe": None if self.recipe is None else self.recipe.to_dict(),
            "inference": self.inference.to_dict(),
            "postprocess": {"largest_component": list(self.largest_component)},
            "regions": None if self.regions is None else self.regions.to_list(),
        }
        if self.fold is not None:
            data["fold"] = self.fold
        return data

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps(self.to_dict(), indent=2)

    def write(self, folder: str | os.PathLike) -> None:
        """Write `<folder>/model_info.json` atomically."""
        write_text_atomic(Path(folder) / MODEL_INFO_FILE, self.to_json())

    @classmethod
    def from_config(cls, cfg: Any, model: Any, fold: int | None = None) -> ModelInfo:
        """Collect the facts from a training config and its model (reads dataset.json)."""
        from medseg.cvlibs import DATASETS

        dataset = DATASETS.build(cfg.train_dataset)
        description, regions = dataset.description, dataset.regions
        num_classes = model.num_classes if regions is None else dataset.num_classes
        return cls(
            input_channels=model.in_channels,
            num_classes=num_classes,
            modalities=tuple(description.modalities),
            classes=dict(enumerate(description.class_names(num_classes))),
            recipe=description.recipe,
            inference=cfg.inference,
            largest_component=cfg.postprocess.largest_component,
            regions=regions,
            fold=fold,
        )


def load_model_info(path: str | os.PathLike) -> ModelInfo:
    """Read and validate model_info.json (or the one in a model folder); errors name the key."""
    path = Path(path)
    path = path / MODEL_INFO_FILE if path.is_dir() else path
    where = str(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"not valid JSON: {err}", where) from None
    check_keys(data, KEYS, where)
    channels = model_positive_int(data, "input_channels", where, prefix="")
    num_classes = model_positive_int(data, "num_classes", where, prefix="")
    modalities = data.get("modalities")
    if not isinstance(modalities, list) or len(modalities) not in (0, channels):
        raise ConfigError(f"expected {channels} name(s), got {modalities!r}", where, "modalities")
    if not isinstance(data.get("classes"), dict):
        raise ConfigError(f"expected {{id: name}}, got {data.get('classes')!r}", where, "classes")
    classes = class_names(data, num_classes, where)
    try:
        recipe = None if data.get("recipe") is None else Recipe.from_dict(data["recipe"])
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err), where, "recipe") from None
    return ModelInfo(
        input_channels=channels,
        num_classes=num_classes,
        modalities=tuple(str(m) for m in modalities),
        classes=classes,
        recipe=recipe,
        inference=inference_settings(data.get("inference") or {}, where),
        largest_component=postprocess_settings(
            data.get("postprocess"), num_classes, where
        ).largest_component,
        medseg_version=str(data.get("medseg_version", "")),
        regions=optional_regions(data.get("regions"), range(num_classes), where),
        fold=_fold(data.get("fold"), where),
    )


def _fold(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"expected a fold number >= 0, got {value!r}", where, "fold")
    return value


def model_info_for(model_path: str | os.PathLike, cfg: Any, model: Any) -> ModelInfo:
    """The model folder's model_info.json, or (older checkpoints) the config's and dataset's."""
    path = Path(model_path)
    folder = path if path.is_dir() else path.parent
    if (folder / MODEL_INFO_FILE).is_file():
        return load_model_info(folder)
    logger.info(
        "%s has no %s (saved before model folders were self-contained): reading the recipe, "
        "labels and modalities from the training dataset's dataset.json",
        folder,
        MODEL_INFO_FILE,
    )
    return ModelInfo.from_config(cfg, model)
