"""The CuPy backend: GPU results match the CPU (with a GPU), the fallback is logged (without)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from medseg.preprocessing import backend
from medseg.preprocessing.pipeline import preprocess_case
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.resample import resample_image, resample_label
from tests._prepare_data import geometry, make_case

HAS_GPU = backend.gpu_unavailable_reason() is None


@pytest.mark.skipif(HAS_GPU, reason="tests the fallback where no GPU is usable")
def test_asking_for_the_gpu_without_one_falls_back_with_one_log_line(caplog, monkeypatch):
    backend._log_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger="medseg.preprocessing.backend"):
        assert backend.select_backend(True) == "numpy"
        assert backend.select_backend(True) == "numpy"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "using NumPy/SciPy" in lines[0]
    assert backend.select_backend(False) == "numpy"
    with pytest.raises(RuntimeError, match="backend 'cupy' is not usable"):
        resample_image(np.zeros((1, 4, 4, 4), np.float32), (8, 8, 8), backend="cupy")


def test_missing_cupy_is_reported_as_not_installed(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    backend.gpu_unavailable_reason.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    try:
        assert "CuPy is not installed" in backend.gpu_unavailable_reason()
    finally:
        monkeypatch.undo()
        backend.gpu_unavailable_reason.cache_clear()


def test_unknown_backend_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"accepted: \('numpy', 'cupy'\)"):
        backend.array_module("jax")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a usable CUDA device")
@pytest.mark.parametrize("order", [1, 3])
def test_gpu_and_cpu_resampling_agree(order):
    image, label = make_case(0, shape=(20, 40, 48), channels=2)
    image = image.astype(np.float32)
    shape = (47, 31, 60)
    cpu = resample_image(image, shape, order, "numpy")
    gpu = resample_image(image, shape, order, "cupy")
    assert gpu.dtype == np.float32 and np.allclose(gpu, cpu, rtol=1e-5, atol=1e-3)
    for method in ("nearest", "onehot"):
        assert np.array_equal(
            resample_label(label, shape, method, "cupy"), resample_label(label, shape, method)
        )


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a usable CUDA device")
def test_gpu_and_cpu_preprocessing_agree():
    image, label = make_case(1)
    recipe = Recipe(
        target_spacing=(1.0, 0.7, 0.9),
        image_order=1,
        normalization={"type": "ct", "window": [0, 300]},
    )
    args = (image.astype(np.float32), geometry(1), recipe, label)
    cpu_image, cpu_label, cpu_record = preprocess_case(*args)
    gpu_image, gpu_label, gpu_record = preprocess_case(*args, backend="cupy")
    assert np.allclose(gpu_image, cpu_image, atol=1e-5)
    assert np.array_equal(gpu_label, cpu_label) and gpu_record == cpu_record


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a usable CUDA device")
def test_gpu_and_cpu_intensity_work_agree():
    from medseg.preprocessing.intensity import normalize

    image, _ = make_case(2, shape=(12, 20, 24), channels=2)
    specs = [{"type": "ct", "window": [-100, 200]}, {"type": "zscore_nonzero"}]
    cpu, cpu_used = normalize(image.astype(np.float32), specs)
    gpu, gpu_used = normalize(image.astype(np.float32), specs, backend="cupy")
    assert isinstance(gpu, np.ndarray) and np.allclose(gpu, cpu, atol=1e-5)
    assert gpu_used[1]["mean"] == pytest.approx(cpu_used[1]["mean"])
