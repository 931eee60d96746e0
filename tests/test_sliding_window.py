"""Sliding-window inference: exact reconstruction, grid, padding, TTA, batching, torch wrapper.

Known answers: blending is a weighted average, so a predictor that returns its input gives the
input back wherever the weights are positive (everywhere); a fully convolutional model gives the
same output as one full-volume pass at every voxel that each covering window sees together with
the model's whole receptive field.
"""

from __future__ import annotations

import itertools
import logging
import tracemalloc

import numpy as np
import pytest

from medseg.inference import importance_map, sliding_window_inference, softmax, window_starts


def identity(batch):
    return batch


class CountingPredictor:
    """Returns its input and records every batch it was given."""

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch.copy())
        return batch


# ---------------------------------------------------------------- grid and weights


@pytest.mark.parametrize(
    ("size", "patch", "overlap", "expected"),
    [
        (20, 8, 0.5, [0, 4, 8, 12]),
        (21, 8, 0.5, [0, 3, 6, 10, 13]),
        (8, 8, 0.5, [0]),
        (5, 8, 0.5, [0]),
        (20, 8, 0.0, [0, 6, 12]),
        (10, 4, 0.75, list(range(7))),
    ],
)
def test_window_starts(size, patch, overlap, expected):
    starts = window_starts(size, patch, overlap)
    assert starts == expected
    if size >= patch:  # last window flush with the border, steps no longer than allowed
        assert starts[-1] + patch == size
        assert max(np.diff(starts), default=0) <= patch * (1 - overlap)


def test_importance_map_is_symmetric_peaked_and_positive():
    weights = importance_map((9, 12, 7), gaussian=True, sigma_scale=0.125)
    assert weights.dtype == np.float32 and weights.max() == 1.0
    for axis in range(3):
        np.testing.assert_array_equal(weights, np.flip(weights, axis))
    assert weights[4, 5, 3] == weights.max() > weights[0, 0, 0] > 0
    tiny = importance_map((32, 32, 32), sigma_scale=0.005)  # underflows to 0 in float32
    assert tiny.min() > 0 and tiny.min() == tiny[tiny < 1].min()
    np.testing.assert_array_equal(importance_map((3, 4, 5), gaussian=False), np.ones((3, 4, 5)))


def test_softmax_is_stable_and_normalised():
    logits = np.array([[1000.0, 0.0], [1000.0, 1.0], [999.0, -5.0]], dtype=np.float32)
    probs = softmax(logits, axis=0)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-6)
    assert np.isfinite(probs).all() and probs[0, 0] == pytest.approx(probs[1, 0])


# ---------------------------------------------------------------- reconstruction


@pytest.mark.parametrize(
    "spatial",
    [(20, 23, 17), (8, 8, 8), (5, 6, 8), (3, 30, 9)],
    ids=["larger", "equal", "smaller", "mixed"],
)
@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize("tta_axes", [(), (0, 2)])
def test_identity_predictor_returns_the_input(spatial, gaussian, tta_axes):
    image = np.random.default_rng(0).standard_normal((2, *spatial)).astype(np.float32)
    out = sliding_window_inference(
        image, identity, (8, 8, 8), overlap=0.5, batch_size=3, gaussian=gaussian, tta_axes=tta_axes
    )
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, image, rtol=1e-5, atol=1e-6)


def test_constant_predictor_with_other_class_count_gives_constant():
    image = np.zeros((1, 13, 11, 9), dtype=np.float64)
    out = sliding_window_inference(
        image,
        lambda b: np.full((b.shape[0], 3, *b.shape[2:]), 2.5),
        (4, 5, 6),
        overlap=0.3,
        num_classes=3,
    )
    assert out.shape == (3, 13, 11, 9)
    np.testing.assert_allclose(out, 2.5, rtol=1e-6)


def test_batching_and_tta_call_counts():
    predictor = CountingPredictor()
    image = np.zeros((1, 12, 12, 12), dtype=np.float32)
    sliding_window_inference(image, predictor, (8, 8, 8), overlap=0.5, batch_size=3)
    # 2 windows per axis → 2 rows (z) of 4 windows; a call never spans two rows
    assert [b.shape[0] for b in predictor.batches] == [3, 1, 3, 1]
    predictor.batches.clear()
    sliding_window_inference(image, predictor, (8, 8, 8), batch_size=8, tta_axes=(0, 1, 2))
    assert len(predictor.batches) == 16  # one call per row × 2³ flip combinations


