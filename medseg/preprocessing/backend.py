"""Choose the array backend for preprocessing: CuPy on a usable GPU, NumPy/SciPy otherwise.

Detection follows what fails in practice: CuPy may be missing (ImportError), installed without a
driver or device (`cupy.is_available()` is False), or built for another CUDA major version, which
only shows when the first kernel compiles. So a tiny kernel is run once; the answer is cached for
the process. Asking for the GPU where none is usable logs one line and uses NumPy.
"""

from __future__ import annotations

import functools
import logging
from types import ModuleType

logger = logging.getLogger(__name__)

BACKENDS = ("numpy", "cupy")


@functools.lru_cache(maxsize=1)
def gpu_unavailable_reason() -> str | None:
    """Why CuPy cannot run here, or None when it can (checked once per process)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install cupy-cuda13x, or cupy-cuda12x for CUDA 12)"
    try:
        if not cupy.is_available():
            return "CuPy finds no usable CUDA device"
        probe = cupy.arange(4, dtype=cupy.float32)
        if float((probe * 2).sum()) != 12.0:
            return "a CuPy test kernel returned a wrong result"
    except Exception as err:  # any CUDA runtime or compile error means "not usable"
        return f"a CuPy test kernel failed ({type(err).__name__}: {err})"
    return None


def select_backend(use_gpu: bool) -> str:
    """The backend name: "cupy" when `use_gpu` and a GPU is usable, else "numpy".

    Asking for the GPU where none is usable logs why, once per process.
    """
    if not use_gpu:
        return "numpy"
    reason = gpu_unavailable_reason()
    if reason is None:
        return "cupy"
    _log_fallback(reason)
    return "numpy"


@functools.lru_cache(maxsize=1)
def _log_fallback(reason: str) -> None:
    logger.warning("GPU preprocessing requested but unavailable: %s; using NumPy/SciPy", reason)


def array_module(backend: str) -> ModuleType:
    """The array module (`numpy` or `cupy`) of a backend name."""
    if backend == "numpy":
        import numpy

        return numpy
    if backend == "cupy":
        reason = gpu_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"backend 'cupy' is not usable: {reason}")
        import cupy

        return cupy
    raise ValueError(f"preprocessing backend {backend!r} is not known; accepted: {BACKENDS}")


def ndimage_module(backend: str) -> ModuleType:
    """`scipy.ndimage` or `cupyx.scipy.ndimage` for a backend name."""
    array_module(backend)  # validates the name and the device
    if backend == "cupy":
        import cupyx.scipy.ndimage

        return cupyx.scipy.ndimage
    import scipy.ndimage

    return scipy.ndimage
