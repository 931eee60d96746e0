"""Run-time choices shared by the entry points: device, seeding, mixed precision."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when usable, else CPU; asking for CUDA without one is an error."""
    if name not in ("auto", "cpu", "cuda", "gpu"):
        raise ValueError(f"--device must be auto, cpu or cuda, got '{name}'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                "--device cuda was asked for but torch sees no usable CUDA device "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu"
            )
        name = "cuda"
    device = torch.device(name)
    logger.info(
        "device: %s%s", device, f" ({torch.cuda.get_device_name()})" if name == "cuda" else ""
    )
    return device


def use_amp(requested: bool, device: torch.device) -> bool:
    """Mixed precision only on CUDA; on the CPU the request is dropped with a log line."""
    if requested and device.type != "cuda":
        logger.warning("--amp needs a CUDA device; training in float32 on %s", device)
        return False
    return requested


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