def test_many_classes_lower_the_windows_per_call():
    """At K = 128 one window's output is 126 MB: one window per call when K is known."""
    image = np.zeros((1, 48, 64, 160), dtype=np.float32)
    calls = []

    def predictor(batch):
        calls.append(batch.shape[0])
        return np.zeros((batch.shape[0], 128, *batch.shape[2:]), np.float32)

    sliding_window_inference(image, predictor, (48, 64, 80), overlap=0.0, batch_size=2)
    assert calls == [2]
    calls.clear()
    sliding_window_inference(
        image, predictor, (48, 64, 80), overlap=0.0, batch_size=2, num_classes=128
    )
    assert calls == [1, 1]


def test_small_volume_is_padded_with_channel_minimum_or_given_value():
    image = np.stack([np.full((3, 4, 5), 7.0), np.arange(60.0).reshape(3, 4, 5) - 10.0])
    predictor = CountingPredictor()
    sliding_window_inference(image, predictor, (6, 6, 6))
    (batch,) = predictor.batches
    assert batch.shape == (1, 2, 6, 6, 6)
    np.testing.assert_array_equal(batch[0, :, 1:4, 1:5, 0:5], image)  # padded symmetrically
    assert batch[0, 0, 0, 0, 0] == 7.0 and batch[0, 1, 0, 0, 0] == -10.0
    predictor.batches.clear()
    sliding_window_inference(image, predictor, (6, 6, 6), pad_value=0.0)
    assert predictor.batches[0][0, :, 0, 0, 0].tolist() == [0.0, 0.0]


