"""Optimizers and learning-rate schedulers built from config; importing registers them."""

from medseg.optim import lr_schedulers, optimizers  # noqa: F401  (registers)
