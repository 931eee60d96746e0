"""Whole-volume inference, torch-free: the case pipeline, `Segmenter`, the sliding window.

`from medseg.inference import Segmenter` gives an exported model as a Python object (numpy,
onnxruntime and SimpleITK only). The torch wrapper is imported from its module where torch is
wanted: `from medseg.inference.torch_predictor import TorchPredictor`.
"""

from medseg.inference.case import CasePipeline, CasePrediction
from medseg.inference.segmenter import Segmenter
from medseg.inference.sliding_window import (
    importance_map,
    sliding_window_inference,
    sliding_window_slabs,
    softmax,
    window_starts,
)

__all__ = [
    "CasePipeline",
    "CasePrediction",
    "Segmenter",
    "importance_map",
    "sliding_window_inference",
    "sliding_window_slabs",
    "softmax",
    "window_starts",
]
