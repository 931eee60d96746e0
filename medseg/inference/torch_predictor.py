"""A torch model as a `sliding_window_inference` predictor: numpy batch in, numpy output out.

Kept apart from `sliding_window` so that module stays torch-free for the onnxruntime runner.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` on the CPU, made without allocating on the model's own device.

    `copy.deepcopy` would first clone every weight where it lies, which fails on a GPU that has
    just run out of memory; here each tensor is copied straight to the CPU and the module
    structure is deep-copied around those copies.
    """
    memo: dict[int, Any] = {}
    for tensor in (*model.parameters(), *model.buffers()):
        on_cpu = tensor.detach().to("cpu", copy=True)
        if isinstance(tensor, torch.nn.Parameter):
            on_cpu = torch.nn.Parameter(on_cpu, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = on_cpu
    return copy.deepcopy(model, memo)


class TorchPredictor:
    """Call a model in eval mode under `torch.inference_mode()` on numpy batches.

    If the device runs out of memory, one warning is logged and this window and every later one
    run on the CPU (the model is moved there), so a long evaluation finishes instead of failing.

    Args:
        model: Maps `(B, C, pz, py, px)` to `(B, K, pz, py, px)`; a list or tuple output (deep
            supervision) is read at its first, full-resolution entry.
        device: Where to run, e.g. "cuda", "cpu" or a `torch.device`.
        amp_dtype: Autocast dtype (torch.float16 or torch.bfloat16), or None for float32;
            outputs are float32 either way. Dropped if the model falls back to the CPU.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device = "cpu",
        amp_dtype: torch.dtype | None = None,
    ):
        self.amp_dtype = amp_dtype
        self._place(model.eval(), torch.device(device))

    def _place(self, model: torch.nn.Module, device: torch.device) -> None:
        """Put `model` on `device`; on the CPU, a channels-last-3d copy.

        oneDNN runs 3D convolutions fastest on channels-last-3d weights and inputs, while the
        default layout sends one-window batches to a slow reference kernel (benchmarks/README.md).
        The copy leaves the caller's model, e.g. the one being trained on a GPU, as it was.
        """
        self.device = device
        if device.type == "cpu":
            self.model = _cpu_copy(model).to(memory_format=torch.channels_last_3d)
        else:
            self.model = model.to(device)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # A copy into torch's own (64-byte aligned) memory: oneDNN's CPU convolutions run
        # measurably faster on it than on a view of the numpy window (benchmarks/README.md).
        inputs = torch.tensor(batch, dtype=torch.float32, device=self.device)
        if self.device.type == "cpu":
            inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            outputs = self.model(inputs)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        return outputs.float().cpu().numpy()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Predict a float32 batch `(B, C, pz, py, px)`; returns float32 `(B, K, pz, py, px)`."""
        try:
            return self._run(batch)
        except torch.cuda.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            logger.warning(
                "out of memory on %s for a batch of shape %s; continuing on the CPU "
                "(lower inference.batch_size or the patch size to stay on the device)",
                self.device,
                tuple(batch.shape),
            )
            self._place(self.model, torch.device("cpu"))
            self.amp_dtype = None  # CPU autocast is slower than float32 for 3D convolutions
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return self._run(batch)
