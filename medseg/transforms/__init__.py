"""Label-safe 3-D training transforms (NumPy/SciPy only; importing this package loads no torch).

Call contract: `image, label = t(image, label, rng)`, see `medseg.transforms.compose`. Importing
the package registers every transform in `TRANSFORMS` under its class name.
"""

from medseg.transforms.compose import Compose, RandomTransform, Transform, training_patch
from medseg.transforms.intensity import (
    Normalize,
    RandomContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomScaleIntensity,
)
from medseg.transforms.spatial import (
    RandomCrop3D,
    RandomFlip3D,
    RandomResizedCrop3D,
    RandomRotation3D,
    Resize3D,
)

__all__ = [
    "Compose",
    "Normalize",
    "RandomContrast",
    "RandomCrop3D",
    "RandomFlip3D",
    "RandomGamma",
    "RandomGaussianBlur",
    "RandomGaussianNoise",
    "RandomResizedCrop3D",
    "RandomRotation3D",
    "RandomScaleIntensity",
    "RandomTransform",
    "Resize3D",
    "Transform",
    "training_patch",
]
