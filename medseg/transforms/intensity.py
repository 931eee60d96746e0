"""Intensity transforms: they change image values only and pass the label through untouched.

Defaults of the random ones follow nnU-Net's training augmentation (ranges and probabilities),
except the noise, which takes a std range rather than nnU-Net's variance range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.cvlibs.registry import TRANSFORMS
from medseg.transforms.compose import Pair, RandomTransform, Transform
from medseg.transforms.functional import normalize_channels, to_range


@TRANSFORMS.register()
class Normalize(Transform):
    """Z-score normalise each channel (deterministic).

    Args:
        mean: One value or one per channel; None computes it from the image per channel.
        std: Likewise for the standard deviation.
        nonzero: Compute statistics over non-zero voxels only and leave zero voxels at zero.
        eps: Lower bound on the std, so a constant channel does not divide by zero.
    """

    def __init__(
        self,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        nonzero: bool = False,
        eps: float = 1e-8,
    ):
        self.mean = mean
        self.std = std
        self.nonzero = bool(nonzero)
        self.eps = float(eps)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Normalise every channel."""
        return normalize_channels(image, self.mean, self.std, self.nonzero, self.eps), label


@TRANSFORMS.register()
class ScaleIntensity(Transform):
    """Multiply intensities by a fixed factor (brightness; `RandomScaleIntensity`'s twin).

    Args:
        factor: One factor for all channels, or one per channel.
    """

    def __init__(self, factor: float | Sequence[float]):
        self.factor = np.atleast_1d(np.asarray(factor, dtype=np.float32))
        if self.factor.ndim != 1 or self.factor.size == 0:
            raise ValueError(f"ScaleIntensity.factor must be a number or a list, got {factor!r}")

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Scale every channel."""
        if self.factor.size not in (1, image.shape[0]):
            raise ValueError(
                f"ScaleIntensity has {self.factor.size} factors for {image.shape[0]} channels"
            )
        return image * self.factor.reshape(-1, 1, 1, 1), label


@TRANSFORMS.register()
class RandomScaleIntensity(RandomTransform):
    """Multiply intensities by a random factor (brightness).

    Args:
        scale: Factor range (low, high).
        prob: Probability of applying.
        per_channel: Draw one factor per channel instead of one for all.
    """

    def __init__(
        self,
        scale: Sequence[float] = (0.75, 1.25),
        prob: float = 0.15,
        per_channel: bool = False,
    ):
        super().__init__(prob)
        self.scale = to_range(scale, "RandomScaleIntensity.scale")
        self.per_channel = bool(per_channel)

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Scale by the drawn factor(s)."""
        count = image.shape[0] if self.per_channel else 1
        return ScaleIntensity(rng.uniform(*self.scale, size=count)).apply(image, label, rng)


@TRANSFORMS.register()
class Gamma(Transform):
    """`x ** gamma` on each channel rescaled to [0, 1], mapped back (`RandomGamma`'s twin).

    Each channel's minimum and maximum are kept; a constant channel is left as is.

    Args:
        gamma: The exponent, > 0.
    """

    def __init__(self, gamma: float):
        if not isinstance(gamma, (int, float)) or gamma <= 0:
            raise ValueError(f"Gamma.gamma must be a positive number, got {gamma!r}")
        self.gamma = float(gamma)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Apply the exponent to every channel."""
        gamma = np.float32(self.gamma)
        out = np.empty_like(image)
        for c, channel in enumerate(image):
            low, high = channel.min(), channel.max()
            span = high - low
            if span == 0:
                out[c] = channel
                continue
            out[c] = np.power((channel - low) / span, gamma) * span + low
        return out, label


@TRANSFORMS.register()
class RandomGamma(RandomTransform):
    """Apply `x ** gamma` to each channel rescaled to [0, 1], then map back to its original range.

    Each channel's minimum and maximum are kept; a constant channel is left as is.

    Args:
        gamma: Gamma range (low, high), both > 0.
        prob: Probability of applying.
    """

    def __init__(self, gamma: Sequence[float] = (0.7, 1.5), prob: float = 0.3):
        super().__init__(prob)
        self.gamma = to_range(gamma, "RandomGamma.gamma")
        if self.gamma[0] <= 0:
            raise ValueError(f"RandomGamma.gamma must be positive, got {gamma!r}")

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Apply one drawn gamma to every channel."""
        return Gamma(float(rng.uniform(*self.gamma))).apply(image, label, rng)


