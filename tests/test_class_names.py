"""Class names from dataset.json files in either layout (tools/evaluate.py, tools/visualize.py)."""

import json
import logging

import pytest

from medseg.preprocessing.description import read_class_names


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_both_directions_and_a_bare_mapping(tmp_path):
    medseg = write(tmp_path / "a.json", {"labels": {"0": "background", "1": "liver"}})
    nnunet = write(tmp_path / "b.json", {"name": "x", "labels": {"background": 0, "liver": 1}})
    bare = write(tmp_path / "c.json", {"2": "spleen", "1": "liver"})
    expected = {0: "background", 1: "liver"}
    assert read_class_names(medseg) == read_class_names(nnunet) == expected
    assert list(read_class_names(bare).items()) == [(1, "liver"), (2, "spleen")]


def test_region_labels_are_skipped_with_a_warning(tmp_path, caplog):
    regions = {"background": 0, "whole_tumour": [1, 2, 3], "enhancing": 3}
    path = write(tmp_path / "r.json", {"labels": regions})
    with caplog.at_level(logging.WARNING, logger="medseg.preprocessing.description"):
        assert read_class_names(path) == {0: "background", 3: "enhancing"}
    assert "region labels ['whole_tumour'] name no single id" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", r"bad\.json: cannot read it as JSON"),
        (json.dumps({"labels": []}), r"bad\.json: expected a `labels` mapping"),
        (json.dumps({"labels": {"liver": 1.5}}), r"'liver': 1\.5 is neither id → name"),
        (json.dumps({"labels": {"all": [1, 2]}}), r"no label entry maps an id to a name"),
    ],
)
def test_bad_files_are_named_with_what_was_expected(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_class_names(path)
