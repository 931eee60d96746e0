"""`MedicalDataset`: cases of the preprocessed layout (`images/*.npy`, `labels/*.npy`, lists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medseg.cvlibs.registry import DATASETS
from medseg.preprocessing.description import DatasetDescription, load_description
from medseg.preprocessing.file_list import format_line, read_list
from medseg.preprocessing.regions import Regions
from medseg.transforms import Compose
from medseg.utils.vocabulary import IGNORE_INDEX, choose

LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}


@DATASETS.register()
class MedicalDataset(Dataset):
    """Cases listed in `<dataset_root>/<mode>_list.txt`, loaded memory-mapped.

    In `train` mode an item is asked for as `(case_index, seed)` (see `InfiniteSampler`) and the
    transforms draw from a generator seeded with `seed`; a plain index uses the index as seed.
    Items are `(image float32 C×Z×Y×X, label int64 Z×Y×X, case_id)`.

    Args:
        dataset_root: Folder of the preprocessed dataset.
        result_dir: Where later stages write results (kept for MedicalSeg configs).
        transforms: Built transform objects applied in order.
        num_classes: Number of classes including background; defaults to `dataset.json`'s.
        mode: "train", "val" or "test".
        ignore_index: Label value excluded from the loss (MedicalSeg's default 255).
        dataset_json_path: `dataset.json` to use instead of `<dataset_root>/dataset.json`.
        file_list: List file (relative to `dataset_root`) to read instead of `<mode>_list.txt`,
            e.g. `folds/fold_0_train_list.txt` written by `tools/prepare_*.py --folds`.
        regions: Region-based training: the network predicts the regions `dataset.json`
            declares (one sigmoid channel each) instead of a softmax over label ids; the labels
            stay label maps.
    """

    def __init__(
        self,
        dataset_root: str,
        result_dir: str | None = None,
        transforms: list | None = None,
        num_classes: int | None = None,
        mode: str = "train",
        ignore_index: int = IGNORE_INDEX,
        dataset_json_path: str | None = None,
        file_list: str | None = None,
        regions: bool = False,
    ):
        mode = choose(mode.lower(), sorted(LIST_FILES), "mode")
        self.dataset_root = Path(dataset_root)
        if not self.dataset_root.is_dir():
            raise FileNotFoundError(
                f"dataset_root '{dataset_root}' does not exist; prepare the dataset first "
                "(e.g. python tools/prepare_phantom.py)"
            )
        self.result_dir = result_dir
        self.mode = mode
        self.transforms = Compose(list(transforms or []))
        self.ignore_index = ignore_index
        self.description = self._read_description(dataset_json_path)
        self.num_classes = self._resolve_num_classes(num_classes)
        self.class_names = self.description.class_names(self.num_classes)
        self.regions = self._resolve_regions(regions)
        self.cases = self._read_list(self.dataset_root / (file_list or LIST_FILES[mode]))
        self._labels_checked: set[int] = set()  # per process: each label file is scanned once

    def _read_description(self, path: str | None) -> DatasetDescription:
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"dataset_json_path '{path}' does not exist")
        return load_description(path or self.dataset_root, missing_ok=True, root=self.dataset_root)

    def _resolve_num_classes(self, num_classes: int | None) -> int:
        recorded = self.description.num_classes
        if num_classes is None:
            if recorded is None:
                raise ValueError(
                    f"num_classes is not set and {self.description.path} does not record it"
                )
            return recorded
        if recorded is not None and recorded != num_classes:
            raise ValueError(
                f"num_classes is {num_classes} but {self.description.path} has "
                f"{recorded} classes ({self.description.labels})"
            )
        return num_classes

    def _resolve_regions(self, regions: bool) -> Regions | None:
        """The description's regions when `regions` is on (None when off)."""
        if not isinstance(regions, bool):
            raise ValueError(f"regions must be true or false, got {regions!r}")
        if regions and self.description.regions is None:
            raise ValueError(
                f"regions is true but {self.description.path} declares no 'regions' "
                '([{"name": ..., "labels": [ids]}, ...], written by preparation)'
            )
        return self.description.regions if regions else None

    @property
    def output_channels(self) -> int:
        """The network's output channels: one per region, else one per class."""
        return self.num_classes if self.regions is None else len(self.regions)

    def _read_list(self, list_path: Path) -> list[dict[str, Any]]:
        if not list_path.is_file():
            raise FileNotFoundError(f"file list {list_path} does not exist (mode '{self.mode}')")
        cases = []
        for line_number, items in read_list(list_path):
            if len(items) > 2 or (len(items) == 1 and self.mode != "test"):
                raise ValueError(
                    f"{list_path}:{line_number}: expected 'images/<case>.npy labels/<case>.npy' "
                    f"(a path with spaces in double quotes), got {format_line(items)!r}"
                )
            image = self.dataset_root / items[0]
            label = self.dataset_root / items[1] if len(items) == 2 else None
            case_id = Path(items[0]).name.removesuffix(".npy")
            for path in (image, label):
                if path is not None and not path.is_file():
                    raise FileNotFoundError(
                        f"case '{case_id}': {path} does not exist ({list_path})"
                    )
            cases.append({"id": case_id, "image": image, "label": label})
        if not cases:
            raise ValueError(f"file list {list_path} holds no cases")
        return cases

    def case_spacing(self, case_id: str) -> tuple[float, float, float]:
        """Voxel size (z, y, x) in mm of a preprocessed case, from `dataset.json`'s record."""
        record = self.description.record(case_id)
        if record is None:
            raise ValueError(
                f"case '{case_id}' has no preprocessing record in {self.description.path}; "
                "distances in mm need it (re-prepare the dataset with medseg's tools)"
            )
        return record.spacing_after_resample

    def __len__(self) -> int:
        return len(self.cases)

    def load_case(self, index: int) -> tuple[np.ndarray, np.ndarray | None, str]:
        """Memory-map one case and check it: channel axis, matching shapes, label values."""
        case = self.cases[index]
        image = np.load(case["image"], mmap_mode="r")
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4:
            raise ValueError(
                f"case '{case['id']}': image {case['image']} has shape {image.shape}; "
                "expected C×Z×Y×X or Z×Y×X"
            )
        label = None
        if case["label"] is not None:
            label = np.load(case["label"], mmap_mode="r")
            if label.shape != image.shape[1:]:
                raise ValueError(
                    f"case '{case['id']}': label shape {label.shape} does not match image "
                    f"shape {image.shape[1:]} ({case['label']})"
                )
            if index not in self._labels_checked:
                self._check_label_values(case, label)
                self._labels_checked.add(index)
        return image, label, case["id"]

    def _check_label_values(self, case: dict[str, Any], label: np.ndarray) -> None:
        values = np.unique(label)
        bad = values[(values >= self.num_classes) | (values < 0)]
        bad = bad[bad != self.ignore_index]
        if bad.size:
            raise ValueError(
                f"case '{case['id']}': label values {bad.tolist()} are not below num_classes="
                f"{self.num_classes} (ignore_index={self.ignore_index}) in {case['label']}"
            )

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray, str]:
        index, seed = item if isinstance(item, tuple) else (item, item)
        image, label, case_id = self.load_case(index)
        image = np.asarray(image, dtype=np.float32)
        label = None if label is None else np.asarray(label)
        image, label = self.transforms(image, label, np.random.default_rng(seed))
        image = np.ascontiguousarray(image, dtype=np.float32)
        if label is None:
            return image, np.zeros(0, dtype=np.int64), case_id
        return image, np.ascontiguousarray(label, dtype=np.int64), case_id

    def __repr__(self) -> str:
        return f"MedicalDataset({str(self.dataset_root)!r}, mode={self.mode!r}, cases={len(self)})"


DATASETS.register(MedicalDataset, name="LungCoronavirus")
DATASETS.register(MedicalDataset, name="MRISpineSeg")
