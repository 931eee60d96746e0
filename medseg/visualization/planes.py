"""Orthogonal planes through a case, oriented the way radiologists read them (no matplotlib).

A case (image plus optional reference and prediction label maps on the same grid) is reoriented
to LPS-canonical array order (axis z towards Superior, y towards Posterior, x towards patient Left)
by axis permutation and flips only, so no voxel is interpolated; a slightly oblique scan is shown
in its nearest canonical orientation. Planes are then cut and flipped for display, row 0 at the
top and column 0 at the left:

- axial: viewed from the feet; anterior at the top, patient's right on the viewer's left;
- coronal: viewed from the front; superior at the top, patient's right on the viewer's left;
- sagittal: viewed from the patient's left; superior at the top, anterior on the viewer's left.

Slice positions are voxel indices `(z, y, x)` in the FILE's array order (as `read_volume` returns
them), so they match what a user sees in the stored volume whatever its orientation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.io import read_volume
from medseg.preprocessing.orientation import lps_transform, reorient
from medseg.utils.vocabulary import IGNORE_INDEX, choose

VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
# Per view: the LPS array axis held fixed, then the axes shown as rows and columns.
_VIEW_AXES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
# Anatomical direction at the top, bottom, left and right edge of each displayed plane.
EDGE_LABELS = {
    "axial": ("A", "P", "R", "L"),
    "coronal": ("S", "I", "R", "L"),
    "sagittal": ("S", "I", "A", "P"),
}
FILE_AXES = ("z", "y", "x")


@dataclasses.dataclass(frozen=True)
class OverlayCase:
    """An image and its label maps in LPS-canonical array order, ready to slice.

    Attributes:
        image: `(Z, Y, X)` intensities in LPS order, in the file's dtype.
        label: Reference label map (integer, same shape, training ids), or None.
        prediction: Predicted label map (integer, same shape), or None.
        foreground: Voxels labelled in the reference or the prediction (same shape), or None.
        class_ids: Foreground ids present in the reference or the prediction, sorted (the
            ignored id `IGNORE_INDEX` is not a class and is not drawn).
        spacing: Voxel size in mm along the LPS array axes `(z, y, x)`.
        permutation: LPS axis k is file axis `permutation[k]` ...
        flips: ... reversed when `flips[k]` (see `medseg.preprocessing.orientation`).
    """

    image: np.ndarray
    label: np.ndarray | None
    prediction: np.ndarray | None
    foreground: np.ndarray | None
    class_ids: tuple[int, ...]
    spacing: tuple[float, float, float]
    permutation: tuple[int, int, int]
    flips: tuple[bool, bool, bool]

    def to_lps_index(self, file_index: Sequence[int]) -> tuple[int, int, int]:
        """The LPS voxel index of a voxel given in file order `(z, y, x)`."""
        shape = self.image.shape
        return tuple(
            shape[k] - 1 - int(file_index[p]) if flip else int(file_index[p])
            for k, (p, flip) in enumerate(zip(self.permutation, self.flips, strict=True))
        )

    def to_file_index(self, lps_index: Sequence[int]) -> tuple[int, int, int]:
        """Inverse of `to_lps_index`."""
        out = [0, 0, 0]
        for k, (p, flip) in enumerate(zip(self.permutation, self.flips, strict=True)):
            out[p] = self.image.shape[k] - 1 - int(lps_index[k]) if flip else int(lps_index[k])
        return tuple(out)


def _read_label_map(path: str | os.PathLike, role: str) -> tuple[np.ndarray, object]:
    """Read a label map; require integer ids >= 0 (float files must hold whole numbers)."""
    array, geometry = read_volume(path)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(
                f"{path}: the {role} must be a label map of whole-number class ids, got "
                f"non-integer values (dtype {array.dtype})"
            )
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{path}: the {role} must hold integer class ids, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{path}: the {role} holds negative id {array.min()}; ids must be >= 0")
    return (array.astype(np.int32) if array.dtype.kind == "f" else array), geometry


def load_overlay_case(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike | None = None,
    prediction_path: str | os.PathLike | None = None,
    label_rules: LabelRules | None = None,
) -> OverlayCase:
    """Read an image and optional label maps, check they share one grid, reorient to LPS.

    `label_rules` (a prepared dataset's, `DatasetDescription.label_rules`) turn the raw
    reference's ids into the training ids the prediction uses, so a dataset prepared with
    `--label_map` or `--ignore_labels` is compared class for class.

    Raises:
        ValueError: when a label map's grid differs from the image's (naming both files and the
            first field that differs) or a label map is not integer-valued.
    """
    image, geometry = read_volume(image_path)
    maps = {}
    for role, path in (("reference label", label_path), ("prediction", prediction_path)):
        if path is None:
            maps[role] = None
            continue
        array, other = _read_label_map(path, role)
        problem = geometry.mismatch(other)
        if problem is not None:
            raise ValueError(
                f"the {role} {path} is not on the grid of the image {image_path}: {problem}. "
                "Both must be voxel-for-voxel aligned (resample the label map onto the image "
                "with nearest-neighbour interpolation first)."
            )
        if role == "reference label" and label_rules is not None:
            array = label_rules.remap(array)
        maps[role] = array
    # Computed in the file's (contiguous) order: several times faster than on reoriented views.
    present = [a for a in maps.values() if a is not None]
    foreground = np.logical_or.reduce([a > 0 for a in present]) if present else None
    ids = {i + 1 for a in present for i, box in enumerate(ndimage.find_objects(a)) if box}
    ids.discard(IGNORE_INDEX)
    permutation, flips = lps_transform(geometry)

    def lps(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else reorient(array, permutation, flips)  # a view

    return OverlayCase(
        image=lps(image),
        label=lps(maps["reference label"]),
        prediction=lps(maps["prediction"]),
        foreground=lps(foreground),
        class_ids=tuple(sorted(ids)),
        spacing=tuple(float(geometry.spacing[p]) for p in permutation),
        permutation=permutation,
        flips=flips,
    )


def busiest_slices(mask: np.ndarray | None, shape: Sequence[int]) -> tuple[int, int, int]:
    """Per axis, the slice index holding the most voxels of `mask`; the centre when it is empty.

    Unlike the centre of mass, which can fall between organs (e.g. on the midline between liver
    and spleen), the busiest plane always cuts the foreground when there is any.
    """
    if mask is None or not mask.any():
        return tuple(int(n) // 2 for n in shape)
    counts = (mask.sum(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3))
    return tuple(int(np.argmax(c)) for c in counts)


def plane(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """The display-oriented 2D plane of an LPS volume (see the module docstring)."""
    choose(view, VIEWS, "view")
    fixed = _VIEW_AXES[view][0]
    cut = np.take(volume, index, axis=fixed)
    # Rows run along z (inferior→superior) in coronal and sagittal planes: put superior on top.
    return cut if view == "axial" else cut[::-1, :]


def view_aspect(spacing: Sequence[float], view: str) -> float:
    """Height/width of one displayed pixel (for `imshow(aspect=...)`): row over column spacing."""
    choose(view, VIEWS, "view")
    _, rows, cols = _VIEW_AXES[view]
    return float(spacing[rows]) / float(spacing[cols])


def view_extent_mm(
    shape: Sequence[int], spacing: Sequence[float], view: str
) -> tuple[float, float]:
    """Physical (width, height) in mm of a displayed plane."""
    _, rows, cols = _VIEW_AXES[view]
    return shape[cols] * float(spacing[cols]), shape[rows] * float(spacing[rows])


def fixed_axis(view: str) -> int:
    """The LPS array axis held constant in `view`."""
    return _VIEW_AXES[view][0]


def intensity_window(
    image: np.ndarray,
    window: Sequence[float] | None = None,
    percentiles: Sequence[float] = (1.0, 99.0),
    region: np.ndarray | None = None,
) -> tuple[float, float]:
    """Display range: `window` (low, high) when given, else from percentiles of the image.

    With a non-empty `region` mask (the labelled structures), the percentiles are taken inside it
    and the range is widened by half its width on each side (not below the image's minimum): the
    structures and the tissue around them get the contrast, not the air around the body (an
    automatic soft-tissue window for CT, and a sensible one for MRI). Without a region,
    percentiles of the whole image.

    Raises:
        ValueError: when `window` does not have low < high.
    """
    if window is not None:
        low, high = (float(v) for v in window)
        if not low < high:
            raise ValueError(f"intensity window needs low < high, got {list(window)}")
        return low, high
    use_region = region is not None and region.any()
    values = image[region] if use_region else image
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if use_region:
        # Widened, but never below the darkest voxel: an MR scan has no negative values to show.
        darkest = float(np.nanmin(image))
        low, high = max(low - 0.5 * (high - low), darkest), high + 0.5 * (high - low)
    return (low, high) if high > low else (low, low + 1.0)
