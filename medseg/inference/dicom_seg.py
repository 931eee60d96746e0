"""Label maps as DICOM Segmentation objects referencing their source series (highdicom).

Optional: `pip install highdicom` (it brings pydicom). The SEG's frames follow the source series'
slices in the order SimpleITK reads them (GDCM's sorted file names), so the written segments lie
voxel for voxel on the scan; each foreground class is one segment, labelled and coloured from
its class name. Torch-free.
"""

from __future__ import annotations

import colorsys
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 (the library's own idiom)

from medseg import __version__
from medseg.utils.atomic import atomic_path

SEG_EXTENSION = ".dcm"


def import_highdicom():
    """The highdicom module, or an ImportError saying how to install it."""
    try:
        import highdicom
    except ImportError as err:
        raise ImportError(
            "--output_format dicom-seg needs highdicom: pip install highdicom (it installs pydicom)"
        ) from err
    return highdicom


def series_files(folder: str | os.PathLike) -> list[str]:
    """The files of the one DICOM series in `folder`, in SimpleITK's slice order."""
    (series,) = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series))


def class_color(name: str) -> tuple[int, int, int]:
    """A stable, saturated RGB colour for a class name (the same name always gets the same)."""
    hue = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95))


def write_dicom_seg(
    label: np.ndarray,
    source_folder: str | os.PathLike,
    classes: Mapping[int, str],
    path: str | os.PathLike,
) -> None:
    """Write `label` `(Z, Y, X)`, on the grid of the series in `source_folder`, as a DICOM SEG.

    One segment per foreground class id of `classes` (ids 1 ..; class 0 is background), labelled
    with its name. Written atomically.

    Raises:
        ImportError: when highdicom is not installed.
        ValueError: when the label map does not match the series.
    """
    hd = import_highdicom()
    import pydicom
    from pydicom.sr.codedict import codes

    files = series_files(source_folder)
    sources = [pydicom.dcmread(f) for f in files]
    frames = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if label.shape != frames:
        raise ValueError(
            f"label map {label.shape} does not match the DICOM series in {source_folder} "
            f"({frames[0]} slices of {frames[1]} x {frames[2]})"
        )
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medseg", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    ids = sorted(i for i in classes if i > 0)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=classes[class_id],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*class_color(classes[class_id])),
        )
        for number, class_id in enumerate(ids, start=1)
    ]
    numbers = np.zeros(max(ids, default=0) + 1, dtype=np.uint16)
    numbers[ids] = np.arange(1, len(ids) + 1)
    segmentation = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=numbers[label].astype(np.uint16 if len(ids) > 255 else np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name="medseg deploy runner",
        software_versions=__version__,
        device_serial_number="none",
        omit_empty_frames=False,
    )
    with atomic_path(Path(path), suffix=SEG_EXTENSION) as tmp:
        segmentation.save_as(tmp)


def read_dicom_seg(path: str | os.PathLike, source_folder: str | os.PathLike) -> np.ndarray:
    """A SEG written by `write_dicom_seg` back as a `(Z, Y, X)` map of segment numbers."""
    hd = import_highdicom()
    import pydicom

    segmentation = hd.seg.segread(str(path))
    files = series_files(source_folder)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    return segmentation.get_pixels_by_source_instance(uids, combine_segments=True)
