"""Load the models of an ensemble (val.py, export.py) and check that they agree.

The ensembling itself (probabilities averaged) is `CasePipeline`'s, given several predictors.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from medseg.cvlibs import MODELS, Config
from medseg.engine.checkpoint import load_model_weights, model_config
from medseg.inference.model_info import ModelInfo, model_info_for

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One model of an ensemble with the config it is built from.

    Attributes:
        path: Its model.pth or model folder, as given.
        cfg: `--config` if given, else the config it was trained with, `--opts` applied.
        model: The network with its weights, on the CPU.
        info: Its model_info.json (recipe, classes, modalities), when it was checked.
    """

    path: str
    cfg: Config
    model: torch.nn.Module
    info: ModelInfo | None = None


def check_ensemble(facts: Mapping[str, Mapping[str, Any]]) -> None:
    """Every model of an ensemble must agree on what it takes and predicts.

    Args:
        facts: Model name (e.g. its path) → its facts (recipe, classes, modalities, patch,
            ...), compared key by key with the first model's.

    Raises:
        ValueError: naming the first model that differs, the key and both values.
    """
    items = list(facts.items())
    if not items:
        return
    first_name, first = items[0]
    for name, other in items[1:]:
        for key, value in first.items():
            if other.get(key) != value:
                raise ValueError(
                    f"the models of an ensemble must agree on {key}: {first_name} has "
                    f"{value!r}, {name} has {other.get(key)!r}"
                )


def _facts(loaded: LoadedModel) -> dict[str, Any]:
    info = loaded.info
    assert info is not None
    return {
        "input_channels": info.input_channels,
        "classes": dict(info.classes),
        "modalities": tuple(info.modalities),
        "recipe": None if info.recipe is None else info.recipe.to_dict(),
        "regions": None if info.regions is None else info.regions.to_list(),
        "inference.patch_size": tuple(loaded.cfg.inference_settings().patch_size),
    }


def load_models(
    config: str | None, paths: Sequence[str | os.PathLike], opts: Sequence[str] = ()
) -> list[LoadedModel]:
    """Build and load every model; several must agree on recipe, classes, channels and patch.

    Raises:
        ValueError: naming the model and the key where two models of the ensemble differ.
    """
    loaded = []
    for path in paths:
        cfg = Config(model_config(config, path), opts=list(opts))
        model = MODELS.build(cfg.model)
        load_model_weights(model, path)
        info = model_info_for(path, cfg, model) if len(paths) > 1 else None
        loaded.append(LoadedModel(str(path), cfg, model, info))
    if len(loaded) > 1:
        check_ensemble({m.path: _facts(m) for m in loaded})
        if len({repr(m.cfg.val_dataset) for m in loaded}) > 1:
            logger.warning(
                "the ensemble's models were validated on different cases (their val_dataset "
                "differ, e.g. cross-validation folds); validation uses %s's val_dataset, on "
                "which the other models may have trained",
                loaded[0].path,
            )
    return loaded
