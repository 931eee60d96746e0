"""ResEncUNet and deep supervision: shapes, gradients, nnU-Net's weights, the loss by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medseg.cvlibs.registry import MODELS
from medseg.models.losses import CrossEntropyLoss, deep_supervision_weights, loss_computation
from medseg.models.resenc_unet import PRESETS, ResEncUNet
from medseg.models.unet3d import UNet3D
from medseg.models.vnet import VNetDeepSup


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_weights_halve_per_level_drop_the_lowest_and_sum_to_one():
    assert deep_supervision_weights(4) == pytest.approx([4 / 7, 2 / 7, 1 / 7, 0.0])
    assert deep_supervision_weights(2) == [1.0, 0.0]
    assert deep_supervision_weights(1) == [1.0]
    with pytest.raises(ValueError, match="positive int"):
        deep_supervision_weights(0)


def test_loss_with_native_resolution_outputs_matches_hand_values():
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.int64)
    labels[:, :2, :2, :2] = 1  # one 2×2×2 block: one voxel of eight at half resolution
    main = torch.zeros(1, 2, 4, 4, 4)  # p = 1/2 everywhere
    half = torch.zeros(1, 2, 2, 2, 2)
    half[:, 1] = math.log(3.0)  # p(class 1) = 3/4 everywhere
    lowest = torch.full((1, 2, 1, 1, 1), 5.0)  # weight 0: contributes nothing
    losses = {"types": [CrossEntropyLoss()], "coef": deep_supervision_weights(3)}
    total, _ = loss_computation([main, half, lowest], labels, losses)
    ce_half = (-math.log(0.75) - 7 * math.log(0.25)) / 8
    assert total.item() == pytest.approx(2 / 3 * math.log(2.0) + 1 / 3 * ce_half, rel=1e-6)


def test_resenc_unet_forward_backward_and_deep_supervision_shapes():
    net = ResEncUNet(
        1, 3, num_stages=4, base_channels=4, blocks_per_stage=[1, 2, 2, 2], deep_supervision=True
    )
    x = torch.randn(2, 1, 16, 32, 32)
    net.train()
    outs = net(x)
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 32, 32), (8, 16, 16), (4, 8, 8)]
    target = torch.randint(0, 3, (2, 16, 32, 32))
    losses = {"types": [CrossEntropyLoss()], "coef": deep_supervision_weights(len(outs))}
    loss, _ = loss_computation(outs, target, losses)
    loss.backward()
    for name, param in net.named_parameters():  # weight 0 still gives a (zero) gradient: DDP
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 16, 32, 32)


def test_resenc_unet_registered_presets_and_anisotropic_strides():
    net = MODELS.get("ResEncUNet")(in_channels=1, num_classes=2, preset="M")
    assert len(net.encoder) == PRESETS["M"].num_stages == 6
    assert [len(stage) for stage in net.encoder] == list(PRESETS["M"].blocks_per_stage)
    assert net.head.in_channels == 32 and net.encoder[-1][0].conv1[0].out_channels == 320
    aniso = ResEncUNet(
        1, 2, num_stages=3, base_channels=4, blocks_per_stage=1, strides=[[1, 2, 2], 2]
    )
    assert aniso.size_multiple == (2, 4, 4)
    with torch.no_grad():
        assert aniso.eval()(torch.randn(1, 1, 6, 12, 12)).shape == (1, 2, 6, 12, 12)
    with pytest.raises(ValueError, match="axis Z has size 5"):
        aniso(torch.randn(1, 1, 5, 12, 12))
    with pytest.raises(ValueError, match="preset must be one of"):
        ResEncUNet(1, 2, preset="XXL")
    with pytest.raises(ValueError, match="blocks_per_stage"):
        ResEncUNet(1, 2, num_stages=3, blocks_per_stage=[1, 2])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda up: UNet3D(1, 2, 4, 4, deep_supervision=True, upsample_aux=up), id="UNet3D"
        ),
        pytest.param(
            lambda up: VNetDeepSup(num_classes=2, base_channels=4, upsample_aux=up),
            id="VNetDeepSup",
        ),
    ],
)
def test_native_resolution_aux_outputs_come_finest_first(make):
    x = torch.randn(1, 1, 32, 32, 32)
    native = make(False).train()(x)
    sizes = [o.shape[-1] for o in native]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 32 and sizes[1] == 16
    upsampled = make(True).train()(x)
    assert [o.shape[-1] for o in upsampled] == [32] * len(native)
    # Same weights, same features: the native aux outputs, upsampled, are the MedicalSeg ones.
    torch.manual_seed(0)
    a = make(False).train()
    torch.manual_seed(0)
    b = make(True).train()
    b.load_state_dict(a.state_dict())
    torch.manual_seed(1)
    outs_a = a(x)
    torch.manual_seed(1)
    outs_b = b(x)
    for low, up in zip(outs_a[1:], reversed(outs_b[1:]), strict=True):
        again = F.interpolate(low, size=x.shape[2:], mode="trilinear", align_corners=False)
        assert torch.allclose(again, up, atol=1e-5)
