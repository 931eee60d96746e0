"""An ONNX model as a `sliding_window_inference` predictor, on onnxruntime (torch-free).

Providers, best first: TensorRT (when the build lists it; its engines are cached in a folder, so
only the first run of a window shape pays the build), CUDA, then the CPU. onnxruntime-gpu lists
the TensorRT and CUDA providers whether or not their libraries and a GPU are usable, and a session
asked for them falls back without raising; so the providers the session really got are read back
with `get_providers()` and one log line says where the model runs. With device "auto" the
fallback is quiet (onnxruntime's own load errors are silenced); with "gpu" onnxruntime's message
saying why a provider could not load is kept and the fallback is a warning.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np

from medseg.utils.vocabulary import device_name

logger = logging.getLogger(__name__)

ORT_DEFAULT_SEVERITY = 2  # onnxruntime's default logger level (warnings)
ORT_SILENT = 4  # fatal errors only
TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
TRT_CACHE = "trt_cache"  # engine cache folder beside the model, unless given


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            "the deploy runner needs onnxruntime: pip install onnxruntime (CPU) or "
            "onnxruntime-gpu (CUDA), not both"
        ) from err
    return onnxruntime


class OnnxPredictor:
    """Run an ONNX segmentation model on numpy batches `(B, C, z, y, x)` → `(B, K, z, y, x)`.

    Args:
        model_path: The .onnx file.
        device: "auto" or "gpu" use onnxruntime's CUDA provider when it is usable, else the CPU;
            "cpu" uses the CPU.
        threads: CPU threads for one operator (onnxruntime's intra-op pool); None lets
            onnxruntime choose (one per physical core).
        trt_cache: TensorRT engine cache folder; None: `trt_cache/` beside the model.

    Attributes:
        providers: The execution providers the session uses, best first.
        device: "gpu" when the TensorRT or CUDA provider is in use, else "cpu".
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        device: str = "auto",
        threads: int | None = None,
        trt_cache: str | os.PathLike | None = None,
    ):
        device = device_name(device)
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Errors only: a GPU provider that fails to load is reported by the log line below.
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        listed = [
            p for p in GPU_PROVIDERS if device != "cpu" and p in ort.get_available_providers()
        ]
        cache = Path(model_path).parent / TRT_CACHE if trt_cache is None else Path(trt_cache)
        trt_options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
        wanted = [(p, trt_options) if p == TENSORRT else p for p in listed] + [CPU]
        if listed and device == "auto":
            ort.set_default_logger_severity(ORT_SILENT)
        # onnxruntime prints ("EP Error ...") when a provider's libraries are missing; with "auto"
        # that is expected on a machine without them, and the log line below says it.
        quiet = (
            contextlib.redirect_stdout(io.StringIO())
            if device == "auto"
            else contextlib.nullcontext()
        )
        try:
            with quiet:
                self.session = ort.InferenceSession(str(model_path), options, providers=wanted)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{model_path}: onnxruntime could not load the model ({err})") from err
        finally:
            ort.set_default_logger_severity(ORT_DEFAULT_SEVERITY)
        self.providers = list(self.session.get_providers())
        self.device = "gpu" if self.providers[0] in GPU_PROVIDERS else "cpu"
        fallback = ""
        if device != "cpu" and self.providers[0] != (listed or [CPU])[0]:
            unusable = [p for p in listed if p not in self.providers]
            fallback = f"; {', '.join(unusable)} not usable here"
        elif device != "cpu" and not listed:
            fallback = "; this onnxruntime build has no GPU provider (that needs onnxruntime-gpu)"
        log = logger.warning if device == "gpu" and fallback else logger.info
        log(
            "onnxruntime %s runs %s on the %s (providers: %s)%s",
            ort.__version__,
            os.path.basename(str(model_path)),
            self.device.upper(),
            ", ".join(self.providers),
            fallback,
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{model_path}: expected a model with one input, got {len(inputs)}")
        self.input_name = inputs[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Predict a batch; returns float32 `(B, K, z, y, x)` (the graph's first output)."""
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)
