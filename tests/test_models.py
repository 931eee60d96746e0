"""VNet, VNetDeepSup, UNet3D and `load_pretrained`: shapes, gradients, errors, round trips."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medseg.cvlibs.registry import MODELS
from medseg.models.blocks import size_rule
from medseg.models.pretrained import load_pretrained
from medseg.models.unet3d import UNet3D
from medseg.models.vnet import VNet, VNetDeepSup

# MedicalSeg's MRISpineSeg config (vnet[deepsup]_mri_spine_seg_512_512_12_15k.yml), verbatim.
SPINE_KERNELS = [[2, 2, 4], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
SPINE_STRIDES = [[2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _train_step(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Run forward + cross-entropy backward in train mode; return the outputs as a list."""
    model.train()
    out = model(x)
    outs = out if isinstance(out, list) else [out]
    target = torch.randint(0, outs[0].shape[1], (x.shape[0], *x.shape[2:]))
    sum(F.cross_entropy(o, target) for o in outs).backward()
    return outs


def _assert_all_grads_finite(model: torch.nn.Module) -> None:
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: VNet(in_channels=1, num_classes=3), id="VNet-16"),
        pytest.param(lambda: UNet3D(in_channels=1, num_classes=3), id="UNet3D-32"),
    ],
)
def test_default_size_forward_backward_64(model):
    net = model()
    x = torch.randn(1, 1, 64, 64, 64)
    (out,) = _train_step(net, x)
    assert out.shape == (1, 3, 64, 64, 64)
    _assert_all_grads_finite(net)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (1, 3, 64, 64, 64)


def test_vnet_deepsup_train_list_of_four_eval_tensor():
    net = VNetDeepSup(in_channels=1, num_classes=2, base_channels=4)
    x = torch.randn(2, 1, 32, 32, 32)
    outs = _train_step(net, x)
    assert len(outs) == 4
    assert all(o.shape == (2, 2, 32, 32, 32) for o in outs)
    _assert_all_grads_finite(net)

    net.eval()
    with torch.no_grad():
        main = net(x)
    assert isinstance(main, torch.Tensor) and main.shape == (2, 2, 32, 32, 32)
    # The auxiliary heads never change the main output: a plain VNet with the same weights agrees.
    plain = VNet(in_channels=1, num_classes=2, base_channels=4).eval()
    plain.load_state_dict(net.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), main)


@pytest.mark.parametrize(("num_levels", "n_out"), [(3, 2), (4, 3)])
def test_unet3d_deep_supervision_outputs(num_levels, n_out):
    net = UNet3D(1, 3, base_channels=4, num_levels=num_levels, deep_supervision=True)
    x = torch.randn(2, 1, 16, 24, 16)
    outs = _train_step(net, x)
    assert len(outs) == n_out
    assert all(o.shape == (2, 3, 16, 24, 16) for o in outs)
    _assert_all_grads_finite(net)
    net.eval()
    assert isinstance(net(x), torch.Tensor)


def test_vnet_anisotropic_spine_kernels_and_strides():
    net = VNet(
        in_channels=1,
        num_classes=3,
        base_channels=4,
        kernel_size=SPINE_KERNELS,
        stride_size=SPINE_STRIDES,
    )
    # Last axis: kernels 4,2,2,2 with strides 1,1,2,2 -> sizes 8 -> 5 -> 4 -> 2 -> 1, so the
    # valid sizes are 4 + 4m; the other axes halve four times (multiples of 16).
    assert (net.size_offset, net.size_multiple) == ((0, 0, 4), (16, 16, 4))
    x = torch.randn(1, 1, 32, 32, 8)
    (out,) = _train_step(net, x)
    assert out.shape == (1, 3, 32, 32, 8)
    _assert_all_grads_finite(net)
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 16, 12)).shape == (1, 3, 16, 16, 12)
    with pytest.raises(
        ValueError,
        match=r"axis X has size 10 and must be 4 plus a positive "
        r"multiple of 4 \(e\.g\. 8, 12, 16\)",
    ):
        net(torch.randn(1, 1, 32, 32, 10))


