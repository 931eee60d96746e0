"""`Config`: a resolved YAML config as data, with typed accessors; registries build from it.

`Config` reads and validates; it builds nothing. Objects come from the registries and the
builders that own their rules (mmengine's split)::

    cfg = Config("configs/phantom/vnet_phantom.yml", opts=["iters=20"])
    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataset)
    losses = build_losses(cfg.loss, ignore_index=dataset.ignore_index)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.learning_rate)
    scheduler = build_lr_scheduler(cfg.lr_scheduler, optimizer, cfg.iters)

Torch-free: nothing heavy is imported until a registry builds.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import yaml

from medseg.cvlibs.config_file import apply_opts, load_config_dict, resolve_data_root
from medseg.cvlibs.errors import ConfigError, checked
from medseg.cvlibs.sources import ConfigNode, Sources
from medseg.utils.vocabulary import did_you_mean, positive_int, positive_number

logger = logging.getLogger(__name__)

# Scheduler arguments that hold the schedule's length; `--iters` carries them along.
SCHEDULE_LENGTH_KEYS = ("decay_steps", "T_max")


# Top-level keys a config may hold: MedicalSeg's (so its configs load unchanged; `export` and
# `test_config` are accepted and unused) and medseg's `inference` and `postprocess`.
TOP_LEVEL_KEYS = (
    "batch_size",
    "iters",
    "data_root",
    "train_dataset",
    "val_dataset",
    "test_dataset",
    "model",
    "loss",
    "optimizer",
    "lr_scheduler",
    "export",
    "test_config",
    "inference",
    "postprocess",
)


class Config:
    r"""A MedicalSeg-compatible config file with its `_base_` chain and overrides applied.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.yml"
    >>> _ = path.write_text("iters: 100\nbatch_size: 2\nmodel: {type: VNet, num_classes: 3}\n")
    >>> cfg = Config(path, opts=["model.num_classes=2"], iters=50)
    >>> cfg.iters, cfg.model["num_classes"], cfg.model.key
    (50, 2, 'model')
    >>> try:
    ...     Config(path, opts=["iter=5"])
    ... except ConfigError as err:
    ...     print(err)
    in --opts 'iter=5' at key 'iter': unknown top-level key; did you mean 'iters'? (accepted: ...)

    Section accessors (`model`, `loss`, ...) return a deep-copied `ConfigNode` (a dict that
    knows its key and where each value came from), so building never changes the config.

    Args:
        path: The YAML file.
        opts: `key.sub=value` overrides (values parsed as YAML, list items by index).
        learning_rate: Overrides `lr_scheduler.learning_rate` (train.py's flag).
        batch_size: Overrides `batch_size`.
        iters: Overrides `iters`; a scheduler length equal to the old `iters` follows it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        opts: list[str] | None = None,
        learning_rate: float | None = None,
        batch_size: int | None = None,
        iters: int | None = None,
    ):
        self.path = str(path)
        files: dict[str, str] = {}
        data = load_config_dict(path, files)
        self.sources = Sources(self.path, files, {})
        self._check_top_level(data)  # before --opts: a file's misspelling names the file
        self.sources.overrides.update(apply_opts(data, opts))
        self._check_top_level(data)
        self._apply_flag_overrides(data, learning_rate, batch_size, iters)
        resolve_data_root(data)
        self._data = data

    def _check_top_level(self, data: dict[str, Any]) -> None:
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                raise ConfigError(
                    f"unknown top-level key{did_you_mean(key, TOP_LEVEL_KEYS)} "
                    f"(accepted: {', '.join(TOP_LEVEL_KEYS)})",
                    self.sources.of(key),
                    key,
                )

    def _apply_flag_overrides(
        self,
        data: dict[str, Any],
        learning_rate: float | None,
        batch_size: int | None,
        iters: int | None,
    ) -> None:
        overrides = self.sources.overrides
        if batch_size is not None:
            data["batch_size"] = batch_size
            overrides["batch_size"] = f"--batch_size {batch_size}"
        if learning_rate is not None:
            data.setdefault("lr_scheduler", {})["learning_rate"] = learning_rate
            overrides["lr_scheduler.learning_rate"] = f"--learning_rate {learning_rate}"
        if iters is not None:
            scheduler = data.get("lr_scheduler") or {}
            for key in SCHEDULE_LENGTH_KEYS:
                if key in scheduler and scheduler[key] == data.get("iters"):
                    logger.info(
                        "lr_scheduler.%s follows --iters: %s -> %s", key, scheduler[key], iters
                    )
                    scheduler[key] = iters
                    overrides[f"lr_scheduler.{key}"] = f"--iters {iters}"
            data["iters"] = iters
            overrides["iters"] = f"--iters {iters}"

    def where(self, key: str) -> str | None:
        """Where `key` was set: the file of the `_base_` chain, or the override."""
        return self.sources.of(key)

    def node(self, key: str, required: bool = True) -> ConfigNode | None:
        """A deep copy of the mapping at top-level `key` (None when absent and not required)."""
        value = self._data.get(key)
        if value is None:
            if required:
                raise ConfigError("missing required key", self.where(key), key)
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", self.where(key), key)
        return ConfigNode(copy.deepcopy(value), key, self.sources)

    @property
    def batch_size(self) -> int:
        """Samples per training step (per process)."""
        return checked(positive_int, self._data.get("batch_size"), *self._at("batch_size"))

    @property
    def iters(self) -> int:
        """Total training iterations."""
        return checked(positive_int, self._data.get("iters"), *self._at("iters"))

    def _at(self, key: str) -> tuple[str | None, str]:
        if self._data.get(key) is None:
            raise ConfigError("missing required key", self.where(key), key)
        return self.where(key), key

    @property
    def model(self) -> ConfigNode:
        """The network's node (`model:`), for `MODELS.build`."""
        return self.node("model")

    @property
    def train_dataset(self) -> ConfigNode:
        """The training dataset's node, for `DATASETS.build`."""
        return self.node("train_dataset")

    @property
    def val_dataset(self) -> ConfigNode | None:
        """The validation dataset's node, or None when the config has none."""
        return self.node("val_dataset", required=False)

    @property
    def test_dataset(self) -> ConfigNode | None:
        """The test dataset's node, or None when the config has none."""
        return self.node("test_dataset", required=False)

    @property
    def loss(self) -> ConfigNode:
        """MedicalSeg's `loss: {types: [...], coef: [...]}` node, for `build_losses`."""
        return self.node("loss")

    @property
    def optimizer(self) -> ConfigNode:
        """The optimizer's node, for `build_optimizer`."""
        return self.node("optimizer")

    @property
    def lr_scheduler(self) -> ConfigNode:
        """The learning-rate scheduler's node, for `build_lr_scheduler`."""
        return self.node("lr_scheduler")

    @property
    def learning_rate(self) -> float:
        """The base learning rate (`lr_scheduler.learning_rate`, else `optimizer.learning_rate`)."""
        for section in ("lr_scheduler", "optimizer"):
            node = self._data.get(section) or {}
            if isinstance(node, dict) and "learning_rate" in node:
                key = f"{section}.learning_rate"
                return checked(positive_number, node["learning_rate"], self.where(key), key)
        raise ConfigError(
            "missing required key", self.where("lr_scheduler"), "lr_scheduler.learning_rate"
        )

    @property
    def grad_clip_norm(self) -> float | None:
        """Maximum gradient norm (`optimizer.grad_clip_norm`), or None for no clipping."""
        value = (self._data.get("optimizer") or {}).get("grad_clip_norm")
        if value is None:
            return None
        key = "optimizer.grad_clip_norm"
        return checked(positive_number, value, self.where(key), key)

    @property
    def inference(self) -> Any:
        """The sliding-window settings as written (`inference_settings()` with no defaults)."""
        return self.inference_settings()

    def inference_settings(self, default_tta_axes: tuple[int, ...] = ()) -> Any:
        """The sliding-window settings (`inference:`; the window defaults to the training patch).

        Args:
            default_tta_axes: Mirror axes when the config sets no `inference.tta_axes`
                (val.py and export.py pass `MIRROR_AXES`; training evaluation does not).

        Returns:
            `medseg.inference.settings.InferenceSettings`.
        """
        from medseg.inference.settings import inference_settings
        from medseg.transforms import training_patch

        node = self.node("inference", required=False)
        transforms = (self._data.get("train_dataset") or {}).get("transforms")
        return inference_settings(
            node, self.where("inference"), training_patch(transforms), default_tta_axes
        )

    @property
    def postprocess(self) -> Any:
        """What is done to predictions (`postprocess:`), ids checked against `model.num_classes`.

        Returns:
            `medseg.inference.postprocess.PostprocessSettings`.
        """
        from medseg.inference.postprocess import postprocess_settings

        num_classes = (self._data.get("model") or {}).get("num_classes")
        if not isinstance(num_classes, int):
            num_classes = None
        node = self.node("postprocess", required=False)
        return postprocess_settings(node, num_classes, self.where("postprocess"))

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the resolved config."""
        return copy.deepcopy(self._data)

    def to_yaml(self) -> str:
        """The fully resolved config as YAML text."""
        return yaml.safe_dump(self._data, sort_keys=False)

    def dump(self, path: str | os.PathLike) -> None:
        """Write the fully resolved config as YAML (atomically)."""
        from medseg.utils.atomic import write_text_atomic

        write_text_atomic(path, self.to_yaml())

    def __repr__(self) -> str:
        return f"Config({self.path!r})"
