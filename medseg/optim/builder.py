"""Build the optimizer and the learning-rate scheduler from their config nodes.

The MedicalSeg rules live here: `optimizer.grad_clip_norm` is the trainer's (not an optimizer
argument), the learning rate is the scheduler's, and a schedule without a length decays over
the whole run. A warm-up longer than half the run is shortened, so the rate reaches its value
and decays within a short run (`--iters 60` on a config planned for 15,000 iterations).
"""

from __future__ import annotations

import copy
import inspect
import logging
from typing import Any

import torch

from medseg.cvlibs.config import SCHEDULE_LENGTH_KEYS
from medseg.cvlibs.errors import ConfigError
from medseg.cvlibs.registry import LR_SCHEDULERS, OPTIMIZERS
from medseg.cvlibs.sources import ConfigNode, Sources

logger = logging.getLogger(__name__)

TRAINER_KEYS = ("grad_clip_norm", "learning_rate")  # read by the trainer, not the optimizer


def _as_node(node: Any, key: str) -> ConfigNode:
    """A copy of `node` to adjust (the caller's stays as it is), keeping its sources."""
    if not isinstance(node, dict):
        raise ConfigError(f"expected a mapping with a 'type' key, got {node!r}", key=key)
    if isinstance(node, ConfigNode):
        return ConfigNode(copy.deepcopy(dict(node)), node.key, node.sources)
    return ConfigNode(copy.deepcopy(node), key, Sources())


def build_optimizer(
    node: Any, model: torch.nn.Module, learning_rate: float
) -> torch.optim.Optimizer:
    """The optimizer over `model`'s trainable parameters, from an `optimizer:` node."""
    node = _as_node(node, "optimizer")
    for key in TRAINER_KEYS:
        node.pop(key, None)
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS.build(node, params=params, learning_rate=learning_rate)


def build_lr_scheduler(
    node: Any, optimizer: torch.optim.Optimizer, iters: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-iteration scheduler of a run of `iters` iterations, from an `lr_scheduler:` node.

    A missing `decay_steps`/`T_max` becomes `iters` (MedicalSeg's default); a `warmup_iters`
    above `iters // 2` becomes `iters // 10`, with a warning naming the key.
    """
    node = _as_node(node, "lr_scheduler")
    if node.get("type") in LR_SCHEDULERS:
        params = inspect.signature(LR_SCHEDULERS.get(node["type"])).parameters
        for key in SCHEDULE_LENGTH_KEYS:
            if key in params and key not in node:
                node[key] = iters
    warmup = node.get("warmup_iters")
    if isinstance(warmup, int) and not isinstance(warmup, bool) and warmup > iters // 2:
        node["warmup_iters"] = iters // 10
        logger.warning(
            "lr_scheduler.warmup_iters %d (%s) is longer than half of the run's %d iterations: "
            "using %d, so the rate reaches its value and decays within the run",
            warmup,
            node.where("lr_scheduler.warmup_iters"),
            iters,
            iters // 10,
        )
    return LR_SCHEDULERS.build(node, optimizer=optimizer)
