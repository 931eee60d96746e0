"""Soft Dice loss over classes, per sample or over the whole batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medseg.cvlibs.registry import LOSSES
from medseg.models.losses.computation import check_inputs, encode_targets


@LOSSES.register()
class DiceLoss(nn.Module):
    """`1 - mean soft Dice` with `dice_c = (2 sum p*g + smooth) / (sum p + sum g + smooth)`.

    `p` are softmax probabilities (sigmoid per channel with `sigmoid_norm`), `g` the one-hot
    labels (with a single sigmoid channel: `label > 0`, and `include_background` does not
    apply); voxels equal to `ignore_index` are dropped from every sum. Per-sample dice
    (default) sums over each sample's voxels and averages over samples and classes; batch dice
    sums over the whole batch first (nnU-Net's `batch_dice`), which is steadier when a class is
    absent from some patches. A class absent from both prediction and labels scores 1. In
    region-based training (`regions`, set from the training data by `build_losses`; needs
    `sigmoid_norm`) channel r is region r and every channel enters the mean.

    MedicalSeg's argument names are accepted: `weight` (per-class weights) here weights the
    mean over classes instead of scaling the intersection, and `sigmoid_norm` (MedicalSeg's
    default True) defaults to False because classes in a label map are mutually exclusive.

    Args:
        smooth: Added to numerator and denominator; keeps empty classes finite.
        include_background: Whether class 0 enters the mean (C > 1 only).
        ignore_index: Label id excluded from every sum, or None.
        batch_dice: Sum over the batch before dividing, instead of per sample.
        weight: One weight per class (all C classes, background included), or None for equal.
        sigmoid_norm: Use a sigmoid per channel instead of a softmax over channels.
    """

    def __init__(
        self,
        smooth: float = 1e-5,
        include_background: bool = True,
        ignore_index: int | None = None,
        batch_dice: bool = False,
        weight: Sequence[float] | None = None,
        sigmoid_norm: bool = False,
    ):
        super().__init__()
        if smooth < 0:
            raise ValueError(f"DiceLoss: smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)
        self.include_background = include_background
        self.ignore_index = ignore_index
        self.batch_dice = batch_dice
        self.weight = None if weight is None else [float(w) for w in weight]
        self.sigmoid_norm = sigmoid_norm
        self.regions = None  # medseg.preprocessing.regions.Regions in region-based training

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Return the scalar loss for `(N, C, *spatial)` logits and `(N, *spatial)` labels."""
        name = type(self).__name__
        check_inputs(logits, labels, name)
        num_classes = logits.shape[1]
        if num_classes == 1 and not self.sigmoid_norm:
            raise ValueError(
                f"{name}: a softmax over 1 channel is constant; a single-channel output needs "
                "sigmoid_norm=True (or BCELoss)"
            )
        if self.weight is not None and len(self.weight) != num_classes:
            raise ValueError(
                f"{name}: weight has {len(self.weight)} entries but the logits have "
                f"{num_classes} classes"
            )
        logits = logits.float()
        probs = torch.sigmoid(logits) if self.sigmoid_norm else torch.softmax(logits, dim=1)
        target, mask = encode_targets(
            labels, num_classes, self.ignore_index, probs.dtype, name, self.regions
        )
        probs = probs * mask
        dims = tuple(range(2, logits.ndim))
        if self.batch_dice:
            dims = (0, *dims)
        intersection = (probs * target).sum(dims)
        denominator = probs.sum(dims) + target.sum(dims)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        whole = self.include_background or num_classes == 1 or self.regions is not None
        first = 0 if whole else 1
        dice = dice[..., first:]
        if self.weight is None:
            return 1 - dice.mean()
        weight = torch.tensor(self.weight[first:], dtype=dice.dtype, device=dice.device)
        return 1 - ((dice * weight).sum(-1) / weight.sum()).mean()
