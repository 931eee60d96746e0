"""Residual-encoder U-Net (nnU-Net's `ResidualEncoderUNet`, Isensee et al., MICCAI 2024).

The encoder is a stack of stages of residual basic blocks (conv + instance norm + LeakyReLU,
conv + instance norm, the input added back, LeakyReLU). The first block of every stage but the
first down-samples with a strided convolution; its shortcut average-pools and projects with a
1×1×1 convolution (nnU-Net's "D" variant of the basic block). The decoder is plain: a transposed
convolution back to the skip's resolution, concatenation, `decoder_convs` conv-norm-LeakyReLU
layers. Widths double per stage from `base_channels` up to `max_channels`.

`preset="M"` / `"L"` pick nnU-Net's ResEnc M / L network (6 stages, widths 32 → 320, blocks
1, 3, 4, 6, 6, 6). nnU-Net's M and L share the network and differ in the GPU memory their plans
target (about 9 GB and 24 GB), which it spends on a larger patch and batch; the preset's
`memory_target_gb` records that target for the planner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medseg.cvlibs.registry import MODELS
from medseg.models.blocks import as_level_triples, check_input, check_positive_ints, size_rule
from medseg.models.pretrained import load_pretrained


@dataclass(frozen=True)
class ResEncPreset:
    """A named ResEnc network: stages, widths, blocks and the memory its plans target."""

    num_stages: int
    base_channels: int
    max_channels: int
    blocks_per_stage: tuple[int, ...]
    memory_target_gb: float


PRESETS = {
    "M": ResEncPreset(6, 32, 320, (1, 3, 4, 6, 6, 6), 8.0),
    "L": ResEncPreset(6, 32, 320, (1, 3, 4, 6, 6, 6), 24.0),
}


def _conv_norm_act(in_ch: int, out_ch: int, stride: Sequence[int] = (1, 1, 1)) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_ch, out_ch, 3, stride=tuple(stride), padding=1, bias=True),
        nn.InstanceNorm3d(out_ch, eps=1e-5, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class BasicBlockD(nn.Module):
    """Residual block: two 3×3×3 convs; the shortcut pools and projects when shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: Sequence[int] = (1, 1, 1)):
        super().__init__()
        stride = tuple(stride)
        self.conv1 = _conv_norm_act(in_ch, out_ch, stride)
        self.conv2 = nn.Sequential(
            nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=True),
            nn.InstanceNorm3d(out_ch, eps=1e-5, affine=True),
        )
        shortcut: list[nn.Module] = []
        if any(s != 1 for s in stride):
            shortcut.append(nn.AvgPool3d(stride, stride))
        if in_ch != out_ch:
            shortcut += [
                nn.Conv3d(in_ch, out_ch, 1, bias=False),
                nn.InstanceNorm3d(out_ch, eps=1e-5, affine=True),
            ]
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum, then LeakyReLU."""
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class _DecoderStage(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: Sequence[int], convs: int):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_ch, out_ch, tuple(stride), stride=tuple(stride))
        layers = [_conv_norm_act(2 * out_ch, out_ch)]
        layers += [_conv_norm_act(out_ch, out_ch) for _ in range(convs - 1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample, concatenate the skip, convolve."""
        return self.convs(torch.cat([self.up(x), skip], dim=1))


