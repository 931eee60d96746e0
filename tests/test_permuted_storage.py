"""A scan stored with permuted, flipped axes is the same scan: same network input, same mask.

Issue 13 reported false kidney blobs on the phantom's permuted-storage cases. Storage was not the
cause (these tests pin that preprocessing yields the identical array and a model's prediction,
mapped back to each file's own grid, the same label map in physical space): the blobs came from
an inference window longer along z than those scans (last test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.cvlibs import Config
from medseg.inference.case import CasePipeline
from medseg.inference.settings import InferenceSettings
from medseg.inference.torch_predictor import TorchPredictor
from medseg.models.unet3d import UNet3D
from medseg.preparation import phantom as phantom_module
from medseg.preprocessing.orientation import (
    lps_transform,
    reorient,
    reorient_geometry,
    undo_reorient,
)
from medseg.preprocessing.pipeline import preprocess_case
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.resample import resampled_shape
from tests.conftest import REPO

# Array axes (z, y, x) stored as (y, x, z), with the new y reversed: a permuted, flipped file.
STORAGE = ((1, 2, 0), (False, True, False))


@pytest.fixture(scope="module")
def case_and_copy():
    phantom = phantom_module
    image, label, geometry = phantom.make_case(3, seed=11, size=(64, 64, 24))  # LPS-stored
    copy = (
        np.ascontiguousarray(reorient(image, *STORAGE)),
        np.ascontiguousarray(reorient(label, *STORAGE)),
        reorient_geometry(geometry, *STORAGE),
    )
    assert copy[0].shape != image.shape  # really stored differently
    # The demo's recipe at a coarser target spacing keeps the test fast.
    recipe = Recipe.from_dict({**phantom.recipe().to_dict(), "target_spacing": [5.0, 4.0, 4.0]})
    return (image, label, geometry), copy, recipe


def test_permuted_storage_gives_the_identical_preprocessed_case(case_and_copy):
    (image, label, geometry), (image2, label2, geometry2), recipe = case_and_copy
    a, la, record_a = preprocess_case(image[None].astype(np.float32), geometry, recipe, label)
    b, lb, record_b = preprocess_case(image2[None].astype(np.float32), geometry2, recipe, label2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert record_a.spacing_after_resample == record_b.spacing_after_resample


def test_permuted_storage_gives_the_same_prediction_in_physical_space(case_and_copy):
    (image, _, geometry), (image2, _, geometry2), recipe = case_and_copy
    torch.manual_seed(0)
    predictor = TorchPredictor(UNet3D(1, 4, base_channels=4, num_levels=3, norm="instance"))
    settings = InferenceSettings(patch_size=(16, 16, 16), overlap=0.25)
    pipeline = CasePipeline(predictor, settings, num_classes=4)
    masks = []
    for img, geo in ((image, geometry), (image2, geometry2)):
        pre, _, record = preprocess_case(img[None].astype(np.float32), geo, recipe)
        masks.append(pipeline.preprocessed(pre, record).label)
    assert masks[0].shape == image.shape and masks[1].shape == image2.shape
    assert len(np.unique(masks[0])) > 1  # the untrained net still draws several classes
    np.testing.assert_array_equal(undo_reorient(masks[1], *STORAGE), masks[0])


@pytest.mark.parametrize(
    "config", ["vnet_phantom_32_48_48_600.yml", "unet3d_phantom_32_48_48_600.yml"]
)
def test_phantom_window_is_never_longer_than_a_scan_along_z(config):
    """The cause of issue 13's false kidney blobs: a window of 48 slices on scans of 46-47.

    The body runs through the top and bottom of every phantom scan; padding a too-short scan
    with air makes a body end the network never saw in training.
    """
    phantom = phantom_module
    target = phantom.OPTIONS["target_spacing"]
    shortest = min(
        resampled_shape(reoriented.shape, reoriented.spacing, target)[0]
        for seed in range(12)
        for index in range(20)
        for geometry in [
            phantom.case_geometry(index, phantom.DEFAULT_SIZE, np.random.default_rng([seed, index]))
        ]
        for reoriented in [reorient_geometry(geometry, *lps_transform(geometry))]
    )
    settings = Config(REPO / "configs" / "phantom" / config).inference
    assert settings.patch_size[0] <= shortest
