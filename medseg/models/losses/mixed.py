"""A weighted sum of losses whose terms stay visible for logging."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from medseg.cvlibs.registry import LOSSES


def set_default_ignore_index(loss: nn.Module, value: int | None) -> None:
    """Give `loss` (and, for a MixedLoss, every member) `ignore_index=value` where it is None.

    The config layer calls this with the training dataset's ignore_index, so a loss that
    names no ignore_index of its own follows the data.
    """
    if getattr(loss, "ignore_index", None) is None:
        loss.ignore_index = value
    if isinstance(loss, MixedLoss):
        for member in loss.losses:
            set_default_ignore_index(member, value)


def set_regions(loss: nn.Module, regions: Any) -> None:
    """Make `loss` (every member of a MixedLoss) train `regions` (region-based training).

    Raises:
        ValueError: for a loss that cannot train overlapping regions (a softmax, e.g.
            CrossEntropyLoss or DiceLoss without `sigmoid_norm`).
    """
    if isinstance(loss, MixedLoss):
        for member in loss.losses:
            set_regions(member, regions)
        return
    name = type(loss).__name__
    if not hasattr(loss, "regions") or getattr(loss, "sigmoid_norm", True) is False:
        raise ValueError(
            f"{name} cannot train the dataset's regions {list(regions.names)}: they overlap, "
            "so each needs its own sigmoid; use BCELoss and DiceLoss with sigmoid_norm: true"
        )
    loss.regions = regions


def named_terms(loss: nn.Module, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Return a loss's values by name: a MixedLoss's weighted members, else its class name."""
    if isinstance(loss, MixedLoss):
        return loss.terms(logits, labels)
    return {type(loss).__name__: loss(logits, labels)}


def _unique_name(name: str, taken: dict[str, Tensor]) -> str:
    """Return `name`, or `name_2`, `name_3`, ... if it is already a key of `taken`."""
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name}_{count}"
    return candidate


@LOSSES.register()
class MixedLoss(nn.Module):
    """Weighted sum `sum_k coef[k] * losses[k](logits, labels)`, e.g. cross-entropy + Dice.

    Args:
        losses: Built loss modules (nested MixedLoss allowed).
        coef: One weight per loss.
        ignore_index: If set, the default ignore_index of members that set none.
    """

    def __init__(self, losses: list[nn.Module], coef: list[float], ignore_index: int | None = None):
        super().__init__()
        if not isinstance(losses, list | tuple) or not losses:
            raise ValueError(f"MixedLoss: losses must be a non-empty list, got {losses!r}")
        if not isinstance(coef, list | tuple) or len(coef) != len(losses):
            raise ValueError(
                f"MixedLoss: coef must be a list with one weight per loss; got {len(losses)} "
                f"losses and coef={coef!r}"
            )
        for index, member in enumerate(losses):
            if not isinstance(member, nn.Module):
                raise ValueError(
                    f"MixedLoss: losses[{index}] must be a built loss module, got "
                    f"{type(member).__name__}"
                )
        self.losses = nn.ModuleList(losses)
        self.coef = [float(c) for c in coef]
        self.ignore_index = ignore_index
        if ignore_index is not None:
            for member in losses:
                set_default_ignore_index(member, ignore_index)

    def terms(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Return each member's weighted value by class name (`DiceLoss`, `DiceLoss_2`, ...)."""
        named: dict[str, Tensor] = {}
        for member, weight in zip(self.losses, self.coef, strict=True):
            for name, value in named_terms(member, logits, labels).items():
                named[_unique_name(name, named)] = weight * value
        return named

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Return the weighted sum of the member losses."""
        return sum(self.terms(logits, labels).values())
