"""Label-safe 3-D training transforms (NumPy/SciPy only; importing this package loads no torch).

Call contract: `image, label = t(image, label, rng)`, see `medseg.transforms.compose`. Importing
the package registers every transform in `TRANSFORMS` under its class name.
"""

from medseg.transforms.compose import Compose, RandomTransform, Transform, training_patch
from medseg.transforms.intensity import (
    Contrast,
    Gamma,
    GaussianBlur,
    LowResolution,
    Normalize,
    RandomContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomLowResolution,
    RandomScaleIntensity,
    ScaleIntensity,
)
from medseg.transforms.spatial import (
    Flip,
    RandomCrop3D,
    RandomFlip3D,
    RandomResizedCrop3D,
    RandomRotation3D,
    RandomZoom3D,
    Resize3D,
    Rotate,
    Zoom,
)

__all__ = [
    "Compose",
    "Contrast",
    "Flip",
    "Gamma",
    "GaussianBlur",
    "LowResolution",
    "Normalize",
    "RandomContrast",
    "RandomCrop3D",
    "RandomFlip3D",
    "RandomGamma",
    "RandomGaussianBlur",
    "RandomGaussianNoise",
    "RandomLowResolution",
    "RandomResizedCrop3D",
    "RandomRotation3D",
    "RandomScaleIntensity",
    "RandomTransform",
    "RandomZoom3D",
    "Resize3D",
    "Rotate",
    "ScaleIntensity",
    "Transform",
    "Zoom",
    "training_patch",
]
