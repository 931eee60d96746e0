"""The configs dataset preparation writes carry nnU-Net's training recipe and build."""

from __future__ import annotations

import pytest
import torch
import yaml

import medseg.models  # registers the models
import medseg.transforms  # noqa: F401  (registers the transforms)
from medseg.cvlibs.registry import MODELS, TRANSFORMS
from medseg.preprocessing.configgen import augmentations, write_configs


def test_generated_configs_hold_the_nnunet_recipe(tmp_path):
    plan = {"target_spacing": [1.0, 1.0, 1.0], "patch_size": [16, 16, 16]}
    paths = write_configs(tmp_path, "demo", "demo/prep", 3, 1, [16, 16, 16], plan=plan, iters=10)
    dataset = yaml.safe_load(paths[0].read_text())
    assert dataset["optimizer"] == {
        "type": "sgd", "momentum": 0.99, "nesterov": True, "weight_decay": 3.0e-5,
        "grad_clip_norm": 12.0,
    }  # fmt: skip
    assert dataset["lr_scheduler"]["learning_rate"] == 0.01
    assert dataset["lr_scheduler"]["power"] == 0.9
    transforms = dataset["train_dataset"]["transforms"]
    assert transforms[0]["type"] == "RandomCrop3D" and transforms[0]["fg_prob"] == 0.33
    kinds = [t["type"] for t in transforms[1:]]
    assert kinds == [
        "RandomRotation3D", "RandomZoom3D", "RandomGaussianNoise", "RandomGaussianBlur",
        "RandomScaleIntensity", "RandomContrast", "RandomLowResolution", "RandomGamma",
        "RandomFlip3D",
    ]  # fmt: skip
    for node in transforms:
        TRANSFORMS.get(node["type"])(**{k: v for k, v in node.items() if k != "type"})
    assert len(paths) == 4
    for path in paths[1:]:
        node = yaml.safe_load(path.read_text())
        coef = node["loss"]["coef"]
        assert sum(coef) == pytest.approx(1.0) and coef[-1] == 0.0
        assert coef[0] == pytest.approx(2 * coef[1])
        model = node["model"]
        assert model["deep_supervision"] is True
        if model["type"] == "UNet3D":  # building the ResEnc M preset is slow; its shapes are
            # tested in test_deep_supervision.py
            kwargs = {k: v for k, v in model.items() if k != "type"}
            net = MODELS.get("UNet3D")(**{**kwargs, "base_channels": 4}).train()
            assert len(net(torch.zeros(1, 1, 16, 16, 16))) == len(coef)


def test_anisotropic_spacing_rotates_in_plane_only():
    rotation = augmentations([4.0, 1.0, 1.0])[0]
    assert rotation["rotate_planes"] == [[1, 2]] and rotation["degrees"] == 180
    assert "rotate_planes" not in augmentations([1.5, 1.0, 1.0])[0]
