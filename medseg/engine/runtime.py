"""Run-time choices shared by the entry points: device, seeding, mixed precision, compilation.

The CUDA-only speed-ups (AMP, `torch.compile`, channels-last memory) are requested on the command
line and resolved here against the device: on the CPU each request is dropped with one log line,
so the same command runs everywhere.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from medseg.utils.vocabulary import choose, device_name

logger = logging.getLogger(__name__)


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(name: str = "auto", index: int | None = None) -> torch.device:
    """`auto` picks CUDA when usable, else CPU; asking for CUDA without one is an error.

    `index` chooses the GPU (a distributed run's LOCAL_RANK); None keeps torch's current one.
    """
    try:
        name = device_name(name)
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    if name == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "--device cuda was asked for but torch sees no usable CUDA device "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu"
            )
        name = "cuda"
    device = torch.device(name) if name == "cpu" or index is None else torch.device(name, index)
    logger.info(
        "device: %s%s", device, f" ({torch.cuda.get_device_name(device)})" if name == "cuda" else ""
    )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(requested: bool, dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run, or None for float32.

    Mixed precision only on CUDA; on the CPU the request is dropped with a log line. bf16 keeps
    float32's exponent range, so training needs no loss scaling with it; fp16 does (the trainer
    adds a grad scaler). A GPU without bf16 support falls back to fp16 with a warning.
    """
    try:
        dtype = choose(dtype, AMP_DTYPES, "precision")
    except ValueError as err:
        raise ValueError(f"--amp_dtype: {err}") from None
    if not requested:
        return None
    if device.type != "cuda":
        logger.warning("--amp needs a CUDA device; running in float32 on %s", device)
        return None
    # Emulated bf16 (pre-Ampere GPUs) runs, but slower than fp16: count only native support.
    if dtype == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        logger.warning("this GPU has no bfloat16 support; --amp_dtype bf16 falls back to fp16")
        dtype = "fp16"
    logger.info("mixed precision: %s autocast", dtype)
    return AMP_DTYPES[dtype]


def use_channels_last(requested: bool, device: torch.device) -> bool:
    """Channels-last-3d memory (NDHWC) only on CUDA, where cuDNN's 3D convolutions gain from it."""
    if requested and device.type != "cuda":
        logger.info("--channels_last only helps cuDNN convolutions; ignored on %s", device)
        return False
    if requested:
        logger.info("channels-last-3d memory format for the model and its input batches")
    return requested


def maybe_compile(model: torch.nn.Module, requested: bool, device: torch.device) -> torch.nn.Module:
    """`torch.compile(model)` on CUDA when asked; the model itself otherwise (with a log line).

    Compilation costs minutes at start-up and pays off on long GPU runs; on the CPU it is skipped
    because it rarely helps 3D convolutions there and needs a C++ compiler.
    """
    if not requested:
        return model
    if device.type != "cuda":
        logger.info("--compile is for CUDA runs; ignored on %s", device)
        return model
    logger.info("compiling the model with torch.compile (the first iterations are slow)")
    return torch.compile(model)


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_workers(
    device: torch.device, cpus: int | None = None, processes_per_node: int | None = None
) -> int:
    """Data-loading processes when `--num_workers` is not given (see benchmarks/README.md).

    On the CPU the workers compete with the training step for the same cores, and the phantom's
    augmentation costs a few percent of a step, so loading in the main process is fastest on
    small machines; 2 workers are used from 8 cores up. On CUDA the step does not use the cores,
    so up to 4 workers (half the cores) keep the GPU fed. Under torchrun the cores are shared
    by the processes on the machine (`LOCAL_WORLD_SIZE`).
    """
    cpus = cpus or usable_cpus()
    if processes_per_node is None:
        processes_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cpus = max(1, cpus // max(1, processes_per_node))
    if device.type == "cuda":
        return max(1, min(4, cpus // 2))
    return 2 if cpus >= 8 else 0
