"""MedicalDataset: file lists, checks that name the case, seeded reproducible samples."""

import json
import shutil

import numpy as np
import pytest
import torch

from medseg.datasets import InfiniteSampler, MedicalDataset, sample_seed
from medseg.transforms import RandomCrop3D, RandomFlip3D


def make_dataset(root, shapes=((8, 16, 16),) * 3, num_classes=3, label_max=2):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    lines = []
    rng = np.random.default_rng(0)
    for i, shape in enumerate(shapes):
        case = f"case_{i}"
        np.save(root / "images" / f"{case}.npy", rng.normal(size=(1, *shape)).astype(np.float32))
        np.save(
            root / "labels" / f"{case}.npy", rng.integers(0, label_max + 1, shape).astype(np.uint8)
        )
        lines.append(f"images/{case}.npy labels/{case}.npy")
    (root / "train_list.txt").write_text("\n".join(lines) + "\n")
    (root / "val_list.txt").write_text(lines[0] + "\n")
    labels = {str(i): f"class_{i}" for i in range(num_classes)}
    (root / "dataset.json").write_text(json.dumps({"num_classes": num_classes, "labels": labels}))
    return root


def test_reads_lists_and_dataset_json(tmp_path):
    ds = MedicalDataset(make_dataset(tmp_path / "d"), mode="train")
    assert len(ds) == 3 and ds.num_classes == 3
    assert ds.class_names == ["class_0", "class_1", "class_2"]
    image, label, case = ds[0]
    assert image.shape == (1, 8, 16, 16) and image.dtype == np.float32
    assert label.shape == (8, 16, 16) and label.dtype == np.int64 and case == "case_0"
    assert len(MedicalDataset(tmp_path / "d", mode="val")) == 1


def test_missing_root_list_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare the dataset first"):
        MedicalDataset(tmp_path / "nothing")
    root = make_dataset(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match=r"test_list\.txt does not exist"):
        MedicalDataset(root, mode="test")
    (root / "labels" / "case_1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"case 'case_1'.*case_1\.npy does not exist"):
        MedicalDataset(root)


def test_bad_mode_and_list_line(tmp_path):
    root = make_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match="unknown mode"):
        MedicalDataset(root, mode="training")
    (root / "train_list.txt").write_text("images/case_0.npy\n")
    with pytest.raises(ValueError, match=r"train_list.txt:1: expected 'images/<case>.npy labels"):
        MedicalDataset(root)


def test_num_classes_disagreeing_with_dataset_json(tmp_path):
    with pytest.raises(ValueError, match=r"num_classes is 5 but .*dataset\.json has 3"):
        MedicalDataset(make_dataset(tmp_path / "d"), num_classes=5)


def test_shape_mismatch_names_the_case(tmp_path):
    root = make_dataset(tmp_path / "d")
    np.save(root / "labels" / "case_2.npy", np.zeros((8, 16, 15), np.uint8))
    ds = MedicalDataset(root)
    with pytest.raises(
        ValueError, match=r"case 'case_2': label shape \(8, 16, 15\) does not match"
    ):
        ds[2]


def test_label_out_of_range_names_the_case_but_ignore_index_is_fine(tmp_path):
    root = make_dataset(tmp_path / "d")
    label = np.zeros((8, 16, 16), np.uint8)
    label[0, 0, 0] = 7
    label[0, 0, 1] = 255
    np.save(root / "labels" / "case_1.npy", label)
    ds = MedicalDataset(root)
    with pytest.raises(
        ValueError, match=r"case 'case_1': label values \[7\] are not below num_classes=3"
    ):
        ds[1]
    np.save(root / "labels" / "case_1.npy", np.where(label == 7, 0, label))
    assert ds[1][1].max() == 255  # the ignore index passes


def test_multichannel_and_memory_mapped(tmp_path):
    root = make_dataset(tmp_path / "d")
    np.save(root / "images" / "case_0.npy", np.ones((3, 8, 16, 16), np.float32))
    ds = MedicalDataset(root)
    image, _, _ = ds.load_case(0)
    assert isinstance(image, np.memmap) and image.shape == (3, 8, 16, 16)
    assert ds[0][0].shape == (3, 8, 16, 16)


def test_samples_are_reproducible_from_their_seed(tmp_path):
    root = make_dataset(tmp_path / "d", shapes=((12, 20, 20),) * 3)
    transforms = [RandomCrop3D(size=[8, 8, 8], fg_prob=0.5), RandomFlip3D()]
    ds = MedicalDataset(root, transforms=transforms)
    a, b = ds[(1, 123)], ds[(1, 123)]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = ds[(1, 124)]
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (1, 8, 8, 8)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_sampler_is_resumable_and_covers_each_epoch():
    full = take(iter(InfiniteSampler(5, seed=3)), 20)
    resumed = take(iter(InfiniteSampler(5, seed=3, start_sample=7)), 13)
    assert resumed == full[7:]
    for epoch in range(4):  # every case once per epoch
        assert sorted(i for i, _ in full[epoch * 5 : epoch * 5 + 5]) == [0, 1, 2, 3, 4]
    assert [s for _, s in full] == [sample_seed(3, n) for n in range(20)]
    assert take(iter(InfiniteSampler(5, seed=4)), 20) != full


def test_sampler_ranks_split_one_stream():
    full = take(iter(InfiniteSampler(4, seed=0)), 12)
    rank0 = take(iter(InfiniteSampler(4, seed=0, rank=0, world_size=2)), 6)
    rank1 = take(iter(InfiniteSampler(4, seed=0, rank=1, world_size=2)), 6)
    assert rank0 == full[0::2] and rank1 == full[1::2]


def test_loader_batches_identical_with_and_without_workers(tmp_path):
    root = make_dataset(tmp_path / "d", shapes=((12, 20, 20),) * 3)
    ds = MedicalDataset(root, transforms=[RandomCrop3D(size=[8, 8, 8]), RandomFlip3D()])

    def batches(workers):
        loader = torch.utils.data.DataLoader(
            ds, batch_size=2, sampler=InfiniteSampler(len(ds), seed=1), num_workers=workers
        )
        return [b[0] for b in take(iter(loader), 3)]

    for x, y in zip(batches(0), batches(2), strict=True):
        assert torch.equal(x, y)


def test_dataset_is_registered_under_medicalseg_names(tmp_path):
    from medseg.cvlibs import DATASETS

    assert DATASETS.get("LungCoronavirus") is MedicalDataset
    assert DATASETS.get("MRISpineSeg") is MedicalDataset
    shutil.rmtree(tmp_path)


def test_file_list_selects_a_fold(tmp_path):
    root = make_dataset(tmp_path / "d")
    (root / "folds").mkdir()
    (root / "folds" / "fold_0_val_list.txt").write_text("images/case_2.npy labels/case_2.npy\n")
    ds = MedicalDataset(root, mode="val", file_list="folds/fold_0_val_list.txt")
    assert [c["id"] for c in ds.cases] == ["case_2"]
