"""Segmentation losses; importing this package registers them in LOSSES."""

from medseg.models.losses.bce import BCELoss
from medseg.models.losses.builder import build_losses
from medseg.models.losses.computation import loss_computation
from medseg.models.losses.cross_entropy import CrossEntropyLoss
from medseg.models.losses.deep_supervision import deep_supervision_weights
from medseg.models.losses.dice import DiceLoss
from medseg.models.losses.mixed import MixedLoss, set_default_ignore_index

__all__ = [
    "BCELoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "MixedLoss",
    "build_losses",
    "deep_supervision_weights",
    "loss_computation",
    "set_default_ignore_index",
]
