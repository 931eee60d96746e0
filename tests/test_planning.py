"""Automatic planning: spacing rule, patch size rule, CT window, options precedence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.preprocessing.options import PrepareOptions
from medseg.preprocessing.planning import (
    case_fingerprint,
    plan_patch_size,
    plan_spacing,
    summarize_fingerprints,
)
from medseg.preprocessing.recipe import Recipe
from tests._prepare_data import geometry, make_case


def test_median_spacing_when_no_axis_is_strongly_anisotropic():
    spacings = [[2.5, 0.8, 0.8], [3.0, 0.7, 0.7], [2.0, 0.9, 0.9], [2.5, 1.0, 1.0]]
    assert plan_spacing(spacings) == pytest.approx([2.5, 0.85, 0.85])


def test_tenth_percentile_on_an_axis_more_than_three_times_coarser():
    z = [5.0, 5.0, 5.0, 5.0, 1.0, 1.5, 5.0, 5.0, 5.0, 5.0]
    spacings = [[s, 0.7, 0.7] for s in z]
    expected_z = np.percentile(z, 10)  # 1.45, not the median 5.0
    assert plan_spacing(spacings) == pytest.approx([expected_z, 0.7, 0.7])
    # ...but never finer than the other axes.
    spacings = [[s, 1.2, 1.2] for s in [0.5, 0.5, 4.0, 4.0, 4.0, 4.0, 4.0]]
    assert plan_spacing(spacings) == pytest.approx([1.2, 1.2, 1.2])
    # Exactly three times coarser is not "more than three times": the median stays.
    assert plan_spacing([[3.0, 1.0, 1.0], [3.0, 1.0, 1.0], [1.5, 1.0, 1.0]]) == [3.0, 1.0, 1.0]


def test_patch_size_is_the_median_shape_rounded_up_within_the_budget():
    assert plan_patch_size([40, 70, 100], [1, 1, 1]) == [48, 80, 112]
    patch = plan_patch_size([200, 400, 400], [2.5, 0.8, 0.8], max_voxels=128**3)
    assert math.prod(patch) <= 128**3 and all(n % 16 == 0 for n in patch)
    # The axis with the largest physical extent shrinks first: z at 2.5 mm here.
    assert patch == [48, 192, 192]  # 120, 154, 154 mm
    assert plan_patch_size([5, 5, 5], [1, 1, 1]) == [16, 16, 16]
    assert plan_patch_size([300, 300, 300], [1, 1, 1], max_voxels=16**3) == [16, 16, 16]


def test_fingerprint_and_auto_options_give_the_recipe():
    found = {}
    for i in range(3):
        image, label = make_case(i)
        found[f"c{i}"] = case_fingerprint(image.astype(np.float32), geometry(i), label, Recipe(), i)
    fingerprint = summarize_fingerprints(found)
    assert fingerprint["spacings"] == [[3.0, 1.0, 1.2]] * 3
    stats = fingerprint["foreground_intensities"][0]
    assert 100 < stats["percentile_00_5"] < stats["median"] < stats["percentile_99_5"] < 300
    recipe, plan = PrepareOptions().resolve(["CT"], fingerprint)
    assert recipe.target_spacing == (3.0, 1.0, 1.2)
    assert recipe.normalization == {
        "type": "ct",
        "window": [stats["percentile_00_5"], stats["percentile_99_5"]],
    }
    # crop to nonzero: the zero margin of the synthetic cases is gone from the shape
    assert fingerprint["shapes"][0] == [8, 16, 20]
    assert plan["patch_size"] == [16, 16, 32]
    recipe, _ = PrepareOptions(normalization="zscore", target_spacing=None).resolve(
        ["MR"], fingerprint
    )
    assert recipe.normalization == {"type": "zscore_nonzero"} and recipe.target_spacing is None


def test_options_validate_with_the_key_in_the_message():
    with pytest.raises(ValueError, match="option 'target_spacing'"):
        PrepareOptions(target_spacing=[1, 2])
    with pytest.raises(ValueError, match="option 'ct_window'"):
        PrepareOptions(ct_window=[300, 0])
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['spacing'\]"):
        PrepareOptions.from_dict({"spacing": [1, 1, 1]})
    # YAML slips: a scalar where a list belongs, a string where a boolean belongs.
    with pytest.raises(ValueError, match=r"option 'ignore_labels': got 2; accepted: a list"):
        PrepareOptions.from_dict({"ignore_labels": 2})
    with pytest.raises(ValueError, match=r"option 'use_gpu': got 'yes please'"):
        PrepareOptions.from_dict({"use_gpu": "yes please"})
    assert not PrepareOptions(target_spacing=[1, 1, 1], patch_size=[16] * 3).needs_fingerprint(
        ["MR"]
    )
    assert PrepareOptions(target_spacing=[1, 1, 1], patch_size=[16] * 3).needs_fingerprint(["CT"])
