"""Whole-volume inference: sliding window (torch-free) and a torch model wrapper.

`sliding_window_inference` and `softmax` import numpy only, so the onnxruntime deploy runner uses
them without torch. The torch wrapper is imported from its module where torch is wanted:
`from medseg.inference.torch_predictor import TorchPredictor`.
"""

from medseg.inference.sliding_window import (
    importance_map,
    sliding_window_inference,
    softmax,
    window_starts,
)

__all__ = ["importance_map", "sliding_window_inference", "softmax", "window_starts"]
