"""V-Net (Milletari et al. 2016, arXiv:1606.04797) with MedicalSeg's constructor arguments.

Five resolution levels. Every level is a residual stage: learned down-sampling (a strided
convolution), a stack of `conv_kernel`³ conv + batch norm + ELU/PReLU layers, and the stage input
added back before the last activation. The up path mirrors each down-sampling with a transposed
convolution of the same kernel and stride, concatenates the skip features and runs another
residual stack, so the output has the input's size. The input stage holds one convolution, the
down stages 1, 2, 3, 3 (the paper has 2, 3, 3, 3, MedicalSeg 1, 2, 3, 2) and the up stages mirror
them, 3, 3, 2, 1 from the coarsest, as in the paper.

`kernel_size` / `stride_size` list one kernel and stride per down-sampling level, in (z, y, x)
order, so anisotropic scans can keep their few slices (e.g. stride (1, 2, 2) on the first levels).
MedicalSeg stored NIfTI volumes as (x, y, z) arrays, so its configs write these lists in the
reverse order: reverse each triple when porting such a config to medseg's (z, y, x) arrays.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import nn

from medseg.cvlibs.registry import MODELS
from medseg.models.blocks import (
    Triple,
    as_level_triples,
    check_input,
    check_positive_ints,
    decode,
    size_rule,
)
from medseg.models.pretrained import load_pretrained

LEVELS = 4  # down-sampling steps
DOWN_CONVS = (1, 2, 3, 3)  # convolutions in the stage after each down-sampling step
DEFAULT_KERNELS = ((2, 2, 2),) * LEVELS


def _act(elu: bool, channels: int) -> nn.Module:
    """ELU, or a PReLU with one slope per channel (MedicalSeg's `elu: False`)."""
    return nn.ELU() if elu else nn.PReLU(channels)


def _dropout(p: float) -> nn.Module:
    return nn.Dropout3d(p) if p > 0 else nn.Identity()


def _conv_stack(channels: int, depth: int, kernel: int, elu: bool) -> nn.Sequential:
    """`depth` × (conv `kernel`³ + batch norm + activation), keeping the channel count."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [
            nn.Conv3d(channels, channels, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm3d(channels),
            _act(elu, channels),
        ]
    return nn.Sequential(*layers)


class _InputStage(nn.Module):
    """First conv stage; its residual is the input repeated along channels up to `out_ch`.

    Tiling and then slicing works for any input channel count (MedicalSeg's tiling needed
    `out_ch` to be a multiple of `in_ch`).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, elu: bool):
        super().__init__()
        self.out_ch = out_ch
        self.repeats = math.ceil(out_ch / in_ch)
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)
        self.norm = nn.BatchNorm3d(out_ch)
        self.act = _act(elu, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x.repeat(1, self.repeats, 1, 1, 1)[:, : self.out_ch]
        return self.act(self.norm(self.conv(x)) + residual)


class _DownStage(nn.Module):
    """Strided conv (doubling channels), optional channel dropout, residual conv stack."""

    def __init__(
        self,
        in_ch: int,
        depth: int,
        kernel: int,
        down: tuple[Triple, Triple],
        elu: bool,
        dropout: float,
    ):
        super().__init__()
        out_ch = 2 * in_ch
        self.down = nn.Sequential(
            nn.Conv3d(in_ch, out_ch, down[0], stride=down[1], bias=False),
            nn.BatchNorm3d(out_ch),
            _act(elu, out_ch),
        )
        self.dropout = _dropout(dropout)
        self.convs = _conv_stack(out_ch, depth, kernel, elu)
        self.act = _act(elu, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = self.down(x)
        return self.act(self.convs(self.dropout(down)) + down)


class _UpStage(nn.Module):
    """Transposed conv to the skip's size and width, concatenation, residual conv stack."""

    def __init__(
        self,
        in_ch: int,
        skip_ch: int,
        depth: int,
        kernel: int,
        up: tuple[Triple, Triple],
        elu: bool,
        dropout: float,
    ):
        super().__init__()
        self.dropout_in = _dropout(dropout)
        self.dropout_skip = _dropout(dropout)
        self.up = nn.Sequential(
            nn.ConvTranspose3d(in_ch, skip_ch, up[0], stride=up[1], bias=False),
            nn.BatchNorm3d(skip_ch),
            _act(elu, skip_ch),
        )
        self.convs = _conv_stack(2 * skip_ch, depth, kernel, elu)
        self.act = _act(elu, 2 * skip_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        merged = torch.cat([self.up(self.dropout_in(x)), self.dropout_skip(skip)], dim=1)
        return self.act(self.convs(merged) + merged)


@MODELS.register()
class VNet(nn.Module):
    """V-Net for `(N, C, Z, Y, X)` volumes; returns logits `(N, num_classes, Z, Y, X)`.

    Args:
        elu: ELU activations if True, else PReLU (MedicalSeg's default).
        in_channels: Input channels (modalities); any count works.
        num_classes: Output channels (background included).
        pretrained: Local medseg checkpoint to load after building, or None.
        kernel_size: Per down-sampling level, the (z, y, x) kernel of the down convolution
            (an int means the same on all axes). Four entries.
        stride_size: Per level, the (z, y, x) stride of the down convolution. Four entries.
        base_channels: Channels of the first stage, doubled at every level (16 in the paper and
            MedicalSeg; 8 makes CPU demos fast).
        dropout: Channel-dropout probability on the two deepest down and up stages (0.5 as in
            MedicalSeg; 0 disables it).
        conv_kernel: Odd edge length of the convolutions inside the stages (5 in the paper).
        deep_supervision: In train mode, also return one auxiliary output per coarser up stage.
        upsample_aux: With deep supervision, upsample the auxiliary outputs to the input size
            (MedicalSeg's way, coarsest first); False keeps them at their own resolution, finest
            first (nnU-Net's way; the loss downsamples the labels by nearest neighbour).

    Valid input sizes per axis are `size_offset + m * size_multiple` (m >= 1); with kernel ==
    stride that is any multiple of the product of the strides. Other sizes raise `ValueError`.

    In eval mode the output is always one tensor. With deep supervision, train mode returns
    `[main, aux_1, aux_2, aux_3]`: by default from the coarsest up stage to the finest, each
    trilinearly upsampled to the input size, as MedicalSeg's VNetDeepSup (see `upsample_aux`).
    """

    def __init__(
        self,
        elu: bool = False,
        in_channels: int = 1,
        num_classes: int = 4,
        pretrained: str | os.PathLike | None = None,
        kernel_size: Sequence[int | Sequence[int]] = DEFAULT_KERNELS,
        stride_size: Sequence[int | Sequence[int]] = DEFAULT_KERNELS,
        base_channels: int = 16,
        dropout: float = 0.5,
        conv_kernel: int = 5,
        deep_supervision: bool = False,
        upsample_aux: bool = True,
    ):
        super().__init__()
        check_positive_ints(
            "VNet", in_channels=in_channels, num_classes=num_classes, base_channels=base_channels
        )
        if not isinstance(conv_kernel, int) or conv_kernel < 1 or conv_kernel % 2 == 0:
            raise ValueError(f"VNet conv_kernel must be an odd positive int, got {conv_kernel!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"VNet dropout must be in [0, 1), got {dropout!r}")
        kernels = as_level_triples(kernel_size, LEVELS, "VNet kernel_size")
        strides = as_level_triples(stride_size, LEVELS, "VNet stride_size")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.size_offset, self.size_multiple = size_rule(kernels, strides)
        self.upsample_aux = bool(upsample_aux)

        width = [base_channels * 2**level for level in range(LEVELS + 1)]
        deep = [dropout if level >= LEVELS - 2 else 0.0 for level in range(LEVELS)]
        self.inp = _InputStage(in_channels, width[0], conv_kernel, elu)
        self.down = nn.ModuleList(
            _DownStage(
                width[lv], DOWN_CONVS[lv], conv_kernel, (kernels[lv], strides[lv]), elu, deep[lv]
            )
            for lv in range(LEVELS)
        )
        self.up = nn.ModuleList()  # coarsest first
        in_ch = width[LEVELS]
        for lv in reversed(range(LEVELS)):
            self.up.append(
                _UpStage(
                    in_ch,
                    width[lv],
                    DOWN_CONVS[lv],
                    conv_kernel,
                    (kernels[lv], strides[lv]),
                    elu,
                    deep[lv],
                )
            )
            in_ch = 2 * width[lv]
        self.head = nn.Conv3d(2 * width[0], num_classes, 1)
        self.aux_heads = (
            nn.ModuleList(
                nn.Conv3d(2 * width[lv], num_classes, 1) for lv in range(LEVELS - 1, 0, -1)
            )
            if deep_supervision
            else None
        )
        if pretrained is not None:
            load_pretrained(self, pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Return logits; a list `[main, aux...]` only in train mode with deep supervision."""
        check_input(x, type(self).__name__, self.in_channels, self.size_offset, self.size_multiple)
        skips = [self.inp(x)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        heads = (self.head, self.aux_heads)
        return decode(skips.pop(), skips, self.up, *heads, x, self.training, self.upsample_aux)


@MODELS.register()
class VNetDeepSup(VNet):
    """VNet with deep supervision (MedicalSeg's `VNetDeepSup` config type): 4 outputs in train.

    Takes VNet's arguments (see `VNet`) except `deep_supervision`, which is always on.
    """

    def __init__(
        self,
        elu: bool = False,
        in_channels: int = 1,
        num_classes: int = 4,
        pretrained: str | os.PathLike | None = None,
        kernel_size: Sequence[int | Sequence[int]] = DEFAULT_KERNELS,
        stride_size: Sequence[int | Sequence[int]] = DEFAULT_KERNELS,
        base_channels: int = 16,
        dropout: float = 0.5,
        conv_kernel: int = 5,
        upsample_aux: bool = True,
    ):
        super().__init__(
            elu,
            in_channels,
            num_classes,
            pretrained,
            kernel_size,
            stride_size,
            base_channels,
            dropout,
            conv_kernel,
            deep_supervision=True,
            upsample_aux=upsample_aux,
        )
