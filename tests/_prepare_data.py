"""Small synthetic raw datasets in real folder layouts, for the dataset-preparation tests."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk  # noqa: N813

from medseg.preprocessing.formats.nnunet import write_nnunet_description
from medseg.preprocessing.io import Geometry, to_sitk, write_volume

SHAPE = (10, 20, 24)  # z, y, x
SPACING = (3.0, 1.0, 1.2)


def geometry(index: int, shape=SHAPE, spacing=SPACING) -> Geometry:
    return Geometry(shape, spacing, (10.0 * index, -5.0, 2.0), np.eye(3)[:, ::-1])


def make_case(index: int, shape=SHAPE, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A body of soft tissue with a zero margin, one or two bright blobs labelled 1 and 2."""
    rng = np.random.default_rng(index)
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2 + rng.uniform(-1, 1, 3)
    radius = (
        ((z - centre[0]) / 3.0) ** 2 + ((y - centre[1]) / 5.0) ** 2 + ((x - centre[2]) / 5.0) ** 2
    )
    label = np.zeros(shape, np.uint8)
    label[radius <= 1.0] = 1
    label[(radius <= 1.0) & (x > centre[2] + 2)] = 2
    image = np.zeros((channels, *shape), np.int16)
    for c in range(channels):
        body = (40 + 10 * c + rng.normal(0, 5, shape)).astype(np.int16)
        body[label == 1] += 100 * (c + 1)
        body[label == 2] += 200
        image[c, 1:-1, 2:-2, 2:-2] = body[1:-1, 2:-2, 2:-2]
    return image, label


BLOB_LABELS = {"background": 0, "core": 1, "rim": 2}


def write_nnunet_meta(root: Path, num_cases: int, channels: int = 1, labels=None) -> None:
    """The raw folder's dataset.json (nnU-Net's layout) naming the channels and `labels`."""
    modalities = ["CT", "T2"][:channels]
    write_nnunet_description(root, root.name, modalities, labels or BLOB_LABELS, num_cases)


def write_nnunet(root: Path, num_cases: int = 4, channels: int = 1) -> Path:
    """nnU-Net v2 raw folder Dataset042_Blobs with `num_cases` cases."""
    root = root / "Dataset042_Blobs"
    for i in range(num_cases):
        image, label = make_case(i, channels=channels)
        for c in range(channels):
            write_volume(image[c], geometry(i), root / "imagesTr" / f"blob_{i:03d}_{c:04d}.nii.gz")
        write_volume(label, geometry(i), root / "labelsTr" / f"blob_{i:03d}.nii.gz")
    write_nnunet_meta(root, num_cases, channels)
    return root


def write_msd_4d(
    root: Path,
    num_cases: int = 3,
    folder: str = "Task05_Prostate",
    modalities: tuple[str, ...] = ("T2", "ADC"),
    labels: dict[str, str] | None = None,
) -> Path:
    """Task05_Prostate-like folder: 4D multi-modality NIfTI images (nibabel, as the MSD ships
    them), labels, dataset.json with `modality` and `training`, and macOS `._*` junk beside them.

    With a third label (`labels` naming ids 0..3, as BrainTumour's), the half of the rim with
    y above the middle becomes id 3, nested in the blob like BraTS's enhancing tumour.
    """
    labels = labels or {"0": "background", "1": "PZ", "2": "TZ"}
    root = root / folder
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir(parents=True)
    affine = np.diag([-0.6, -0.6, 3.6, 1.0])
    affine[:3, 3] = [12.0, 30.0, -40.0]
    training = []
    for i in range(num_cases):
        image, label = make_case(i, channels=len(modalities))
        if "3" in labels:
            label[(label == 2) & (np.indices(SHAPE)[1] > SHAPE[1] // 2)] = 3
        name = f"{folder.split('_')[-1].lower()}_{i:02d}.nii.gz"
        # (C, Z, Y, X) -> NIfTI (X, Y, Z, C)
        nib.save(
            nib.Nifti1Image(np.transpose(image, (3, 2, 1, 0)), affine), root / "imagesTr" / name
        )
        nib.save(nib.Nifti1Image(np.transpose(label, (2, 1, 0)), affine), root / "labelsTr" / name)
        (root / "imagesTr" / f"._{name}").write_bytes(b"\x00\x05\x16\x07junk")
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {
        "name": folder.split("_")[-1].upper(),
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": labels,
        "numTraining": num_cases,
        "training": training,
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def write_msd_brain_tumour(root: Path, num_cases: int = 4) -> Path:
    """Task01_BrainTumour-like folder: four MR modalities, labels 0..3 with 3 inside 2 inside 1."""
    labels = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    modalities = ("FLAIR", "T1w", "t1gd", "T2w")
    return write_msd_4d(root, num_cases, "Task01_BrainTumour", modalities, labels)


def write_dicom_series(
    image: np.ndarray, geometry: Geometry, folder: Path, series: int = 2
) -> None:
    """One DICOM file per z slice, with the positions and orientation of `geometry`."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = to_sitk(image.astype(np.int16), geometry)
    direction = volume.GetDirection()
    orientation = "\\".join(f"{v:.10f}" for v in (*direction[0:7:3], *direction[1:8:3]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(volume.GetDepth()):
        piece = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": f"1.2.826.0.1.3680043.2.1125.1.{series}",
            "0020|0052": "1.2.826.0.1.3680043.2.1125.9",  # frame of reference (DICOM SEG)
            "0008|0018": f"1.2.826.0.1.3680043.2.1125.1.{series}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.10f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{volume.GetSpacing()[1]:.10f}\\{volume.GetSpacing()[0]:.10f}",
            "0018|0050": f"{volume.GetSpacing()[2]:.10f}",
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{series}_{k:03d}.dcm"))
        writer.Execute(piece)