@TRANSFORMS.register()
class RandomGaussianNoise(RandomTransform):
    """Add zero-mean Gaussian noise whose standard deviation is drawn per call.

    Args:
        std: Range of the noise standard deviation, in image units (nnU-Net draws the variance
            from (0, 0.1), i.e. std up to about 0.32 on z-scored data).
        prob: Probability of applying.
    """

    def __init__(self, std: Sequence[float] = (0.0, 0.1), prob: float = 0.1):
        super().__init__(prob)
        self.std = to_range(std, "RandomGaussianNoise.std")
        if self.std[0] < 0:
            raise ValueError(f"RandomGaussianNoise.std must be >= 0, got {std!r}")

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Add noise of the drawn std."""
        sigma = np.float32(rng.uniform(*self.std))
        noise = rng.standard_normal(image.shape, dtype=np.float32)
        noise *= sigma
        noise += image
        return noise, label


@TRANSFORMS.register()
class GaussianBlur(Transform):
    """Smooth each channel with a fixed spatial Gaussian (`RandomGaussianBlur`'s twin).

    Args:
        sigma: The kernel's standard deviation in voxels: one for all axes or `[z, y, x]`.
    """

    def __init__(self, sigma: float | Sequence[float]):
        values = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
        if values.size not in (1, 3) or (values < 0).any():
            raise ValueError(f"GaussianBlur.sigma must be one or three numbers >= 0, got {sigma!r}")
        self.sigma = float(values[0]) if values.size == 1 else tuple(float(v) for v in values)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Blur every channel."""
        out = np.empty_like(image)
        for c, channel in enumerate(image):
            ndimage.gaussian_filter(channel, self.sigma, output=out[c], mode="nearest")
        return out, label


@TRANSFORMS.register()
class RandomGaussianBlur(RandomTransform):
    """Smooth each channel with a Gaussian over the spatial axes only (never across channels).

    Args:
        sigma: Range of the kernel's standard deviation, in voxels.
        prob: Probability of applying.
    """

    def __init__(self, sigma: Sequence[float] = (0.5, 1.0), prob: float = 0.2):
        super().__init__(prob)
        self.sigma = to_range(sigma, "RandomGaussianBlur.sigma")
        if self.sigma[0] < 0:
            raise ValueError(f"RandomGaussianBlur.sigma must be >= 0, got {sigma!r}")

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Blur every channel with the drawn sigma."""
        return GaussianBlur(float(rng.uniform(*self.sigma))).apply(image, label, rng)


@TRANSFORMS.register()
class Contrast(Transform):
    """Stretch or compress each channel around its mean by a fixed factor (`RandomContrast`'s twin).

    Args:
        factor: Contrast factor; below 1 reduces contrast.
        preserve_range: Clip the result to the channel's original [min, max].
    """

    def __init__(self, factor: float, preserve_range: bool = True):
        if not isinstance(factor, (int, float)) or factor < 0:
            raise ValueError(f"Contrast.factor must be a number >= 0, got {factor!r}")
        self.factor = float(factor)
        self.preserve_range = bool(preserve_range)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Apply the factor to every channel around that channel's mean."""
        factor = np.float32(self.factor)
        out = np.empty_like(image)
        for c, channel in enumerate(image):
            mean = np.float32(channel.mean(dtype=np.float64))
            out[c] = (channel - mean) * factor + mean
            if self.preserve_range:
                np.clip(out[c], channel.min(), channel.max(), out=out[c])
        return out, label


@TRANSFORMS.register()
class RandomContrast(RandomTransform):
    """Stretch or compress each channel around its mean by a random factor.

    Args:
        factor: Contrast factor range (low, high); values below 1 reduce contrast.
        prob: Probability of applying.
        preserve_range: Clip the result to the channel's original [min, max].
    """

    def __init__(
        self,
        factor: Sequence[float] = (0.75, 1.25),
        prob: float = 0.15,
        preserve_range: bool = True,
    ):
        super().__init__(prob)
        self.factor = to_range(factor, "RandomContrast.factor")
        self.preserve_range = bool(preserve_range)

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Apply one drawn factor to every channel around that channel's mean."""
        twin = Contrast(float(rng.uniform(*self.factor)), self.preserve_range)
        return twin.apply(image, label, rng)


@TRANSFORMS.register()
class LowResolution(Transform):
    """Simulate a coarser scan: nearest-neighbour down-sampling, then cubic up-sampling back.

    nnU-Net's low-resolution simulation with a fixed zoom (`RandomLowResolution`'s twin). The
    label is untouched.

    Args:
        zoom: Fraction of the size kept along each spatial axis during the round trip, in (0, 1].
    """

    def __init__(self, zoom: float):
        if not isinstance(zoom, (int, float)) or not 0 < zoom <= 1:
            raise ValueError(f"LowResolution.zoom must be in (0, 1], got {zoom!r}")
        self.zoom = float(zoom)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Down- and up-sample every channel."""
        shape = np.asarray(image.shape[1:])
        small = np.maximum(np.rint(shape * self.zoom).astype(int), 1)
        if (small == shape).all():
            return image, label
        out = np.empty_like(image)
        for c, channel in enumerate(image):
            down = ndimage.zoom(channel, small / shape, order=0, mode="nearest", grid_mode=True)
            out[c] = ndimage.zoom(
                down, shape / np.asarray(down.shape), order=3, mode="nearest", grid_mode=True
            )
        return out, label


@TRANSFORMS.register()
class RandomLowResolution(RandomTransform):
    """Simulate a coarser scan with a random zoom (nnU-Net: zoom in (0.5, 1), p = 0.25).

    Args:
        zoom: Range of the kept size fraction (low, high), within (0, 1].
        prob: Probability of applying.
    """

    def __init__(self, zoom: Sequence[float] = (0.5, 1.0), prob: float = 0.25):
        super().__init__(prob)
        self.zoom = to_range(zoom, "RandomLowResolution.zoom")
        if not 0 < self.zoom[0] <= self.zoom[1] <= 1:
            raise ValueError(f"RandomLowResolution.zoom must lie in (0, 1], got {zoom!r}")

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Down- and up-sample with the drawn zoom."""
        return LowResolution(float(rng.uniform(*self.zoom))).apply(image, label, rng)
