"""Run a recipe on one case and record every step, so predictions can be mapped back exactly.

Order: reorient → crop → resample → normalise intensities. The `PreprocessRecord` keeps the
original geometry and each step's parameters; `invert_label` / `invert_probabilities` use it to
put a prediction on the original grid, voxel for voxel.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from medseg.preprocessing.backmap import SlabBackMapper
from medseg.preprocessing.crop import (
    Box,
    crop_geometry,
    crop_to_box,
    foreground_box,
    full_box,
    pad_from_box,
)
from medseg.preprocessing.intensity import normalize
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.orientation import (
    IDENTITY,
    lps_transform,
    reorient,
    reorient_geometry,
    undo_reorient,
)
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.resample import (
    resample_geometry,
    resample_image,
    resample_label,
    resampled_shape,
)
from medseg.utils.vocabulary import label_dtype

logger = logging.getLogger(__name__)


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclasses.dataclass(frozen=True)
class PreprocessRecord:
    """What preprocessing did to one case.

    Attributes:
        geometry: The original geometry of the scan.
        permutation: New array axis k is old axis `permutation[k]` ...
        flips: ... reversed when `flips[k]`.
        shape_after_reorient: Spatial shape after reorientation.
        crop_box: `((z0, z1), (y0, y1), (x0, x1))` in the reoriented array.
        shape_after_crop: Spatial shape after cropping.
        shape_after_resample: Spatial shape of the preprocessed array.
        spacing_after_resample: Its voxel spacing (z, y, x) in mm (extent-preserving, so it can
            differ from the recipe's target spacing by the rounding of the shape).
        normalization: Per channel, the normalisation spec with the numbers used.
    """

    geometry: Geometry
    permutation: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    shape_after_reorient: tuple[int, int, int]
    crop_box: Box
    shape_after_crop: tuple[int, int, int]
    shape_after_resample: tuple[int, int, int]
    spacing_after_resample: tuple[float, float, float]
    normalization: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; `from_dict` restores an equal record."""
        return {
            "geometry": self.geometry.to_dict(),
            "permutation": list(self.permutation),
            "flips": list(self.flips),
            "shape_after_reorient": list(self.shape_after_reorient),
            "crop_box": [list(pair) for pair in self.crop_box],
            "shape_after_crop": list(self.shape_after_crop),
            "shape_after_resample": list(self.shape_after_resample),
            "spacing_after_resample": list(self.spacing_after_resample),
            "normalization": [dict(spec) for spec in self.normalization],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessRecord:
        """Inverse of `to_dict`."""
        expected = {f.name for f in dataclasses.fields(cls)}
        if set(data) != expected:
            raise ValueError(
                f"preprocessing record needs keys {sorted(expected)}, got {sorted(data)}"
            )
        return cls(
            geometry=Geometry.from_dict(data["geometry"]),
            permutation=_ints(data["permutation"]),
            flips=tuple(bool(f) for f in data["flips"]),
            shape_after_reorient=_ints(data["shape_after_reorient"]),
            crop_box=tuple(_ints(pair) for pair in data["crop_box"]),
            shape_after_crop=_ints(data["shape_after_crop"]),
            shape_after_resample=_ints(data["shape_after_resample"]),
            spacing_after_resample=tuple(float(v) for v in data["spacing_after_resample"]),
            normalization=[dict(spec) for spec in data["normalization"]],
        )


def _label_dtype(label: np.ndarray, case: str) -> np.dtype:
    if label.dtype.kind not in "iub":
        raise ValueError(f"{case}: label map must have an integer dtype, got {label.dtype}")
    low, high = (int(label.min()), int(label.max())) if label.size else (0, 0)
    if low < 0 or high > np.iinfo(np.int16).max:
        raise ValueError(f"{case}: label ids must lie in [0, 32767], got range [{low}, {high}]")
    return label_dtype(high)


def preprocess_case(
    image: np.ndarray,
    geometry: Geometry,
    recipe: Recipe,
    label: np.ndarray | None = None,
    case: str = "case",
    backend: str = "numpy",
) -> tuple[np.ndarray, np.ndarray | None, PreprocessRecord]:
    """Apply `recipe` to a (C, Z, Y, X) image and optionally its (Z, Y, X) label map.

    Args:
        image: The scan, channel first, on the grid described by `geometry`.
        geometry: The scan's geometry as read from disk.
        recipe: What to do.
        label: Integer label map on the same grid, or None (inference).
        case: Name used in error and log messages.
        backend: "numpy" or "cupy": where resampling and intensity work run
            (`medseg.preprocessing.backend.select_backend` picks it).

    Returns:
        The float32 (C, Z, Y, X) image, the label map (uint8, or int16 above 255 ids) or None,
        and the record needed to invert the steps.
    """
    if image.ndim != 4 or tuple(image.shape[1:]) != geometry.shape:
        raise ValueError(
            f"{case}: image must be (C, Z, Y, X) with spatial shape {geometry.shape}, "
            f"got {image.shape}"
        )
    if label is not None:
        if tuple(label.shape) != geometry.shape:
            raise ValueError(
                f"{case}: label shape {label.shape} differs from image shape {geometry.shape}"
            )
        label_dtype = _label_dtype(label, case)

    permutation, flips = lps_transform(geometry) if recipe.orientation == "LPS" else IDENTITY
    image = reorient(image, permutation, flips)
    label = None if label is None else reorient(label, permutation, flips)
    reoriented = reorient_geometry(geometry, permutation, flips)

    if recipe.crop is None:
        box = full_box(image.shape)
    else:
        box = foreground_box(image, recipe.crop["threshold"], recipe.crop["margin"])
    if label is not None:
        lost = int(np.count_nonzero(label)) - int(np.count_nonzero(crop_to_box(label, box)))
        if lost:
            logger.warning("%s: %d labelled voxels lie outside the crop box %s", case, lost, box)
        label = crop_to_box(label, box)
    image = crop_to_box(image, box)
    cropped = crop_geometry(reoriented, box)

    shape = cropped.shape
    if recipe.target_spacing is not None:
        shape = resampled_shape(cropped.shape, cropped.spacing, recipe.target_spacing)
    image = resample_image(image, shape, recipe.image_order, backend)
    if label is not None:
        label = resample_label(label, shape, recipe.label_interpolation, backend)
        label = np.ascontiguousarray(label, dtype=label_dtype)

    image, used = normalize(image, recipe.normalization_specs(image.shape[0]), backend)
    record = PreprocessRecord(
        geometry=geometry,
        permutation=permutation,
        flips=flips,
        shape_after_reorient=reoriented.shape,
        crop_box=box,
        shape_after_crop=cropped.shape,
        shape_after_resample=shape,
        spacing_after_resample=resample_geometry(cropped, shape).spacing,
        normalization=used,
    )
    return np.ascontiguousarray(image, dtype=np.float32), label, record


def preprocessed_geometry(record: PreprocessRecord) -> Geometry:
    """Where the preprocessed array lies in physical space (for previews and checks)."""
    reoriented = reorient_geometry(record.geometry, record.permutation, record.flips)
    cropped = crop_geometry(reoriented, record.crop_box)
    return resample_geometry(cropped, record.shape_after_resample)


def _check_shape(array: np.ndarray, record: PreprocessRecord, what: str) -> None:
    if tuple(array.shape[-3:]) != record.shape_after_resample:
        raise ValueError(
            f"{what} has spatial shape {array.shape[-3:]}, but the record expects the "
            f"preprocessed shape {record.shape_after_resample}"
        )


def invert_label(label: np.ndarray, record: PreprocessRecord, backend: str = "numpy") -> np.ndarray:
    """Map a (Z, Y, X) label map on the preprocessed grid back onto the original grid.

    Nearest-neighbour resampling to the cropped shape, zero padding outside the crop box, then
    the reorientation undone. Exact whenever the target spacing was not coarser than the original.
    """
    if label.ndim != 3:
        raise ValueError(f"invert_label expects a (Z, Y, X) label map, got shape {label.shape}")
    _check_shape(label, record, "label map")
    out = resample_label(label, record.shape_after_crop, "nearest", backend)
    out = pad_from_box(out, record.crop_box, record.shape_after_reorient, 0)
    return np.ascontiguousarray(undo_reorient(out, record.permutation, record.flips))


def invert_probabilities(
    probabilities: np.ndarray,
    record: PreprocessRecord,
    backend: str = "numpy",
    background: int | None = 0,
) -> np.ndarray:
    """Map (K, Z, Y, X) class probabilities back onto the original grid (float32).

    Each class map is resampled linearly; outside the crop box channel `background` gets 1 and
    the others 0 (`background=None`, for region probabilities: all 0). Take the argmax over
    axis 0 afterwards for a label map.
    """
    if probabilities.ndim != 4:
        raise ValueError(
            f"invert_probabilities expects (K, Z, Y, X), got shape {probabilities.shape}"
        )
    _check_shape(probabilities, record, "probability map")
    resampled = resample_image(probabilities, record.shape_after_crop, 1, backend)
    padded = np.stack(
        [
            pad_from_box(
                channel, record.crop_box, record.shape_after_reorient, float(k == background)
            )
            for k, channel in enumerate(resampled)
        ]
    )
    return np.ascontiguousarray(undo_reorient(padded, record.permutation, record.flips))


def probabilities_to_original_labels(
    probabilities: np.ndarray, record: PreprocessRecord, backend: str = "numpy"
) -> np.ndarray:
    """Label map on the original grid from preprocessed-grid class probabilities (K, Z, Y, X).

    Same result as `invert_probabilities(...).argmax(0)` (outside the crop box background wins),
    but by a running argmax over a few planes at a time (`SlabBackMapper`), so no K-channel array
    of the scan is ever made.
    """
    if probabilities.ndim != 4:
        raise ValueError(f"expected (K, Z, Y, X) probabilities, got shape {probabilities.shape}")
    _check_shape(probabilities, record, "probability map")
    mapper = SlabBackMapper(record, probabilities.shape[0], backend)
    mapper.add(0, probabilities)
    return mapper.result()