def test_size_rule_reduces_to_stride_product_when_kernel_equals_stride():
    strides = [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert size_rule(strides, strides) == ((0, 0, 0), (4, 16, 16))


@pytest.mark.parametrize("in_channels", [3, 5])
def test_vnet_any_input_channel_count(in_channels):
    net = VNet(in_channels=in_channels, num_classes=2)  # width 16: not a multiple of 3 or 5
    x = torch.randn(2, in_channels, 16, 16, 16)
    (out,) = _train_step(net, x)
    assert out.shape == (2, 2, 16, 16, 16)
    _assert_all_grads_finite(net)


def test_vnet_input_residual_cycles_input_channels():
    net = VNet(in_channels=3, num_classes=2, base_channels=8).eval()
    stage = net.inp
    torch.nn.init.zeros_(stage.conv.weight)  # conv adds 0, identity BN: output = PReLU(residual)
    x = torch.rand(1, 3, 4, 4, 4) + 0.1  # positive, so PReLU is the identity
    with torch.no_grad():
        out = stage(x)
    expected = x[:, [c % 3 for c in range(8)]]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_size_and_channel_errors_name_what_is_wrong():
    vnet = VNet(in_channels=1, num_classes=2, base_channels=4).eval()
    with pytest.raises(
        ValueError,
        match=r"\(Z, Y, X\) = \(32, 32, 40\).*axis X has size 40 and "
        r"must be divisible by 16",
    ):
        vnet(torch.randn(1, 1, 32, 32, 40))
    unet = UNet3D(1, 2, base_channels=4, num_levels=4).eval()
    with pytest.raises(ValueError, match=r"axis Z has size 20 and must be divisible by 8"):
        unet(torch.randn(1, 1, 20, 16, 16))
    with pytest.raises(
        ValueError,
        match=r"expects input of shape \(N, 1, Z, Y, X\), got "
        r"\(1, 2, 16, 16, 16\)",
    ):
        unet(torch.randn(1, 2, 16, 16, 16))
    with pytest.raises(
        ValueError, match=r"kernel_size must list one kernel/stride per .*4 entries"
    ):
        VNet(kernel_size=[[2, 2, 2]] * 3)
    with pytest.raises(
        ValueError, match=r"norm must be 'batch', 'instance' or 'group', got 'layer'"
    ):
        UNet3D(1, 2, norm="layer")


@pytest.mark.parametrize(
    ("norm", "layer"),
    [
        ("batch", torch.nn.BatchNorm3d),
        ("instance", torch.nn.InstanceNorm3d),
        ("group", torch.nn.GroupNorm),
    ],
)
def test_unet3d_each_norm(norm, layer):
    net = UNet3D(2, 3, base_channels=8, num_levels=3, norm=norm)
    assert any(isinstance(m, layer) for m in net.modules())
    (out,) = _train_step(net, torch.randn(2, 2, 16, 16, 16))
    assert out.shape == (2, 3, 16, 16, 16)
    _assert_all_grads_finite(net)


def test_registry_builds_medicalseg_spine_config_unchanged():
    config = {
        "elu": False,
        "in_channels": 1,
        "num_classes": 20,
        "pretrained": None,
        "kernel_size": SPINE_KERNELS,
        "stride_size": SPINE_STRIDES,
    }
    for name, cls in [("VNet", VNet), ("VNetDeepSup", VNetDeepSup), ("UNet3D", UNet3D)]:
        assert MODELS.get(name) is cls
    net = MODELS.get("VNetDeepSup")(**config)
    assert net.num_classes == 20 and len(net.aux_heads) == 3
    assert net.size_multiple == (16, 16, 4)


@pytest.mark.parametrize("wrap", [False, True], ids=["state_dict", "checkpoint"])
def test_pretrained_round_trip(tmp_path, wrap):
    source = UNet3D(1, 2, base_channels=4, num_levels=3)
    state = source.state_dict()
    path = tmp_path / "weights.pth"
    torch.save({"model": state, "iter": 7} if wrap else state, path)
    loaded = UNet3D(1, 2, base_channels=4, num_levels=3, pretrained=str(path))
    fresh = UNet3D(1, 2, base_channels=4, num_levels=3)
    assert not torch.equal(fresh.head.weight, source.head.weight)  # init alone would differ
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pretrained_vnet_into_deepsup_logs_missing_keys(tmp_path, caplog):
    path = tmp_path / "vnet.pth"
    source = VNet(num_classes=2, base_channels=4)
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="medseg.models.pretrained"):
        net = VNetDeepSup(num_classes=2, base_channels=4, pretrained=path)
    assert "6 model keys not in" in caplog.text and "aux_heads.0.weight" in caplog.text
    assert torch.equal(net.head.weight, source.head.weight)


def test_pretrained_shape_mismatch_lists_keys(tmp_path):
    path = tmp_path / "three_classes.pth"
    torch.save(UNet3D(1, 3, base_channels=4, num_levels=2).state_dict(), path)
    with pytest.raises(
        ValueError,
        match=r"head\.weight: \(3, 4, 1, 1, 1\) saved, \(2, 4, 1, 1, 1\) in the model",
    ):
        UNet3D(1, 2, base_channels=4, num_levels=2, pretrained=path)


def test_pretrained_rejects_urls_paddle_missing_and_unreadable(tmp_path):
    net = UNet3D(1, 2, base_channels=4, num_levels=2)
    with pytest.raises(ValueError, match="download it and pass the local path"):
        load_pretrained(net, "https://example.org/model.pdparams")
    paddle = tmp_path / "model.pdparams"
    paddle.write_bytes(b"\x00")
    with pytest.raises(ValueError, match=r"PaddlePaddle checkpoint; only medseg/PyTorch"):
        load_pretrained(net, paddle)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        load_pretrained(net, missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth.*only medseg/PyTorch checkpoints"):
        load_pretrained(net, garbage)
    not_weights = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(ValueError, match="holds no state_dict"):
        load_pretrained(net, not_weights)


def test_onnx_export_with_dynamic_spatial_axes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = VNetDeepSup(
        in_channels=2,
        num_classes=3,
        base_channels=4,
        kernel_size=[k[::-1] for k in SPINE_KERNELS],
        stride_size=[s[::-1] for s in SPINE_STRIDES],
    ).eval()
    path = tmp_path / "vnet.onnx"
    axes = {0: "n", 2: "z", 3: "y", 4: "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its own deprecation
        torch.onnx.export(
            net,
            (torch.randn(1, 2, 8, 32, 32),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in [(8, 32, 32), (12, 16, 48)]:
        x = torch.randn(2, 2, *size)
        with torch.no_grad():
            expected = net(x).numpy()
        (got,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(got, expected, atol=1e-4)
