"""Voxel-wise softmax cross-entropy with optional class weights and an ignored label."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medseg.cvlibs.registry import LOSSES
from medseg.models.losses.computation import check_inputs, check_label_range, keep_mask


@LOSSES.register()
class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over the voxels that are not ignored.

    With `weight`, the mean is weighted: `sum_v w[y_v] * ce_v / sum_v w[y_v]`. Unlike
    MedicalSeg, `weight=None` means unweighted, never weights guessed from the predictions.
    If every voxel is ignored the loss is 0 (not NaN).

    Args:
        weight: One weight per class, or None.
        ignore_index: Label id that contributes nothing, or None.
    """

    def __init__(self, weight: Sequence[float] | None = None, ignore_index: int | None = None):
        super().__init__()
        self.weight = None if weight is None else [float(w) for w in weight]
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Return the scalar loss for `(N, C, *spatial)` logits and `(N, *spatial)` labels."""
        name = type(self).__name__
        check_inputs(logits, labels, name)
        num_classes = logits.shape[1]
        check_label_range(labels, num_classes, self.ignore_index, name)
        labels = labels.long()
        keep = keep_mask(labels, self.ignore_index)
        safe = torch.where(keep, labels, torch.zeros_like(labels))
        logits = logits.float()
        if self.weight is None:
            weight = None
            count = keep.sum().to(logits.dtype)
        else:
            if len(self.weight) != num_classes:
                raise ValueError(
                    f"{name}: weight has {len(self.weight)} entries but the logits have "
                    f"{num_classes} classes"
                )
            weight = torch.tensor(self.weight, dtype=logits.dtype, device=logits.device)
            count = (weight[safe] * keep).sum()
        total = F.cross_entropy(logits, safe, weight=weight, reduction="none") * keep
        return total.sum() / torch.where(count > 0, count, torch.ones_like(count))
