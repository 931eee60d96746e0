"""`Config`: a resolved YAML config whose properties build the training components."""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import os
from typing import Any

import yaml

from medseg.cvlibs.builder import build
from medseg.cvlibs.config_file import apply_opts, load_config_dict, resolve_data_root
from medseg.cvlibs.errors import ConfigError
from medseg.cvlibs.registry import DATASETS, LOSSES, LR_SCHEDULERS, MODELS, OPTIMIZERS

logger = logging.getLogger(__name__)

SCHEDULE_LENGTH_KEYS = ("decay_steps", "T_max")


def _register_builtins() -> None:
    """Import the packages whose modules fill the registries (torch is imported here)."""
    import medseg.datasets
    import medseg.models
    import medseg.optim
    import medseg.transforms  # noqa: F401


class Config:
    """A MedicalSeg-compatible config file with its `_base_` chain and overrides applied.

    Properties build their objects once and cache them; building never changes `dic`.

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
        dic = load_config_dict(path)
        apply_opts(dic, opts, self.path)
        self._apply_flag_overrides(dic, learning_rate, batch_size, iters)
        self.data_root = dic.get("data_root")
        resolve_data_root(dic)
        self.dic = dic

    def _apply_flag_overrides(
        self,
        dic: dict[str, Any],
        learning_rate: float | None,
        batch_size: int | None,
        iters: int | None,
    ) -> None:
        if batch_size is not None:
            dic["batch_size"] = batch_size
        if learning_rate is not None:
            dic.setdefault("lr_scheduler", {})["learning_rate"] = learning_rate
        if iters is not None:
            scheduler = dic.get("lr_scheduler") or {}
            for key in SCHEDULE_LENGTH_KEYS:
                if key in scheduler and scheduler[key] == dic.get("iters"):
                    logger.info(
                        "lr_scheduler.%s follows --iters: %s -> %s", key, scheduler[key], iters
                    )
                    scheduler[key] = iters
            dic["iters"] = iters

    def _node(self, key: str, required: bool = True) -> Any:
        if key not in self.dic or self.dic[key] is None:
            if required:
                raise ConfigError("missing required key", path=self.path, key=key)
            return None
        return copy.deepcopy(self.dic[key])

    def _positive_int(self, key: str) -> int:
        value = self._node(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"expected a positive integer, got {value!r}", self.path, key)
        return value

    @property
    def batch_size(self) -> int:
        """Samples per training step (per process)."""
        return self._positive_int("batch_size")

    @property
    def iters(self) -> int:
        """Total training iterations."""
        return self._positive_int("iters")

    @functools.cached_property
    def model(self) -> Any:
        """The network (`model:`)."""
        node = self._node("model")
        _register_builtins()
        return build(node, MODELS, "model", self.path)

    def _dataset(self, key: str, required: bool) -> Any:
        node = self._node(key, required)
        if node is None:
            return None
        _register_builtins()
        return build(node, DATASETS, key, self.path)

    @functools.cached_property
    def train_dataset(self) -> Any:
        """The training dataset (`train_dataset:`)."""
        return self._dataset("train_dataset", required=True)

    @functools.cached_property
    def val_dataset(self) -> Any:
        """The validation dataset, or None when the config has none."""
        return self._dataset("val_dataset", required=False)

    @functools.cached_property
    def test_dataset(self) -> Any:
        """The test dataset, or None when the config has none."""
        return self._dataset("test_dataset", required=False)

    @functools.cached_property
    def loss(self) -> dict[str, list]:
        """`{"types": [loss modules], "coef": [floats]}` (MedicalSeg's `loss:` semantics).

        A loss that does not set `ignore_index` takes the training dataset's.
        """
        from medseg.models.losses import set_default_ignore_index

        node = self._node("loss")
        if not isinstance(node, dict) or not isinstance(node.get("types"), list):
            raise ConfigError("expected {types: [...], coef: [...]}", self.path, "loss")
        coef = node.get("coef", [1.0] * len(node["types"]))
        if not isinstance(coef, list) or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in coef
        ):
            raise ConfigError(f"expected a list of numbers, got {coef!r}", self.path, "loss.coef")
        _register_builtins()
        types = [
            build(item, LOSSES, f"loss.types.{i}", self.path)
            for i, item in enumerate(node["types"])
        ]
        ignore_index = self.train_ignore_index
        for loss in types:
            set_default_ignore_index(loss, ignore_index)
        return {"types": types, "coef": [float(c) for c in coef]}

    @property
    def train_ignore_index(self) -> int | None:
        """The training dataset's `ignore_index` as configured (or its class default)."""
        node = self._node("train_dataset", required=False) or {}
        if "ignore_index" in node:
            return node["ignore_index"]
        if "type" not in node:
            return None
        _register_builtins()
        try:
            param = inspect.signature(DATASETS.get(node["type"])).parameters.get("ignore_index")
        except KeyError:
            return None
        return None if param is None or param.default is inspect.Parameter.empty else param.default

    def _optimizer_node(self) -> dict[str, Any]:
        node = self._node("optimizer")
        if not isinstance(node, dict) or "type" not in node:
            raise ConfigError("expected a mapping with a 'type' key", self.path, "optimizer")
        node.pop("grad_clip_norm", None)
        return node

    @property
    def learning_rate(self) -> float:
        """The base learning rate (`lr_scheduler.learning_rate`, else `optimizer.learning_rate`)."""
        for key in ("lr_scheduler", "optimizer"):
            node = self.dic.get(key) or {}
            if "learning_rate" in node:
                return float(node["learning_rate"])
        raise ConfigError("missing required key", self.path, "lr_scheduler.learning_rate")

    @functools.cached_property
    def optimizer(self) -> Any:
        """The optimizer over the model's trainable parameters."""
        node = self._optimizer_node()
        node.pop("learning_rate", None)
        params = [p for p in self.model.parameters() if p.requires_grad]
        return build(
            node,
            OPTIMIZERS,
            "optimizer",
            self.path,
            params=params,
            learning_rate=self.learning_rate,
        )

    @property
    def grad_clip_norm(self) -> float | None:
        """Maximum gradient norm (`optimizer.grad_clip_norm`), or None for no clipping."""
        value = (self.dic.get("optimizer") or {}).get("grad_clip_norm")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(
                f"expected a positive number, got {value!r}", self.path, "optimizer.grad_clip_norm"
            )
        return float(value)

    @functools.cached_property
    def lr_scheduler(self) -> Any:
        """The per-iteration learning-rate scheduler wrapping `optimizer`."""
        node = self._node("lr_scheduler")
        _register_builtins()
        if isinstance(node, dict) and node.get("type") in LR_SCHEDULERS:
            params = inspect.signature(LR_SCHEDULERS.get(node["type"])).parameters
            for key in SCHEDULE_LENGTH_KEYS:
                if key in params and key not in node:
                    node[key] = self.iters  # MedicalSeg's default: decay over the whole run
        return build(node, LR_SCHEDULERS, "lr_scheduler", self.path, optimizer=self.optimizer)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the resolved config."""
        return copy.deepcopy(self.dic)

    def to_yaml(self) -> str:
        """The fully resolved config as YAML text."""
        return yaml.safe_dump(self.dic, sort_keys=False)

    def dump(self, path: str | os.PathLike) -> None:
        """Write the fully resolved config as YAML (atomically)."""
        from medseg.utils.atomic import write_text_atomic

        write_text_atomic(path, self.to_yaml())

    def __repr__(self) -> str:
        return f"Config({self.path!r})"
