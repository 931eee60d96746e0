"""Split list files: any legal file name survives, MedicalSeg-style lists still read."""

import numpy as np
import pytest

from medseg.datasets import MedicalDataset
from medseg.preprocessing import prepare as prep
from medseg.preprocessing.description import load_description
from medseg.preprocessing.file_list import format_line, parse_line, read_list, write_list
from medseg.preprocessing.formats.nnunet import read_nnunet_raw
from medseg.preprocessing.options import PrepareOptions
from tests._prepare_data import write_nnunet

NAMES = ["plain", "with space", "tab\tand  two", 'quote"d', "back\\slash", "new\nline", '"lead']


@pytest.mark.parametrize("name", NAMES)
def test_every_name_round_trips(tmp_path, name):
    write_list(tmp_path / "list.txt", [name, "other"])
    expected = [[f"images/{c}.npy", f"labels/{c}.npy"] for c in (name, "other")]
    assert [paths for _, paths in read_list(tmp_path / "list.txt")] == expected


def test_medicalseg_lines_read_as_before():
    line = "images/case_0.npy   labels/case_0.npy "
    assert parse_line(line, "x:1") == ["images/case_0.npy", "labels/case_0.npy"]
    assert format_line(["images/case_0.npy", "labels/case_0.npy"]) == line.split()[0] + (
        " labels/case_0.npy"
    )


def test_a_bad_quote_names_the_line():
    with pytest.raises(ValueError, match=r"list\.txt:3: unterminated or bad quoted path"):
        parse_line('"images/a b.npy labels/x.npy', "list.txt:3")


def test_names_with_spaces_go_from_preparation_to_training(tmp_path):
    raw = write_nnunet(tmp_path, num_cases=4)
    for folder in ("imagesTr", "labelsTr"):
        for path in (raw / folder).iterdir():
            path.rename(path.with_name(path.name.replace("blob_", "blob ")))
    options = PrepareOptions(
        target_spacing=[3.0, 1.5, 1.5], patch_size=[16, 16, 16], ct_window=[0, 300]
    )
    info = prep.prepare_raw(read_nnunet_raw(raw), tmp_path / "out", options)
    dataset = MedicalDataset(str(tmp_path / "out"), mode="train")
    assert sorted(c["id"] for c in dataset.cases) == sorted(info.splits["train"])
    assert all(" " in c["id"] for c in dataset.cases)
    image, label, case = dataset[0]
    assert image.ndim == 4 and label.shape == image.shape[1:] and " " in case
    saved = np.load(tmp_path / "out" / "images" / f"{case}.npy")
    assert np.array_equal(image, saved)
    assert load_description(tmp_path / "out").cases[case].image == f"images/{case}.npy"
