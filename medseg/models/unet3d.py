"""3D U-Net (Çiçek et al. 2016, arXiv:1606.06650).

Each resolution level runs two 3×3×3 conv + norm + ReLU blocks; the encoder halves the size with
2×2×2 max pooling and doubles the width, the decoder up-samples with 2×2×2 transposed
convolutions, concatenates the encoder features of the same level and runs two more conv blocks;
a 1×1×1 convolution gives the logits. Widths are `base_channels * 2**level` for both convs of a
level (the paper doubles inside the block instead; the plain doubling is what nnU-Net uses).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from medseg.cvlibs.registry import MODELS
from medseg.models.blocks import check_input, check_positive_ints, decode, make_norm
from medseg.models.pretrained import load_pretrained


def _double_conv(in_ch: int, out_ch: int, norm: str) -> nn.Sequential:
    """Two 3×3×3 conv + norm + ReLU blocks."""
    return nn.Sequential(
        nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False),
        make_norm(norm, out_ch),
        nn.ReLU(inplace=True),
        nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=False),
        make_norm(norm, out_ch),
        nn.ReLU(inplace=True),
    )


class _UpLevel(nn.Module):
    """Transposed conv to the skip's size and width, concatenation, double conv."""

    def __init__(self, in_ch: int, out_ch: int, norm: str):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_ch, out_ch, 2, stride=2)
        self.convs = _double_conv(2 * out_ch, out_ch, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


@MODELS.register()
class UNet3D(nn.Module):
    """3D U-Net for `(N, C, Z, Y, X)` volumes; returns logits `(N, num_classes, Z, Y, X)`.

    Args:
        in_channels: Input channels (modalities).
        num_classes: Output channels (background included).
        base_channels: Width of the first level, doubled at every level below.
        num_levels: Resolution levels (`num_levels - 1` poolings); every spatial size must be
            divisible by `2 ** (num_levels - 1)`.
        norm: "batch", "instance" or "group".
        deep_supervision: In train mode, also return one auxiliary output per decoder level
            below full resolution (`num_levels - 2` of them).
        upsample_aux: With deep supervision, upsample the auxiliary outputs to the input size
            (MedicalSeg's way, coarsest first); False keeps them at their own resolution, finest
            first (nnU-Net's way; the loss downsamples the labels by nearest neighbour).
        pretrained: Local medseg checkpoint to load after building, or None.

    In eval mode the output is always one tensor. With deep supervision, train mode returns
    `[main, aux...]` (see `upsample_aux` for their order and size).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_channels: int = 32,
        num_levels: int = 4,
        norm: str = "batch",
        deep_supervision: bool = False,
        upsample_aux: bool = True,
        pretrained: str | os.PathLike | None = None,
    ):
        super().__init__()
        check_positive_ints(
            "UNet3D", in_channels=in_channels, num_classes=num_classes, base_channels=base_channels
        )
        if not isinstance(num_levels, int) or num_levels < 2:
            raise ValueError(f"UNet3D num_levels must be an int >= 2, got {num_levels!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.size_offset = (0, 0, 0)
        self.size_multiple = (2 ** (num_levels - 1),) * 3
        self.upsample_aux = bool(upsample_aux)

        width = [base_channels * 2**level for level in range(num_levels)]
        self.encoder = nn.ModuleList(
            _double_conv(in_ch, out_ch, norm)
            for in_ch, out_ch in zip([in_channels, *width[:-1]], width, strict=True)
        )
        self.pool = nn.MaxPool3d(2)
        self.decoder = nn.ModuleList(  # coarsest first
            _UpLevel(width[lv + 1], width[lv], norm) for lv in reversed(range(num_levels - 1))
        )
        self.head = nn.Conv3d(width[0], num_classes, 1)
        self.aux_heads = (
            nn.ModuleList(
                nn.Conv3d(width[lv], num_classes, 1) for lv in range(num_levels - 2, 0, -1)
            )
            if deep_supervision
            else None
        )
        if pretrained is not None:
            load_pretrained(self, pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Return logits; a list `[main, aux...]` only in train mode with deep supervision."""
        check_input(x, "UNet3D", self.in_channels, self.size_offset, self.size_multiple)
        skips = []
        out = x
        for level, block in enumerate(self.encoder):
            out = block(out if level == 0 else self.pool(out))
            skips.append(out)
        return decode(
            skips.pop(),
            skips,
            self.decoder,
            self.head,
            self.aux_heads,
            x,
            self.training,
            self.upsample_aux,
        )