def test_memory_is_one_accumulator_and_one_weight_map():
    image = np.random.default_rng(1).standard_normal((1, 64, 64, 64)).astype(np.float32)
    volume_bytes = image.nbytes  # 1 MiB
    two_classes = lambda b: np.concatenate([b, -b], axis=1)  # noqa: E731
    tracemalloc.start()
    out = sliding_window_inference(image, two_classes, (16, 16, 16), batch_size=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # accumulator (2 volumes) + weight map (1 volume) + window-sized buffers: one more
    # full-size array (e.g. a per-window copy of the volume) would break this bound.
    assert peak < 4 * volume_bytes
    np.testing.assert_allclose(out[1], -image[0], rtol=1e-5, atol=1e-6)


def test_bad_arguments_and_predictor_outputs_are_named():
    image = np.zeros((1, 8, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(C, Z, Y, X\).*\(8, 8, 8\)"):
        sliding_window_inference(image[0], identity, (4, 4, 4))
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(image, identity, (4, 4, 4), overlap=1.0)
    with pytest.raises(ValueError, match=r"tta_axes.*3"):
        sliding_window_inference(image, identity, (4, 4, 4), tta_axes=(3,))
    with pytest.raises(ValueError, match=r"returned shape \(1, 1, 2, 2, 2\).*\(1, 1, 4, 4, 4\)"):
        sliding_window_inference(image, lambda b: b[:, :, :2, :2, :2], (4, 4, 4))
    with pytest.raises(ValueError, match=r"expected \(1, 5, 4, 4, 4\)"):
        sliding_window_inference(image, identity, (4, 4, 4), num_classes=5)


# ---------------------------------------------------------------- torch model


def receptive_field_safe(shape, patch, overlap, radius):
    """Voxels every covering window sees with `radius` voxels of context (or the image edge)."""
    safe = np.ones(shape, dtype=bool)
    grids = [window_starts(s, p, overlap) for s, p in zip(shape, patch, strict=True)]
    for axis, (size, p, starts) in enumerate(zip(shape, patch, grids, strict=True)):
        index = np.arange(size)
        ok = np.ones(size, dtype=bool)
        for start in starts:
            inside = (index >= start) & (index < start + p)
            low_ok = (start == 0) | (index - start >= radius)
            high_ok = (start + p == size) | (start + p - 1 - index >= radius)
            ok &= ~inside | (low_ok & high_ok)
        view = [1, 1, 1]
        view[axis] = size
        safe &= ok.reshape(view)
    return safe


@pytest.mark.parametrize("tta_axes", [(), (1,)])
def test_fully_convolutional_model_matches_full_volume_pass(tta_axes):
    torch = pytest.importorskip("torch")
    from medseg.inference.torch_predictor import TorchPredictor

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, 3, 3, padding=1),
    )
    image = np.random.default_rng(2).standard_normal((2, 20, 26, 18)).astype(np.float32)
    predictor = TorchPredictor(model, "cpu")
    full = predictor(image[None])[0]
    with torch.inference_mode():
        direct = model(torch.from_numpy(image[None])).numpy()[0]
    np.testing.assert_allclose(full, direct, rtol=1e-6, atol=1e-6)
    if tta_axes:  # the reference is the same mirror average over the whole volume
        flipped = np.flip(predictor(np.flip(image[None], 3).copy())[0], 2)
        full = (full + flipped) / 2
    patch, overlap = (12, 12, 12), 0.5
    out = sliding_window_inference(
        image, predictor, patch, overlap, batch_size=2, tta_axes=tta_axes
    )
    safe = receptive_field_safe(image.shape[1:], patch, overlap, radius=2)
    assert safe.mean() > 0.2  # enough voxels to make the comparison meaningful
    np.testing.assert_allclose(out[:, safe], full[:, safe], rtol=1e-4, atol=1e-5)
    assert not np.allclose(out[:, ~safe], full[:, ~safe], atol=1e-5)  # the check can fail


def test_torch_predictor_falls_back_to_cpu_once(caplog):
    torch = pytest.importorskip("torch")
    from medseg.inference.torch_predictor import TorchPredictor

    moved = []

    class NeedsCpu(torch.nn.Module):
        """Parameter-free; 'runs out of memory' on any device but the CPU."""

        def _apply(self, *args, **kwargs):  # every .to() / .cpu() passes here
            moved.append(self)
            return super()._apply(*args, **kwargs)

        def forward(self, x):
            if x.device.type != "cpu":
                raise torch.cuda.OutOfMemoryError("simulated")
            return [x * 2, x[:, :, ::2]]  # deep-supervision style list: first entry is used

    model = NeedsCpu()
    predictor = TorchPredictor(model, device="meta")
    moved.clear()
    batch = np.ones((1, 1, 4, 4, 4), dtype=np.float32)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            np.testing.assert_array_equal(predictor(batch), 2 * batch)
    assert predictor.device.type == "cpu"
    # The caller's model (during training, the one being trained) stays where it was.
    assert predictor.model is not model and model not in moved
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "out of memory on meta" in warnings[0].getMessage()

    class AlwaysOom(torch.nn.Module):
        def forward(self, x):
            raise torch.cuda.OutOfMemoryError("simulated")

    with pytest.raises(torch.cuda.OutOfMemoryError):  # on the CPU there is nowhere to go
        TorchPredictor(AlwaysOom(), "cpu")(batch)


def test_cpu_predictor_runs_an_independent_copy():
    torch = pytest.importorskip("torch")
    from medseg.inference.torch_predictor import TorchPredictor

    model = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2)).eval()
    predictor = TorchPredictor(model, "cpu")
    original, copied = model.state_dict(), predictor.model.state_dict()
    for key in original:
        assert torch.equal(original[key], copied[key])
        assert original[key].data_ptr() != copied[key].data_ptr()
    batch = np.random.default_rng(0).standard_normal((1, 1, 5, 6, 7)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(predictor(batch), expected, rtol=1e-5, atol=1e-6)
    # Under bfloat16 autocast (what --amp_dtype bf16 asks for): float32 out, bf16-close values.
    low = TorchPredictor(model, "cpu", torch.bfloat16)(batch)
    assert low.dtype == np.float32 and not np.array_equal(low, expected)
    np.testing.assert_allclose(low, expected, rtol=0.05, atol=0.05)


def test_sliding_window_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, medseg.inference, medseg.metrics; sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_tta_axes_combinations_cover_all_flips():
    seen = []

    def record(batch):
        seen.append(batch[0, 0].copy())
        return batch

    ramp = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    sliding_window_inference(ramp, record, (2, 2, 2), tta_axes=(0, 2))
    expected = [np.flip(ramp[0], axes) for axes in ((), (0,), (2,), (0, 2))]
    assert len(seen) == 4
    for got, want in itertools.zip_longest(seen, expected):
        np.testing.assert_array_equal(got, want)
