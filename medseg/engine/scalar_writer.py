"""Training curves for VisualDL and/or TensorBoard, behind one small interface."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class ScalarWriter:
    """Writes scalars to every enabled backend; a no-op when none is enabled.

    Args:
        log_dir: Folder for the event files.
        visualdl: Write VisualDL logs (`visualdl --logdir <log_dir> --disable-telemetry`).
        tensorboard: Write TensorBoard logs (`tensorboard --logdir <log_dir>`).
    """

    def __init__(self, log_dir: str | Path, visualdl: bool = False, tensorboard: bool = False):
        self._writers: list[Any] = []
        if visualdl:
            try:
                from visualdl import LogWriter
            except ImportError as err:
                raise RuntimeError(
                    "--use_vdl needs VisualDL: pip install visualdl (or drop the flag)"
                ) from err
            self._writers.append(LogWriter(logdir=str(Path(log_dir) / "vdl")))
            logger.info("VisualDL: visualdl --logdir %s --disable-telemetry", Path(log_dir) / "vdl")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise RuntimeError(
                    "--use_tensorboard needs TensorBoard: pip install tensorboard"
                ) from err
            self._writers.append(SummaryWriter(log_dir=str(Path(log_dir) / "tensorboard")))
            logger.info("TensorBoard: tensorboard --logdir %s", Path(log_dir) / "tensorboard")

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Record one value of the curve `tag` at `step`."""
        for writer in self._writers:
            writer.add_scalar(tag, value, step)  # same positional order in both libraries

    def close(self) -> None:
        """Flush and close every backend."""
        for writer in self._writers:
            writer.close()
