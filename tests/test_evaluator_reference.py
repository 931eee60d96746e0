"""Original-space scoring compares with the raw label remapped as preparation remapped it."""

from types import SimpleNamespace

import numpy as np
import pytest

from medseg.engine.evaluator import reference_label
from medseg.preprocessing.cases import LabelRules
from medseg.preprocessing.io import Geometry, write_volume

EYE = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def _reference_of(tmp_path, raw: np.ndarray, rules: LabelRules) -> np.ndarray:
    geometry = Geometry(raw.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), EYE)
    path = tmp_path / "label.nii.gz"
    write_volume(raw, geometry, path)
    description = SimpleNamespace(source_label_path=lambda case: path, label_rules=rules)
    dataset = SimpleNamespace(description=description, num_classes=4)
    return reference_label(dataset, "case", "original", raw, geometry)


def test_the_raw_reference_is_remapped_with_the_datasets_label_rules(tmp_path):
    raw = np.zeros((4, 5, 6), dtype=np.uint8)
    raw[0], raw[1], raw[2], raw[3, :2] = 1, 3, 5, 9  # spleen, kidney_left, liver, another organ
    rules = LabelRules(label_map={1: 1, 2: 2, 3: 2, 5: 3, 9: 0})
    expected = np.zeros_like(raw)
    expected[0], expected[1], expected[2] = 1, 2, 3
    np.testing.assert_array_equal(_reference_of(tmp_path, raw, rules), expected)


def test_an_undeclared_raw_id_is_an_error_naming_the_file(tmp_path):
    raw = np.zeros((4, 5, 6), dtype=np.uint8)
    raw[0] = 7
    with pytest.raises(ValueError, match=r"label\.nii\.gz: label ids \[7\] are not declared"):
        _reference_of(tmp_path, raw, LabelRules())
