"""Layers and argument checks shared by the 3D networks.

Everything here is export-friendly: plain convolutions, norms and `F.interpolate`, and shape
checks that are skipped while a model is being traced or exported (they guard users in eager
mode; an exported graph has no Python to run them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.utils.vocabulary import int_triple, positive_int

AXES = ("Z", "Y", "X")
Triple = tuple[int, int, int]


def as_level_triples(value: Sequence[int | Sequence[int]], levels: int, name: str) -> list[Triple]:
    """Return one `(z, y, x)` triple per down-sampling level (MedicalSeg's per-level lists).

    Raises:
        ValueError: If `value` does not hold exactly `levels` entries.
    """
    if isinstance(value, int) or len(value) != levels:
        raise ValueError(
            f"{name} must list one kernel/stride per down-sampling level "
            f"({levels} entries, each an int or [z, y, x]), got {value!r}"
        )
    return [int_triple(v, f"{name}[{i}]") for i, v in enumerate(value)]


def size_rule(kernels: Sequence[Triple], strides: Sequence[Triple]) -> tuple[Triple, Triple]:
    """Return `(offset, multiple)` per axis such that valid input sizes are `offset + k * multiple`.

    A level with kernel `k` and stride `s` (no padding) maps size `n` to `(n - k) / s + 1` and its
    mirrored transposed convolution maps that back to `n` exactly when `(n - k) % s == 0`.
    Unrolling the levels, the valid sizes are `offset + m * multiple` for `m >= 1`, with
    `multiple` the product of the strides and `offset = sum_l (k_l - s_l) * prod_{j<l} s_j`
    (zero when every kernel equals its stride, the usual case).
    """
    offsets, multiples = [], []
    for axis in range(3):
        offset, scale = 0, 1
        for kernel, stride in zip(kernels, strides, strict=True):
            offset += (kernel[axis] - stride[axis]) * scale
            scale *= stride[axis]
        offsets.append(offset)
        multiples.append(scale)
    return tuple(offsets), tuple(multiples)  # type: ignore[return-value]


def _size_hint(offset: int, multiple: int) -> str:
    """Describe the sizes `offset + m * multiple` (m >= 1) in words, with examples."""
    examples = ", ".join(str(offset + m * multiple) for m in range(1, 4))
    if offset == 0:
        return f"must be divisible by {multiple} (e.g. {examples})"
    return f"must be {offset} plus a positive multiple of {multiple} (e.g. {examples})"


def check_input(
    x: torch.Tensor, model: str, in_channels: int, offset: Triple, multiple: Triple
) -> None:
    """Raise a clear `ValueError` when `x` is not `(N, in_channels, Z, Y, X)` of a valid size.

    Skipped while tracing/exporting, where the sizes are symbolic.
    """
    if torch.jit.is_tracing() or torch.compiler.is_exporting():
        return
    if x.dim() != 5 or x.shape[1] != in_channels:
        raise ValueError(
            f"{model} expects input of shape (N, {in_channels}, Z, Y, X), got {tuple(x.shape)}"
        )
    size = tuple(x.shape[2:])
    for axis, n, off, mult in zip(AXES, size, offset, multiple, strict=True):
        if n < off + mult or (n - off) % mult:
            raise ValueError(
                f"{model}: input spatial size (Z, Y, X) = {size} does not fit the "
                f"down-sampling: axis {axis} has size {n} and "
                f"{_size_hint(off, mult)}; crop or pad the patch"
            )


def make_norm(kind: str, channels: int) -> nn.Module:
    """Return a 3D norm layer: "batch", "instance" (affine) or "group" (8 groups when possible).

    Raises:
        ValueError: For any other `kind`.
    """
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    raise ValueError(f"norm must be 'batch', 'instance' or 'group', got {kind!r}")


def upsample_to(logits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Trilinearly resize `logits` to the spatial size of `like` (deep-supervision outputs)."""
    return F.interpolate(logits, size=like.shape[2:], mode="trilinear", align_corners=False)


def decode(
    out: torch.Tensor,
    skips: list[torch.Tensor],
    stages: nn.ModuleList,
    head: nn.Module,
    aux_heads: nn.ModuleList | None,
    like: torch.Tensor,
    training: bool,
    upsample_aux: bool = True,
) -> torch.Tensor | list[torch.Tensor]:
    """Run an up path that consumes `skips` (deepest last) and apply the output head(s).

    Returns the logits, or `[main, aux...]` in training with auxiliary heads, each aux head reading
    one up stage's output. With `upsample_aux` (MedicalSeg's way) the aux outputs come coarsest
    first, upsampled to the size of `like`; without it (nnU-Net's way) they come finest first at
    their own resolution, and the loss downsamples the labels instead.
    """
    decoded = []
    for stage in stages:
        out = stage(out, skips.pop())
        decoded.append(out)
    main = head(out)
    if aux_heads is None or not training:
        return main
    pairs = list(zip(aux_heads, decoded[:-1], strict=True))
    if upsample_aux:
        return [main] + [upsample_to(h(f), like) for h, f in pairs]
    return [main] + [h(f) for h, f in reversed(pairs)]


def check_positive_ints(model: str, **values: object) -> None:
    """Raise a ValueError naming the first constructor argument that is not a positive int."""
    for name, value in values.items():
        positive_int(value, f"{model} {name}")
