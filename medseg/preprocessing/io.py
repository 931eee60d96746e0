"""Volume I/O: the one place where SimpleITK's (x, y, z) order meets medseg's (z, y, x) order.

Arrays are returned in (Z, Y, X) order. `Geometry` keeps every per-axis tuple in that order too,
except `origin`, which is a physical point (x, y, z) exactly as ITK reports it (LPS). Column `j` of
`Geometry.direction` is the physical unit vector along array axis `j`, so the physical position of
voxel index `(k, j, i)` is `origin + direction @ (spacing * (k, j, i))`.

Readable inputs: NIfTI, MHA/MHD and NRRD files, and DICOM series folders (one series per folder).
`read_case` also takes files that hold several channels (4D NIfTI, vector images).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk  # noqa: N813 (the library's own idiom)

from medseg.preprocessing.nifti_integrity import check_nifti_complete, count_nonfinite
from medseg.utils.atomic import atomic_path

READ_EXTENSIONS = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
# .mhd/.nhdr keep their voxels in a second file, which an atomic rename cannot move along.
WRITE_EXTENSIONS = (".nii", ".nii.gz", ".mha", ".nrrd")

# Absolute tolerance (mm, and direction cosines) for "same grid" between channels and labels:
# headers written by different tools often differ by float32 rounding.
GEOMETRY_TOLERANCE = 1e-3

Triple = tuple[float, float, float]


def _triple(values: Any, name: str, cast: type = float) -> tuple:
    items = tuple(np.asarray(values, dtype=np.float64).reshape(-1).tolist())
    if len(items) != 3:
        raise ValueError(f"Geometry.{name} needs 3 values, got {values!r}")
    if cast is int and any(v != int(v) or v < 1 for v in items):
        raise ValueError(f"Geometry.{name} needs 3 positive integers, got {values!r}")
    return tuple(cast(v) for v in items)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a (Z, Y, X) array lies in physical space.

    Attributes:
        shape: Array shape (z, y, x).
        spacing: Voxel size in mm along (z, y, x).
        origin: Physical position (x, y, z) in mm of voxel (0, 0, 0), as ITK reports it.
        direction: 3×3 nested tuples; column j is the physical unit vector of array axis j.
    """

    shape: tuple[int, int, int]
    spacing: Triple
    origin: Triple
    direction: tuple[Triple, Triple, Triple]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _triple(self.shape, "shape", int))
        object.__setattr__(self, "spacing", _triple(self.spacing, "spacing"))
        object.__setattr__(self, "origin", _triple(self.origin, "origin"))
        matrix = np.asarray(self.direction, dtype=np.float64)
        if matrix.shape != (3, 3):
            raise ValueError(f"Geometry.direction must be 3×3, got shape {matrix.shape}")
        object.__setattr__(self, "direction", tuple(tuple(row) for row in matrix.tolist()))

    @property
    def matrix(self) -> np.ndarray:
        """The direction as a float64 array (rows: physical x, y, z; columns: array z, y, x)."""
        return np.asarray(self.direction, dtype=np.float64)

    def physical_point(self, index: Sequence[float]) -> np.ndarray:
        """Physical (x, y, z) position of a (possibly fractional) array index (z, y, x)."""
        offset = np.asarray(index, dtype=np.float64) * np.asarray(self.spacing)
        return np.asarray(self.origin) + self.matrix @ offset

    def replace(self, **changes: Any) -> Geometry:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, list]:
        """JSON-safe dict; Python floats serialise exactly, so `from_dict` restores every bit."""
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": [list(row) for row in self.direction],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of `to_dict`."""
        expected = {"shape", "spacing", "origin", "direction"}
        if set(data) != expected:
            raise ValueError(f"Geometry dict needs keys {sorted(expected)}, got {sorted(data)}")
        return cls(**data)

    def mismatch(self, other: Geometry, tol: float = GEOMETRY_TOLERANCE) -> str | None:
        """Describe the first field that differs from `other` (beyond `tol`), or None if none does.

        Shapes must match exactly; spacing, origin and direction within absolute `tol`.
        """
        if self.shape != other.shape:
            return f"shape differs: {self.shape} vs {other.shape}"
        for name in ("spacing", "origin", "direction"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if not np.allclose(mine, theirs, rtol=0.0, atol=tol):
                return f"{name} differs by more than {tol}: {mine} vs {theirs}"
        return None

    def allclose(self, other: Geometry, tol: float = GEOMETRY_TOLERANCE) -> bool:
        """True when `mismatch` finds no difference."""
        return self.mismatch(other, tol) is None


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def geometry_of(image: sitk.Image) -> Geometry:
    """The `Geometry` of a 3D SimpleITK image, converted to (z, y, x) array order.

    For a 4D image (channels along the fourth axis) it is the geometry of the first three axes.
    """
    dim = image.GetDimension()
    itk_direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    return Geometry(
        shape=tuple(reversed(image.GetSize()[:3])),
        spacing=tuple(reversed(image.GetSpacing()[:3])),
        origin=image.GetOrigin()[:3],
        direction=itk_direction[:, ::-1],
    )


def _last_line(err: Exception) -> str:
    return str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__


def _sitk_error(path: Path, err: RuntimeError) -> ValueError:
    return ValueError(f"{path}: SimpleITK could not read it ({_last_line(err)})")


def _read_dicom_series(folder: Path) -> sitk.Image:
    """The one DICOM series stored in `folder`, its slices ordered by position."""
    try:
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as err:
        raise _sitk_error(folder, err) from err
    if not series:
        raise ValueError(
            f"{folder}: a folder is read as a DICOM series, but no DICOM series was found in it"
        )
    if len(series) > 1:
        raise ValueError(
            f"{folder}: holds {len(series)} DICOM series ({', '.join(series)}); put each series "
            "in its own folder"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    _check_slice_positions(folder, series[0], files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise _sitk_error(folder, err) from err


def _check_slice_positions(folder: Path, series: str, files: Sequence[str]) -> None:
    """Refuse a series whose slices are not evenly spaced (a missing or doubled slice).

    ITK would stack them on a uniform grid anyway, misplacing every voxel past the gap, and
    only warn on stderr.
    """
    positions = []
    header = sitk.ImageFileReader()
    for name in files:
        header.SetFileName(name)
        try:
            header.ReadImageInformation()
            position = header.GetMetaData("0020|0032")
            orientation = header.GetMetaData("0020|0037")
        except RuntimeError:
            return  # no positions to compare (not an image series with patient geometry)
        row, column = np.reshape([float(v) for v in orientation.split("\\")], (2, 3))
        normal = np.cross(row, column)
        positions.append(float(normal @ np.array([float(v) for v in position.split("\\")])))
    if len(positions) < 3:
        return
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    uneven = np.flatnonzero(np.abs(gaps - spacing) > max(0.1 * abs(spacing), GEOMETRY_TOLERANCE))
    if spacing == 0 or uneven.size:
        at = int(uneven[0]) if uneven.size else 0
        raise ValueError(
            f"{folder}: DICOM series {series} is not evenly spaced: slices "
            f"{Path(files[at]).name} and {Path(files[at + 1]).name} lie {gaps[at]:.3f} mm "
            f"apart, the others {spacing:.3f} mm (a missing or repeated slice?); refusing to "
            "read it on a uniform grid"
        )


def _read_image(path: Path) -> sitk.Image:
    """A SimpleITK image from a volume file or a DICOM series folder, with clear errors."""
    if path.is_dir():
        return _read_dicom_series(path)
    if not path.is_file():
        raise FileNotFoundError(f"volume file not found: {path}")
    if _extension(path) not in READ_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported extension; readable: {', '.join(READ_EXTENSIONS)} "
            "or a DICOM series folder"
        )
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise _sitk_error(path, err) from err
    if _extension(path) in (".nii", ".nii.gz"):
        voxels = int(np.prod(image.GetSize(), dtype=np.int64))
        pixel_bytes = image.GetSizeOfPixelComponent() * image.GetNumberOfComponentsPerPixel()
        check_nifti_complete(path, voxels * pixel_bytes)
    _check_finite(path, image)
    return image


def _check_finite(path: Path, image: sitk.Image) -> None:
    """Refuse NaN or infinite voxels, naming the file.

    They would pass as intensities (SimpleITK's NIfTI reader even reads them as 0) and shift
    the crop, the normalisation and the planned CT window.
    """
    if "float" not in image.GetPixelIDTypeAsString():
        return
    if _extension(path) in (".nii", ".nii.gz"):
        bad = count_nonfinite(path)
    else:
        values = sitk.GetArrayViewFromImage(image)
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        voxels = (
            int(np.prod(image.GetSize(), dtype=np.int64)) * image.GetNumberOfComponentsPerPixel()
        )
        raise ValueError(
            f"{path}: holds {bad} NaN or infinite voxel(s) of {voxels}; fix or drop the scan"
        )


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a 3D scalar volume as a (Z, Y, X) array in its stored dtype.

    `path` is a NIfTI, MHA/MHD or NRRD file, or a folder holding one DICOM series.
    """
    path = Path(path)
    image = _read_image(path)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{path}: expected a 3D scalar volume, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel, "
            f"size {image.GetSize()}"
        )
    return sitk.GetArrayFromImage(image), geometry_of(image)


def read_channels(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a volume that may hold several channels as a (C, Z, Y, X) array (stored dtype).

    A 3D scalar volume gives C = 1; a 4D image (e.g. a 4D NIfTI) gives one channel per entry of
    its fourth axis; a 3D vector image gives one channel per component.
    """
    path = Path(path)
    return image_channels(_read_image(path), str(path))


def image_channels(image: sitk.Image, source: str = "image") -> tuple[np.ndarray, Geometry]:
    """A SimpleITK image as a (C, Z, Y, X) array (stored dtype) and its geometry.

    The rules of `read_channels`; `source` names the image in errors.
    """
    dim, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    if dim == 3:
        array = sitk.GetArrayFromImage(image)
        array = array[None] if components == 1 else np.moveaxis(array, -1, 0)
    elif dim == 4 and components == 1:
        array = sitk.GetArrayFromImage(image)
    else:
        raise ValueError(
            f"{source}: expected a 3D volume or a 4D volume of channels, got {dim}D with "
            f"{components} component(s) per voxel, size {image.GetSize()}"
        )
    return np.ascontiguousarray(array), geometry_of(image)


def _storable(array: np.ndarray) -> np.ndarray:
    """Cast dtypes that scanners and viewers handle badly: bool and 64-bit integers."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dtype in (np.uint8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return array.astype(dtype)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A SimpleITK image holding a (Z, Y, X) array placed at `geometry`."""
    if array.ndim != 3 or tuple(array.shape) != geometry.shape:
        raise ValueError(
            f"array shape {array.shape} does not match geometry shape {geometry.shape} (z, y, x)"
        )
    image = sitk.GetImageFromArray(_storable(np.ascontiguousarray(array)))
    image.SetSpacing(tuple(reversed(geometry.spacing)))
    image.SetOrigin(geometry.origin)
    image.SetDirection(tuple(geometry.matrix[:, ::-1].reshape(-1).tolist()))
    return image


def write_volume(array: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> None:
    """Write a (Z, Y, X) array atomically; the format follows the extension.

    Integer label maps keep an integer type (bool becomes uint8, 64-bit integers shrink to the
    smallest of uint8/int16/int32 that holds their range). `.nii.gz` is compressed.
    """
    path = Path(path)
    if _extension(path) not in WRITE_EXTENSIONS:
        raise ValueError(
            f"{path}: cannot write this format; writable: {', '.join(WRITE_EXTENSIONS)}"
        )
    image = to_sitk(array, geometry)
    with atomic_path(path, suffix=_extension(path)) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=_extension(path) != ".nii")
        except RuntimeError as err:
            raise OSError(f"{path}: SimpleITK could not write it ({_last_line(err)})") from None
        _verify_written(image, tmp, path)


def _verify_written(image: sitk.Image, tmp: Path, path: Path) -> None:
    """Raise OSError unless the file at `tmp` holds all of `image`, before it is renamed.

    SimpleITK's NIfTI writer does not report a short write (a full disk): the header and the
    gzip trailer are read back. Other formats raise on a short write; their size is checked.
    """
    voxels = int(np.prod(image.GetSize(), dtype=np.int64))
    data_bytes = voxels * image.GetSizeOfPixelComponent() * image.GetNumberOfComponentsPerPixel()
    try:
        if _extension(path) in (".nii", ".nii.gz"):
            check_nifti_complete(tmp, data_bytes, written=True)
        elif tmp.stat().st_size == 0:
            raise ValueError("the file is empty")
    except ValueError as err:
        reason = str(err).removeprefix(f"{tmp}: ")
        raise OSError(
            f"{path}: the written file is incomplete ({reason}); is {path.parent} full?"
        ) from None


def read_case(
    paths: Sequence[str | os.PathLike], tol: float = GEOMETRY_TOLERANCE
) -> tuple[np.ndarray, Geometry]:
    """Read a case's files into a float32 (C, Z, Y, X) array sharing one geometry.

    Usually one file per channel; a file holding several channels (4D NIfTI, vector image)
    contributes all of them, in order. DICOM series folders count as files.

    Raises:
        ValueError: when a file's geometry differs from the first file's beyond `tol`.
    """
    if not paths:
        raise ValueError("read_case needs at least one file, got an empty list")
    channels, geometry = [], None
    for path in paths:
        array, geom = read_channels(path)
        if geometry is None:
            geometry = geom
        else:
            problem = geometry.mismatch(geom, tol)
            if problem is not None:
                raise ValueError(f"channel files {paths[0]} and {path} disagree: {problem}")
        channels.append(array.astype(np.float32, copy=False))
    return np.concatenate(channels), geometry
