"""Seconds per training iteration of a config on this machine, measured, for sizing a run.

The preparation tools time a few real steps (the config's model, loss and optimizer on one
batch of the prepared data) to size the CPU plan's iterations to a time budget and to tell the
user what a run will cost before it starts.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from medseg.cvlibs import Config
from medseg.engine.trainer import Trainer, TrainOptions


def seconds_per_iteration(
    config: str | Path, device: torch.device, steps: int = 2, warmup: int = 1
) -> float:
    """Median time of `steps` training steps after `warmup` untimed ones (same batch each)."""
    cfg = Config(config)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(cfg, TrainOptions(Path(folder), device))
        trainer.net.train()
        images, labels, _ = next(iter(trainer._loader()))
        images, labels = images.to(device), labels.to(device)
        times = []
        for index in range(warmup + steps):
            start = time.perf_counter()
            trainer._step(images, labels)  # loss.item() inside: the device is synchronised
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