@MODELS.register()
class ResEncUNet(nn.Module):
    """Residual-encoder U-Net for `(N, C, Z, Y, X)` volumes; returns logits.

    Args:
        in_channels: Input channels (modalities).
        num_classes: Output channels (background included).
        num_stages: Resolution stages (`num_stages - 1` down-samplings).
        base_channels: Width of the first stage, doubled per stage ...
        max_channels: ... up to this width.
        blocks_per_stage: Residual blocks per encoder stage: one int for all, or one per stage.
        decoder_convs: Conv-norm-LeakyReLU layers per decoder stage (nnU-Net: 1).
        strides: Down-sampling stride per stage after the first (`num_stages - 1` entries, each
            an int or `[z, y, x]`); default 2 on every axis.
        deep_supervision: In train mode also return one output per decoder stage below full
            resolution, at that stage's own resolution (nnU-Net's way: the loss downsamples
            the labels by nearest neighbour, see `loss_computation`).
        preset: "M" or "L" (see `PRESETS`): sets stages, widths and blocks, overriding those
            four arguments.
        pretrained: Local medseg checkpoint to load after building, or None.

    Train mode with deep supervision returns `[main, aux...]`, finest first; eval mode always
    returns one tensor (the ONNX export traces eval mode, so the auxiliary heads are left out).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_stages: int = 5,
        base_channels: int = 32,
        max_channels: int = 320,
        blocks_per_stage: int | Sequence[int] = (1, 3, 4, 6, 6),
        decoder_convs: int = 1,
        strides: Sequence[int | Sequence[int]] | None = None,
        deep_supervision: bool = False,
        preset: str | None = None,
        pretrained: str | os.PathLike | None = None,
    ):
        super().__init__()
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(
                    f"ResEncUNet preset must be one of {sorted(PRESETS)}, got {preset!r}"
                )
            chosen = PRESETS[preset]
            num_stages, base_channels = chosen.num_stages, chosen.base_channels
            max_channels, blocks_per_stage = chosen.max_channels, chosen.blocks_per_stage
        check_positive_ints(
            "ResEncUNet",
            in_channels=in_channels,
            num_classes=num_classes,
            base_channels=base_channels,
            max_channels=max_channels,
            decoder_convs=decoder_convs,
        )
        if not isinstance(num_stages, int) or num_stages < 2:
            raise ValueError(f"ResEncUNet num_stages must be an int >= 2, got {num_stages!r}")
        blocks = (
            [blocks_per_stage] * num_stages
            if isinstance(blocks_per_stage, int)
            else list(blocks_per_stage)
        )
        if len(blocks) != num_stages or not all(isinstance(b, int) and b >= 1 for b in blocks):
            raise ValueError(
                f"ResEncUNet blocks_per_stage must be a positive int or {num_stages} positive "
                f"ints (one per stage), got {blocks_per_stage!r}"
            )
        down = as_level_triples(
            strides if strides is not None else [2] * (num_stages - 1),
            num_stages - 1,
            "ResEncUNet strides",
        )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.size_offset, self.size_multiple = size_rule(down, down)

        width = [min(base_channels * 2**s, max_channels) for s in range(num_stages)]
        self.stem = _conv_norm_act(in_channels, width[0])
        self.encoder = nn.ModuleList()
        in_ch = width[0]
        for stage in range(num_stages):
            stride = (1, 1, 1) if stage == 0 else down[stage - 1]
            layers = [BasicBlockD(in_ch, width[stage], stride)]
            layers += [BasicBlockD(width[stage], width[stage]) for _ in range(blocks[stage] - 1)]
            self.encoder.append(nn.Sequential(*layers))
            in_ch = width[stage]
        self.decoder = nn.ModuleList(  # coarsest first
            _DecoderStage(width[s + 1], width[s], down[s], decoder_convs)
            for s in reversed(range(num_stages - 1))
        )
        self.head = nn.Conv3d(width[0], num_classes, 1)
        self.aux_heads = (
            nn.ModuleList(nn.Conv3d(width[s], num_classes, 1) for s in range(1, num_stages - 1))
            if deep_supervision
            else None
        )
        if pretrained is not None:
            load_pretrained(self, pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Return logits; `[main, aux...]` (finest first) in train mode with deep supervision."""
        check_input(x, "ResEncUNet", self.in_channels, self.size_offset, self.size_multiple)
        skips = []
        out = self.stem(x)
        for stage in self.encoder:
            out = stage(out)
            skips.append(out)
        out = skips.pop()
        decoded = []
        for stage in self.decoder:
            out = stage(out, skips.pop())
            decoded.append(out)
        main = self.head(out)
        if self.aux_heads is None or not self.training:
            return main
        # decoded[-2] is at 1/2 resolution (stage 1), decoded[0] the coarsest decoder output.
        aux = [head(decoded[-2 - i]) for i, head in enumerate(self.aux_heads)]
        return [main, *aux]
