"""The largest-component filter is chosen per class on cross-validation predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medseg.cvlibs.errors import ConfigError
from medseg.inference.postprocess_choice import (
    choose_postprocessing,
    load_largest_component,
)

NAMES = {1: "organ", 2: "kidney", 3: "absent"}


def constructed_case() -> tuple[np.ndarray, np.ndarray]:
    """Class 1: one organ predicted well plus a far spurious blob; class 2: truly two kidneys."""
    reference = np.zeros((20, 40, 40), dtype=np.uint8)
    reference[5:15, 5:15, 5:15] = 1
    reference[5:12, 25:30, 5:10] = 2  # left kidney
    reference[5:12, 25:30, 30:36] = 2  # right kidney, far from the left one
    prediction = reference.copy()
    prediction[16:19, 30:34, 30:34] = 1  # a false positive far from the organ
    prediction[5, 25:30, 5:10] = 0  # the left kidney predicted a little too small
    return prediction, reference


def test_a_spurious_blob_makes_the_filter_chosen_two_true_components_do_not():
    choice = choose_postprocessing([constructed_case(), constructed_case()], NAMES)
    by_name = {c.name: c for c in choice.classes}
    organ, kidney, absent = by_name["organ"], by_name["kidney"], by_name["absent"]
    assert (
        organ.chosen and organ.dice_with == 1.0 and organ.dice_without == pytest.approx(2000 / 2048)
    )
    # The filter would drop one of the two kidneys: Dice falls, so it is not chosen.
    assert not kidney.chosen and kidney.dice_with == pytest.approx(420 / 595)
    assert kidney.dice_without == pytest.approx(720 / 745)
    assert not absent.chosen and math.isnan(absent.dice_without)
    assert choice.largest_component == (1,) and choice.cases == 2


def test_a_tie_keeps_the_filter_off():
    reference = np.zeros((8, 8, 8), dtype=np.uint8)
    reference[2:5, 2:5, 2:5] = 1
    choice = choose_postprocessing([(reference.copy(), reference)], {1: "organ"})
    assert choice.largest_component == ()


def test_the_written_choice_is_read_back_and_checked(tmp_path):
    choice = choose_postprocessing([constructed_case()], NAMES)
    path = tmp_path / "crossval" / "postprocessing.json"
    choice.write(path)
    data = json.loads(path.read_text())
    assert data["largest_component"] == [1] and data["classes"]["kidney"]["chosen"] is False
    assert load_largest_component(tmp_path, num_classes=4) == (1,)  # a crossval save_dir
    with pytest.raises(ConfigError, match=r"postprocess\.largest_component"):
        load_largest_component(path, num_classes=1)
    with pytest.raises(FileNotFoundError, match="medseg-crossval --evaluate"):
        load_largest_component(tmp_path / "elsewhere.json", num_classes=4)
