"""Where network outputs meet losses: input checks, target encoding and the multi-output sum.

The checks and the target encoding live here so every loss validates and encodes labels the
same way; `loss_computation` applies the config's `loss: {types, coef}` to one or several
outputs (deep supervision) and returns per-term values for the train log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.models.losses.mixed import named_terms

if TYPE_CHECKING:
    from medseg.preprocessing.regions import Regions


def check_inputs(logits: Tensor, labels: Tensor, loss_name: str) -> None:
    """Raise `ValueError` unless logits are `(N, C, *spatial)` and labels `(N, *spatial)` ints."""
    if logits.ndim < 3:
        raise ValueError(
            f"{loss_name}: logits must be (N, C, *spatial), got shape {tuple(logits.shape)}"
        )
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(labels.shape) != expected:
        raise ValueError(
            f"{loss_name}: labels have shape {tuple(labels.shape)} but logits "
            f"{tuple(logits.shape)} need labels of shape (N, *spatial) = {expected}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{loss_name}: labels must be an integer tensor, got {labels.dtype}")


def check_label_range(
    labels: Tensor,
    num_classes: int,
    ignore_index: int | None,
    loss_name: str,
    why: str | None = None,
) -> None:
    """Raise `ValueError` naming the offending ids unless labels lie in `[0, C)` or are ignored.

    Costs one device sync; it turns CUDA's opaque device-side assert into a readable error.
    `why` says where C comes from (default: the logits' channels).
    """
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        found = torch.unique(labels[bad]).tolist()[:10]
        raise ValueError(
            f"{loss_name}: labels contain ids {found} outside 0..{num_classes - 1} "
            f"({why or f'the logits have {num_classes} channels'}) and "
            f"ignore_index={ignore_index}"
        )


def keep_mask(labels: Tensor, ignore_index: int | None) -> Tensor:
    """Return a bool tensor, False where `labels == ignore_index` (all True when it is None)."""
    if ignore_index is None:
        return torch.ones_like(labels, dtype=torch.bool)
    return labels != ignore_index


def encode_targets(
    labels: Tensor,
    num_classes: int,
    ignore_index: int | None,
    dtype: torch.dtype,
    loss_name: str,
    regions: Regions | None = None,
) -> tuple[Tensor, Tensor]:
    """Encode `(N, *spatial)` labels as `(N, C, *spatial)` targets and a `(N, 1, *spatial)` mask.

    With `regions` (region-based training) channel r is the mask of region r (its label ids,
    `Regions.membership`); otherwise with C > 1 the targets are the one-hot label map (ids
    checked to lie in `[0, C)`), and with one channel, that channel is the foreground and the
    target is `label > 0`. The mask is 0 on voxels equal to `ignore_index`, whose targets are
    all zero.
    """
    keep = keep_mask(labels, ignore_index)
    mask = keep.unsqueeze(1).to(dtype)
    if regions is not None:
        if num_classes != len(regions):
            raise ValueError(
                f"{loss_name}: the logits have {num_classes} channels but the training data "
                f"has {len(regions)} regions {list(regions.names)}"
            )
        highest = regions.highest_id
        check_label_range(labels, highest + 1, ignore_index, loss_name, "the regions' ids")
        safe = torch.where(keep, labels, torch.zeros_like(labels)).long()
        table = torch.as_tensor(regions.membership(), device=labels.device)
        return table[:, safe].movedim(0, 1).to(dtype) * mask, mask
    if num_classes == 1:
        return ((labels > 0) & keep).unsqueeze(1).to(dtype), mask
    check_label_range(labels, num_classes, ignore_index, loss_name)
    safe = torch.where(keep, labels, torch.zeros_like(labels)).long()
    return F.one_hot(safe, num_classes).movedim(-1, 1).to(dtype) * mask, mask


def _labels_at(labels: Tensor, spatial: torch.Size, output_index: int) -> Tensor:
    """Return `labels` at the output's spatial size, downsampled by nearest neighbour if needed.

    Deep-supervision heads may predict at 1/2, 1/4, ... of the label resolution; any other
    mismatch is a model bug, so only whole-number downsampling factors are accepted.
    """
    if labels.shape[1:] == spatial:
        return labels
    have = tuple(labels.shape[1:])
    if len(have) != len(spatial) or any(h < s or h % s for h, s in zip(have, spatial, strict=True)):
        raise ValueError(
            f"model output {output_index} has spatial shape {tuple(spatial)} but the labels have "
            f"{have}; an output may only be smaller than the labels by whole-number factors"
        )
    resized = F.interpolate(labels.unsqueeze(1).float(), size=tuple(spatial), mode="nearest-exact")
    return resized.squeeze(1).to(labels.dtype)


def loss_computation(
    logits: Tensor | Sequence[Tensor], labels: Tensor, losses: dict[str, Any]
) -> tuple[Tensor, dict[str, float]]:
    """Apply the config's losses to the model outputs and sum them with their coefficients.

    Output `i` uses `losses["types"][i]` weighted by `losses["coef"][i]`; a single type with
    several coefs is shared by every output (deep supervision, main output first). Outputs
    smaller than the labels get nearest-neighbour downsampled labels.

    Args:
        logits: One `(N, C, *spatial)` tensor or a list of them (main output first).
        labels: `(N, *spatial)` integer label map at full resolution.
        losses: `{"types": [built loss modules], "coef": [floats]}`.

    Returns:
        The total loss, and `{term name: weighted value}` as detached floats summed over
        outputs (e.g. `{"CrossEntropyLoss": 0.7, "DiceLoss": 0.4}`) for logging.
    """
    outputs = [logits] if isinstance(logits, Tensor) else list(logits)
    if "types" not in losses or "coef" not in losses:
        raise ValueError(f"loss config needs keys 'types' and 'coef', got {sorted(losses)}")
    types, coef = list(losses["types"]), list(losses["coef"])
    if len(types) == 1 and len(coef) > 1:
        types = types * len(coef)
    if not len(types) == len(coef) == len(outputs):
        raise ValueError(
            f"loss config has {len(losses['types'])} types and {len(coef)} coefs for "
            f"{len(outputs)} model outputs; expected one coef per output and either one type "
            "per coef or a single type shared by all"
        )
    total = outputs[0].new_zeros((), dtype=torch.float32)
    logged: dict[str, Tensor] = {}
    for index, (output, loss, weight) in enumerate(zip(outputs, types, coef, strict=True)):
        target = _labels_at(labels, output.shape[2:], index)
        for name, value in named_terms(loss, output, target).items():
            weighted = float(weight) * value
            total = total + weighted
            logged[name] = logged.get(name, 0.0) + weighted.detach()
    # One device-to-host copy for all terms: on a GPU each float() would wait for the device.
    values = torch.stack([v.float() for v in logged.values()]).tolist()
    return total, dict(zip(logged, values, strict=True))
