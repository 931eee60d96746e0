"""The transform call contract, its base classes, and `Compose`.

Every transform is called as `image, label = t(image, label, rng)`: `image` is float32
`(C, Z, Y, X)`, `label` an integer `(Z, Y, X)` map or None, and `rng` a `numpy.random.Generator`
owned by the caller. Transforms keep no random state and never touch NumPy's global RNG, so a
sample's augmentation is fixed by the seed the dataset derives for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from medseg.cvlibs.registry import TRANSFORMS
from medseg.transforms.functional import check_prob

Pair = tuple[np.ndarray, np.ndarray | None]


def check_pair(image: np.ndarray, label: np.ndarray | None, where: str) -> Pair:
    """Validate an (image, label) pair and return the image as float32.

    Raises:
        ValueError: naming `where` and the offending shapes or dtypes.
    """
    image = np.asarray(image)
    if image.ndim != 4 or not np.issubdtype(image.dtype, np.number):
        raise ValueError(
            f"{where}: image must be a numeric (C, Z, Y, X) array, got shape {image.shape} "
            f"dtype {image.dtype}"
        )
    if label is None:
        return image.astype(np.float32, copy=False), None
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{where}: label must hold integer class ids, got dtype {label.dtype}")
    if label.shape != image.shape[1:]:
        raise ValueError(
            f"{where}: label shape {label.shape} must equal the image's spatial shape "
            f"{image.shape[1:]} (image is {image.shape}, expected (C, Z, Y, X) and (Z, Y, X))"
        )
    return image.astype(np.float32, copy=False), label


class Transform:
    """Base class: validates the pair, calls `apply`, returns contiguous arrays.

    The image comes back float32 and the label keeps its dtype. Subclasses that draw random
    numbers set `needs_rng = True` so a missing generator fails loudly instead of silently
    falling back to global state.
    """

    needs_rng: ClassVar[bool] = False
    # The constructor argument that fixes the output's spatial shape (a crop or resize to a
    # patch), or None; `training_patch` reads it to find the natural inference window.
    patch_argument: ClassVar[str | None] = None

    def __call__(
        self,
        image: np.ndarray,
        label: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> Pair:
        """Transform `(image, label)` drawing randomness from `rng` only."""
        name = type(self).__name__
        image, label = check_pair(image, label, name)
        if self.needs_rng and not isinstance(rng, np.random.Generator):
            raise ValueError(
                f"{name} is random and needs a numpy.random.Generator as its third argument, "
                f"got {type(rng).__name__}; pass e.g. numpy.random.default_rng(seed)"
            )
        image, label = self.apply(image, label, rng)
        image = np.ascontiguousarray(image, dtype=np.float32)
        return image, None if label is None else np.ascontiguousarray(label)

    def apply(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator | None
    ) -> Pair:
        """Transform a validated pair; must not modify the inputs in place."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class RandomTransform(Transform):
    """A transform applied with probability `prob`; one coin is drawn from `rng` per call."""

    needs_rng: ClassVar[bool] = True

    def __init__(self, prob: float):
        self.prob = check_prob(prob, f"{type(self).__name__}.prob")

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        """Flip the coin, then call `apply_random` or return the pair unchanged."""
        if rng.random() >= self.prob:
            return image, label
        return self.apply_random(image, label, rng)

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Transform a validated pair (the coin came up heads)."""
        raise NotImplementedError


@TRANSFORMS.register()
class Compose:
    """Apply already built transforms in order, threading one `rng` through all of them.

    Args:
        transforms: Transform objects (the config builder turns `type:` dicts into objects
            before they reach here). An empty list is allowed (e.g. validation).
    """

    def __init__(self, transforms: Sequence[Callable[..., Pair]]):
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
            raise ValueError(f"Compose expects a list of transforms, got {type(transforms)}")
        for i, t in enumerate(transforms):
            if not callable(t):
                raise ValueError(
                    f"Compose: transforms[{i}] is {type(t).__name__} ({t!r}), not a callable "
                    "transform; build config dicts with the TRANSFORMS registry first"
                )
        self.transforms = list(transforms)

    def __call__(
        self,
        image: np.ndarray,
        label: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> Pair:
        """Apply every transform in order."""
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])" if inner else "Compose([])"


def training_patch(nodes: Any) -> Any:
    """The patch size the configured training transforms produce, or None.

    `nodes` is a `transforms:` list of `{type: ..., ...}` config nodes; the first transform whose
    class declares a `patch_argument` that the node sets gives the answer.
    """
    for node in nodes or []:
        if isinstance(node, dict) and node.get("type") in TRANSFORMS:
            argument = TRANSFORMS.get(node["type"]).patch_argument
            if argument and node.get(argument) is not None:
                return node[argument]
    return None
