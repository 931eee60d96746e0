"""Geometric transforms that move image and label together, voxel for voxel.

Label maps are always resampled with nearest neighbour (order 0) and filled with 0; images use
linear interpolation unless an argument says otherwise, and are filled with each channel's minimum
by default (`image_fill`). Constructor names and defaults follow MedicalSeg so its configs load
unchanged; axes (`flip_axis`, `rotate_planes`) are spatial, 0 = z, 1 = y, 2 = x. Rotations ignore
voxel spacing, as MedicalSeg's do: on anisotropic data an in-plane (1, 2) rotation is the safe one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.cvlibs.registry import TRANSFORMS
from medseg.transforms.compose import Pair, RandomTransform, Transform
from medseg.transforms.functional import (
    check_fill,
    check_prob,
    crop_pad,
    fill_values,
    foreground_bbox,
    resample_box,
    rotate_plane,
    sample_foreground_voxel,
    to_range,
)
from medseg.utils.vocabulary import int_triple


def _check_order(order: int, name: str) -> int:
    if order not in range(6):
        raise ValueError(f"{name} must be a spline order 0..5, got {order!r}")
    return int(order)


def _resample_pair(
    image: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    size: Sequence[int],
    out_shape: Sequence[int],
    order: int,
) -> Pair:
    """Resample the same box of every image channel (at `order`) and of the label (nearest)."""
    image = np.stack([resample_box(ch, start, size, out_shape, order) for ch in image])
    if label is not None:
        label = resample_box(label, start, size, out_shape, 0)
    return image, label


@TRANSFORMS.register()
class Flip(Transform):
    """Mirror image and label along fixed spatial axes (`RandomFlip3D`'s deterministic twin).

    Args:
        axes: A spatial axis or a list of them (0 = z, 1 = y, 2 = x).
    """

    def __init__(self, axes: int | Sequence[int]):
        listed = [axes] if isinstance(axes, int) else list(axes)
        if any(a not in (0, 1, 2) for a in listed) or len(set(listed)) != len(listed):
            raise ValueError(f"Flip.axes must be distinct spatial axes 0, 1, 2 (z, y, x): {axes}")
        self.axes = tuple(int(a) for a in listed)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Flip along `axes`."""
        if not self.axes:
            return image, label
        image = np.flip(image, axis=tuple(a + 1 for a in self.axes))
        return image, None if label is None else np.flip(label, axis=self.axes)


@TRANSFORMS.register()
class RandomFlip3D(Transform):
    """Mirror image and label along spatial axes.

    Args:
        prob: Probability of flipping.
        flip_axis: Candidate spatial axes (int or list). MedicalSeg behaviour (default): one axis
            is drawn from the list and flipped with `prob`.
        per_axis: If True, every listed axis is flipped independently with `prob` instead
            (nnU-Net style: all 8 mirror combinations occur).
    """

    needs_rng = True

    def __init__(
        self,
        prob: float = 0.5,
        flip_axis: int | Sequence[int] = (0, 1, 2),
        per_axis: bool = False,
    ):
        axes = [flip_axis] if isinstance(flip_axis, int) else list(flip_axis)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(f"flip_axis must hold spatial axes 0, 1, 2 (z, y, x), got {flip_axis}")
        self.prob = check_prob(prob, "RandomFlip3D.prob")
        self.flip_axis = tuple(int(a) for a in axes)
        self.per_axis = bool(per_axis)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        """Flip along the drawn axes."""
        if self.per_axis:
            axes = tuple(a for a in self.flip_axis if rng.random() < self.prob)
        else:
            axis = self.flip_axis[rng.integers(len(self.flip_axis))]
            axes = (axis,) if rng.random() < self.prob else ()
        return Flip(axes).apply(image, label, rng)


@TRANSFORMS.register()
class Rotate(Transform):
    """Rotate by a fixed angle in one plane about the volume centre (`RandomRotation3D`'s twin).

    Args:
        degrees: The angle.
        plane: Two spatial axes, e.g. `[1, 2]` (in-plane on axial scans).
        order: 1 (linear) or 0 (nearest) for the image; the label always uses 0.
        image_fill: "min" or a number, for image voxels that come from outside the volume.
    """

    def __init__(
        self,
        degrees: float,
        plane: Sequence[int] = (1, 2),
        order: int = 1,
        image_fill: float | str = "min",
    ):
        self.degrees = float(degrees)
        self.plane = _check_plane(plane, "Rotate.plane")
        if order not in (0, 1):
            raise ValueError(f"{type(self).__name__}.order must be 0 or 1, got {order!r}")
        self.order = int(order)
        self.image_fill = check_fill(image_fill, f"{type(self).__name__}.image_fill")

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Rotate every image channel and the label by the same angle."""
        fills = fill_values(image, self.image_fill)
        image = np.stack(
            [
                rotate_plane(ch, self.plane, self.degrees, self.order, float(f))
                for ch, f in zip(image, fills, strict=True)
            ]
        )
        if label is not None:
            label = rotate_plane(label, self.plane, self.degrees, 0, 0)
        return image, label


def _check_plane(plane: Sequence[int], name: str) -> tuple[int, int]:
    pair = tuple(int(a) for a in plane)
    if len(pair) != 2 or pair[0] == pair[1] or set(pair) - {0, 1, 2}:
        raise ValueError(
            f"{name} must be a pair of two different spatial axes from 0, 1, 2, e.g. [1, 2], "
            f"got {plane!r}"
        )
    return pair


@TRANSFORMS.register()
class RandomRotation3D(RandomTransform):
    """Rotate by a random angle in a randomly chosen plane, about the volume centre.

    The shape is kept; corners rotated in from outside get `image_fill` (default: each channel's
    minimum) in the image and 0 in the label.

    Args:
        degrees: Angle range in degrees: a number `d` means (-d, d), or a pair (low, high).
        rotate_planes: Candidate planes as pairs of spatial axes; one is drawn per call.
        prob: Probability of rotating (MedicalSeg always rotates, hence the default 1).
        order: 1 (linear) or 0 (nearest) for the image; the label always uses 0.
        image_fill: "min" or a number, for image voxels that come from outside the volume.
    """

    def __init__(
        self,
        degrees: float | Sequence[float],
        rotate_planes: Sequence[Sequence[int]] = ((0, 1), (0, 2), (1, 2)),
        prob: float = 1.0,
        order: int = 1,
        image_fill: float | str = "min",
    ):
        super().__init__(prob)
        self.degrees = to_range(degrees, "RandomRotation3D.degrees", symmetric=True)
        planes = [tuple(int(a) for a in p) for p in rotate_planes]
        if not planes or any(len(p) != 2 or p[0] == p[1] or set(p) - {0, 1, 2} for p in planes):
            raise ValueError(
                "rotate_planes must be pairs of two different spatial axes from 0, 1, 2, "
                f"e.g. [[1, 2]], got {rotate_planes!r}"
            )
        self.rotate_planes = planes
        if order not in (0, 1):
            raise ValueError(f"RandomRotation3D.order must be 0 or 1, got {order!r}")
        self.order = int(order)
        self.image_fill = check_fill(image_fill, f"{type(self).__name__}.image_fill")

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Rotate every image channel and the label by the same drawn angle and plane."""
        angle = rng.uniform(*self.degrees)
        plane = self.rotate_planes[rng.integers(len(self.rotate_planes))]
        return Rotate(angle, plane, self.order, self.image_fill).apply(image, label, rng)


@TRANSFORMS.register()
class Resize3D(Transform):
    """Resize to a fixed shape (deterministic; also used at validation time).

    Args:
        size: `(z, y, x)` output shape, or an int: the shortest spatial side becomes `size` and
            the others keep the aspect ratio (MedicalSeg's rule, truncating).
        order: Spline order for the image (the label always uses 0).
        keep_z: Keep the input's z extent and resize only y and x (MedicalSeg's 2.5-D option).
    """

    patch_argument = "size"

    def __init__(self, size: int | Sequence[int], order: int = 1, keep_z: bool = False):
        triple = int_triple(size, "Resize3D.size")
        self.size = triple[0] if isinstance(size, (int, np.integer)) else triple
        self.order = _check_order(order, "Resize3D.order")
        self.keep_z = bool(keep_z)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The spatial shape an input of spatial `shape` is resized to."""
        if isinstance(self.size, int):
            short = min(shape)
            out = [int(self.size * n / short) for n in shape]
        else:
            out = list(self.size)
        if self.keep_z:
            out[0] = shape[0]
        return out[0], out[1], out[2]

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Resample the whole volume onto the output grid."""
        shape = image.shape[1:]
        out_shape = self.output_shape(shape)
        if out_shape == shape:
            return image, label
        return _resample_pair(image, label, (0, 0, 0), shape, out_shape, self.order)


@TRANSFORMS.register()
class RandomResizedCrop3D(Transform):
    """Crop a random sub-volume and resize it to `size` in one interpolation.

    Args:
        size: Output `(z, y, x)` shape, or an int for a cube.
        scale: Range of the crop's volume as a fraction of the (pre-cropped) volume. Values above
            1 are allowed: the crop then covers the whole extent along the clipped axes.
        ratio: Range of the per-axis side jitter (log-uniform), which varies the aspect ratio.
        interpolation: Spline order for the image (the label always uses 0).
        pre_crop: First cut a region about `size * U(scale)` per axis (for volumes much larger
            than `size`), then take the scaled crop inside it.
        nonzero_mask: With `pre_crop`, place that region inside the bounding box of the
            foreground (label > 0) when a label with foreground is given.
    """

    needs_rng = True

    patch_argument = "size"

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.8, 1.2),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: int = 1,
        pre_crop: bool = False,
        nonzero_mask: bool = False,
    ):
        self.size = int_triple(size, "RandomResizedCrop3D.size")
        self.scale = to_range(scale, "RandomResizedCrop3D.scale")
        self.ratio = to_range(ratio, "RandomResizedCrop3D.ratio")
        if self.scale[0] <= 0 or self.ratio[0] <= 0:
            raise ValueError(f"scale and ratio must be positive, got {scale!r} and {ratio!r}")
        self.interpolation = _check_order(interpolation, "RandomResizedCrop3D.interpolation")
        self.pre_crop = bool(pre_crop)
        self.nonzero_mask = bool(nonzero_mask)

    def sample_box(
        self, shape: Sequence[int], label: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw `(start, size)` of the crop box within a volume of spatial `shape`."""
        low, extent = np.zeros(3, dtype=np.int64), np.asarray(shape, dtype=np.int64)
        if self.pre_crop:
            bbox = foreground_bbox(label) if self.nonzero_mask and label is not None else None
            if bbox is not None:
                low, extent = bbox[0], bbox[1] - bbox[0]
            wanted = np.rint(rng.uniform(*self.scale, size=3) * self.size).astype(np.int64)
            region = np.clip(wanted, 1, extent)
            low = low + rng.integers(0, extent - region + 1)
            extent = region
        fraction = rng.uniform(*self.scale) ** (1.0 / 3.0)
        jitter = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1]), size=3))
        sides = np.clip(np.rint(extent * fraction * jitter).astype(np.int64), 1, extent)
        return low + rng.integers(0, extent - sides + 1), sides

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        """Crop the drawn box and resize it to `size`."""
        start, sides = self.sample_box(image.shape[1:], label, rng)
        return _resample_pair(image, label, start, sides, self.size, self.interpolation)


@TRANSFORMS.register()
class RandomCrop3D(Transform):
    """Cut a patch of exactly `size`, oversampling foreground (nnU-Net's patch sampling).

    With probability `fg_prob` (and a label with foreground) a class > 0 present in the label is
    drawn uniformly, then one of its voxels, and the patch is placed so that voxel lies near its
    centre: within the central `jitter` fraction of each side. Otherwise the patch position is
    uniform. Volumes smaller than `size` on an axis are padded (image with `image_fill`, default
    each channel's minimum; label with 0) and sit at a random offset in the patch. No
    interpolation: voxels are copied, and only the patch is read from the input.

    Args:
        size: Patch `(z, y, x)` shape, or an int for a cube.
        fg_prob: Probability of a foreground-centred patch (nnU-Net uses 0.33).
        jitter: 0 centres the chosen voxel exactly (before clipping to the volume); 1 lets it
            lie anywhere in the patch.
        image_fill: "min" or a number, for image voxels padded outside the volume.
        ignore_index: A label id that is not a class (e.g. 255) and is never oversampled.
    """

    needs_rng = True

    patch_argument = "size"

    def __init__(
        self,
        size: int | Sequence[int],
        fg_prob: float = 0.33,
        jitter: float = 0.5,
        image_fill: float | str = "min",
        ignore_index: int | None = None,
    ):
        self.size = int_triple(size, "RandomCrop3D.size")
        self.fg_prob = check_prob(fg_prob, "RandomCrop3D.fg_prob")
        self.jitter = check_prob(jitter, "RandomCrop3D.jitter")
        self.image_fill = check_fill(image_fill, f"{type(self).__name__}.image_fill")
        self.ignore_index = ignore_index

    def sample_start(
        self, shape: Sequence[int], label: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Draw the patch's start corner (negative where the volume is smaller than the patch)."""
        size = np.asarray(self.size)
        slack = np.asarray(shape) - size
        low, high = np.minimum(slack, 0), np.maximum(slack, 0)
        voxel = None
        if label is not None and rng.random() < self.fg_prob:
            voxel = sample_foreground_voxel(label, rng, self.ignore_index)
        if voxel is None:
            return rng.integers(low, high + 1)
        reach = np.floor(self.jitter * size / 2).astype(np.int64)
        offset = np.clip(size // 2 + rng.integers(-reach, reach + 1), 0, size - 1)
        # Clipping keeps the voxel inside: it lies in [0, shape) and offset in [0, size).
        return np.clip(voxel - offset, low, high)

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        """Copy the patch, padding where it runs past the volume."""
        shape = image.shape[1:]
        start = self.sample_start(shape, label, rng)
        pads = np.any(start < 0) or np.any(start + self.size > np.asarray(shape))
        fill = fill_values(image, self.image_fill) if pads else 0
        image = crop_pad(image, start, self.size, fill)
        return image, None if label is None else crop_pad(label, start, self.size, 0)


@TRANSFORMS.register()
class Zoom(Transform):
    """Scale the content about the volume centre by a fixed factor, keeping the shape.

    `factor > 1` magnifies (zooms in), `< 1` shrinks; voxels that come from outside the volume
    get `image_fill` in the image and 0 in the label. The label is resampled by nearest
    neighbour, so no id is interpolated. `RandomZoom3D`'s deterministic twin.

    Args:
        factor: One factor for all axes, or `[z, y, x]`.
        order: Spline order for the image (the label always uses 0).
        image_fill: "min" or a number.
    """

    def __init__(
        self, factor: float | Sequence[float], order: int = 1, image_fill: float | str = "min"
    ):
        values = np.broadcast_to(np.asarray(factor, dtype=np.float64), (3,)).copy()
        if (values <= 0).any():
            raise ValueError(f"Zoom.factor must be positive, got {factor!r}")
        self.factor = tuple(float(v) for v in values)
        self.order = _check_order(order, "Zoom.order")
        self.image_fill = check_fill(image_fill, f"{type(self).__name__}.image_fill")

    def apply(self, image: np.ndarray, label: np.ndarray | None, rng: object) -> Pair:
        """Resample every channel and the label about the centre."""
        shape = np.asarray(image.shape[1:], dtype=np.float64)
        centre = (shape - 1) / 2.0
        inverse = 1.0 / np.asarray(self.factor)
        offset = centre - inverse * centre  # output voxel i samples input centre + (i - c) / f
        fills = fill_values(image, self.image_fill)
        image = np.stack(
            [
                ndimage.affine_transform(
                    ch, inverse, offset, order=self.order, mode="constant", cval=float(f)
                )
                for ch, f in zip(image, fills, strict=True)
            ]
        )
        if label is not None:
            label = ndimage.affine_transform(label, inverse, offset, order=0, mode="constant")
        return image, label


@TRANSFORMS.register()
class RandomZoom3D(RandomTransform):
    """Scale the content about the centre by a random factor (nnU-Net: (0.7, 1.4), p = 0.2).

    Args:
        scale: Factor range (low, high); one factor is drawn for all axes.
        prob: Probability of applying.
        order: Spline order for the image (the label always uses 0).
        image_fill: "min" or a number.
    """

    def __init__(
        self,
        scale: Sequence[float] = (0.7, 1.4),
        prob: float = 0.2,
        order: int = 1,
        image_fill: float | str = "min",
    ):
        super().__init__(prob)
        self.scale = to_range(scale, "RandomZoom3D.scale")
        if self.scale[0] <= 0:
            raise ValueError(f"RandomZoom3D.scale must be positive, got {scale!r}")
        self.order = _check_order(order, "RandomZoom3D.order")
        self.image_fill = check_fill(image_fill, "RandomZoom3D.image_fill")

    def apply_random(
        self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator
    ) -> Pair:
        """Zoom by the drawn factor."""
        twin = Zoom(float(rng.uniform(*self.scale)), self.order, self.image_fill)
        return twin.apply(image, label, rng)
