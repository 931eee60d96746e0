"""medseg: 3D medical image segmentation with PyTorch.

Importing this package imports no torch: the torch-free parts (preprocessing, sliding window,
metrics, I/O) are shared with the onnxruntime deploy runner.
"""

__version__ = "0.1.0"
