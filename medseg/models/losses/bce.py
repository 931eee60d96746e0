"""Binary cross-entropy on logits, for one foreground channel or multi-label one-hot outputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.cvlibs.registry import LOSSES
from medseg.models.losses.computation import check_inputs, encode_targets


@LOSSES.register()
class BCELoss(nn.Module):
    """Sigmoid binary cross-entropy, averaged over the channels of every non-ignored voxel.

    With one output channel the target is `label > 0` (foreground vs background); with C > 1
    channels it is the one-hot label map, each channel an independent yes/no; in region-based
    training (`regions`, set from the training data by `build_losses`) channel r is region r.
    If every voxel is ignored the loss is 0.

    Args:
        ignore_index: Label id that contributes nothing, or None.
        pos_weight: Weight of the positive term, one number or one per channel
            (e.g. `negatives / positives` to balance a rare foreground), or None.
    """

    def __init__(
        self, ignore_index: int | None = None, pos_weight: float | Sequence[float] | None = None
    ):
        super().__init__()
        self.ignore_index = ignore_index
        self.regions = None  # medseg.preprocessing.regions.Regions in region-based training
        if pos_weight is None or isinstance(pos_weight, int | float):
            self.pos_weight = pos_weight
        else:
            self.pos_weight = [float(w) for w in pos_weight]

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Return the scalar loss for `(N, C, *spatial)` logits and `(N, *spatial)` labels."""
        name = type(self).__name__
        check_inputs(logits, labels, name)
        logits = logits.float()
        num_classes = logits.shape[1]
        target, mask = encode_targets(
            labels, num_classes, self.ignore_index, logits.dtype, name, self.regions
        )
        loss = F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=self._pos_weight(logits), reduction="none"
        )
        count = mask.sum() * num_classes
        return (loss * mask).sum() / torch.where(count > 0, count, torch.ones_like(count))

    def _pos_weight(self, logits: Tensor) -> Tensor | None:
        """Return `pos_weight` shaped `(C, 1, ..., 1)` to broadcast over the logits."""
        if self.pos_weight is None:
            return None
        weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        if weight.ndim == 1 and weight.numel() != logits.shape[1]:
            raise ValueError(
                f"BCELoss: pos_weight has {weight.numel()} entries but the logits have "
                f"{logits.shape[1]} channels"
            )
        return weight.reshape(-1, *([1] * (logits.ndim - 2)))
