"""The typed dataset description: round trip, old files, and errors that name the file and key."""

from __future__ import annotations

import dataclasses
import json

import pytest

from medseg.cvlibs.errors import ConfigError
from medseg.preprocessing.description import CaseEntry, DatasetDescription, load_description
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.pipeline import PreprocessRecord

RECORD = PreprocessRecord(
    geometry=Geometry(
        (4, 5, 6), (2.0, 1.0, 1.0), (1.0, 2.0, 3.0), ((0, 0, 1), (0, 1, 0), (1, 0, 0))
    ),
    permutation=(0, 1, 2),
    flips=(False, False, True),
    shape_after_reorient=(4, 5, 6),
    crop_box=((0, 4), (1, 5), (0, 6)),
    shape_after_crop=(4, 4, 6),
    shape_after_resample=(8, 4, 6),
    spacing_after_resample=(1.0, 1.0, 1.0),
    normalization=[{"type": "ct", "window": [-100.0, 200.0]}],
)

# dataset.json as preparation wrote it before the description was typed (keys, order, extras).
OLD_FILE = {
    "name": "blobs",
    "modalities": ["CT"],
    "labels": {"0": "background", "1": "core"},
    "num_classes": 2,
    "recipe": {
        "orientation": "LPS",
        "crop": {"threshold": None, "margin": 0},
        "target_spacing": [1.0, 1.0, 1.0],
        "image_order": 1,
        "label_interpolation": "nearest",
        "normalization": {"type": "ct", "window": [-100.0, 200.0]},
    },
    "label_rules": {"label_map": {"5": 1}, "ignore_labels": [4], "ignore_index": 255},
    "seed": 3,
    "val_fraction": 0.5,
    "test_fraction": 0.0,
    "splits": {"train": ["a"], "val": ["b"], "test": []},
    "folds": [],
    "failed_cases": {"c": "unreadable"},
    "fingerprint": {"spacings": [[1.0, 1.0, 1.0]]},
    "plan": {"patch_size": [16, 16, 16]},
    "cases": {
        c: {
            "image": f"images/{c}.npy",
            "label": f"labels/{c}.npy",
            "source_images": [f"../raw/imagesTr/{c}_0000.nii.gz"],
            "source_label": f"../raw/labelsTr/{c}.nii.gz",
            "record": RECORD.to_dict(),
            "hash": "abc",
        }
        for c in ("a", "b")
    },
}


def test_a_file_written_before_the_types_loads_and_writes_back_unchanged(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps(OLD_FILE))
    description = load_description(tmp_path)
    assert description.labels == {0: "background", 1: "core"} and description.num_classes == 2
    assert description.label_rules.label_map == {5: 1}
    assert description.label_rules.ignore_labels == (4,)
    assert description.recipe.target_spacing == (1.0, 1.0, 1.0)
    assert description.splits["val"] == ("b",) and description.failed_cases == {"c": "unreadable"}
    assert description.record("a") == RECORD and description.record("zz") is None
    assert description.source_label_path("b") == tmp_path / "../raw/labelsTr/b.nii.gz"
    assert description.class_names(3) == ["background", "core", "class_2"]
    out = tmp_path / "copy"
    out.mkdir()
    description.write(out)
    assert json.loads((out / "dataset.json").read_text()) == OLD_FILE
    assert load_description(out / "dataset.json") == description


def test_a_minimal_hand_made_file_and_a_missing_one(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"1": "liver"}}))
    description = load_description(tmp_path)
    assert description.num_classes is None and description.recipe is None
    assert description.cases == {} and description.source_label_path("x") is None
    empty = load_description(tmp_path / "nowhere", missing_ok=True)
    assert empty == DatasetDescription() and empty.path == tmp_path / "nowhere" / "dataset.json"
    with pytest.raises(FileNotFoundError, match=r"nowhere/dataset\.json"):
        load_description(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"labels": {"one": "liver"}}, "labels"),
        ({"num_classes": "3"}, "num_classes"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"recipe": {"target_spacing": [0, 1, 1]}}, "recipe"),
        ({"splits": {"training": []}}, "splits"),
        ({"folds": [{"train": ["a"], "val": "b"}]}, "folds.0.val"),
        ({"cases": {"a": {"image": 3, "label": "x"}}}, "cases.a.image"),
        (
            {"cases": {"a": {**OLD_FILE["cases"]["a"], "record": {"geometry": {}}}}},
            "cases.a.record",
        ),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, change, key):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({**OLD_FILE, **change}))
    with pytest.raises(ConfigError, match=rf"in {path} at key '{key}'"):
        load_description(tmp_path)


def test_not_json_names_the_file(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"dataset\.json: not valid JSON"):
        load_description(tmp_path)


def test_a_record_file_round_trips_and_a_broken_one_counts_as_unfinished(tmp_path):
    entry = CaseEntry(
        "images/a.npy", "labels/a.npy", ("../a.nii.gz",), "../a_seg.nii.gz", RECORD, "h"
    )
    entry.write(tmp_path / "a.json")
    assert CaseEntry.load(tmp_path / "a.json") == entry
    assert CaseEntry.load(tmp_path / "missing.json") is None
    (tmp_path / "b.json").write_text('{"image": "images/b.npy"')
    assert CaseEntry.load(tmp_path / "b.json") is None
    bare = dataclasses.replace(entry, record=None, source_label=None)
    assert CaseEntry.from_dict(bare.to_dict(), "x", "cases.a") == bare
