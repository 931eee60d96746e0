"""Optimizers and learning-rate schedulers built from config; importing registers them."""

from medseg.optim import lr_schedulers, optimizers  # noqa: F401  (registers)
from medseg.optim.builder import build_lr_scheduler, build_optimizer

__all__ = ["build_lr_scheduler", "build_optimizer"]
