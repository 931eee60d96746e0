"""Write the configs `train.py` needs for a freshly prepared dataset.

Three files in `config_dir`, following the repository's three levels:

- `<name>.yml`: data (MedicalDataset on the prepared folder), the planned patch as the training
  crop and the inference window, augmentation, optimizer, schedule and loss;
- `vnet_…`, `unet3d_…` and `resencunet_<name>_<z>_<y>_<x>_<iters>.yml`: the model and its
  deep-supervision loss weights.

The plan (target spacing, median shape) is written as a comment at the top of the dataset file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medseg.utils.atomic import write_text_atomic
from medseg.utils.vocabulary import IGNORE_INDEX

DEFAULT_ITERS = 15000  # MedicalSeg's schedule length for its 3D datasets


# nnU-Net's default training recipe (nnUNetTrainer): SGD with Nesterov momentum 0.99, lr 1e-2
# with poly decay and no warmup, weight decay 3e-5, gradient clipping at norm 12, Dice + CE with
# deep supervision, a third of the patches centred on foreground, and its augmentation set.
# (Mirroring at test time is not in the config: evaluation during training stays unmirrored.)
ANISOTROPY_RATIO = 3.0  # nnU-Net rotates in-plane only when one spacing exceeds 3x another


def augmentations(target_spacing: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """nnU-Net's augmentation set after the crop, in its order; label-safe by construction.

    Rotation (±30° in any plane, or only in-plane ±180° on anisotropic spacing) and scaling
    (0.7-1.4), Gaussian noise, blur, brightness, contrast, low-resolution simulation, gamma and
    mirroring along every axis, with nnU-Net's probabilities.
    """
    anisotropic = bool(
        target_spacing and max(target_spacing) > ANISOTROPY_RATIO * min(target_spacing)
    )
    rotation: dict[str, Any] = {"type": "RandomRotation3D", "degrees": 30, "prob": 0.2}
    if anisotropic:
        rotation.update(degrees=180, rotate_planes=[[1, 2]])
    return [
        rotation,
        {"type": "RandomZoom3D", "scale": [0.7, 1.4], "prob": 0.2},
        {"type": "RandomGaussianNoise", "std": [0.0, 0.316], "prob": 0.1},
        {"type": "RandomGaussianBlur", "sigma": [0.5, 1.0], "prob": 0.2},
        {"type": "RandomScaleIntensity", "scale": [0.75, 1.25], "prob": 0.15},
        {"type": "RandomContrast", "factor": [0.75, 1.25], "prob": 0.15},
        {"type": "RandomLowResolution", "zoom": [0.5, 1.0], "prob": 0.25},
        {"type": "RandomGamma", "gamma": [0.7, 1.5], "prob": 0.3},
        {"type": "RandomFlip3D", "prob": 0.5, "per_axis": True},
    ]


def dataset_config(
    dataset_root: str,
    num_classes: int,
    patch_size: Sequence[int],
    iters: int = DEFAULT_ITERS,
    base: str | None = None,
    ignore_labels: bool = False,
    target_spacing: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The dataset-level config as a dict (see the module docstring)."""
    crop = {"type": "RandomCrop3D", "size": list(patch_size), "fg_prob": 0.33}
    if ignore_labels:
        crop["ignore_index"] = IGNORE_INDEX
    dataset = {"type": "MedicalDataset", "dataset_root": dataset_root, "num_classes": num_classes}
    config: dict[str, Any] = {"_base_": base} if base else {}
    config.update(
        batch_size=2,
        iters=iters,
        train_dataset={
            **dataset,
            "mode": "train",
            "transforms": [crop, *augmentations(target_spacing)],
        },
        val_dataset={**dataset, "mode": "val", "transforms": []},
        inference={
            "patch_size": list(patch_size),
            "overlap": 0.5,
            "batch_size": 1,
            "gaussian": True,
        },
        optimizer={
            "type": "sgd",
            "momentum": 0.99,
            "nesterov": True,
            "weight_decay": 3.0e-5,
            "grad_clip_norm": 12.0,
        },
        lr_scheduler={
            "type": "PolynomialDecay",
            "learning_rate": 0.01,
            "end_lr": 0,
            "power": 0.9,
        },
        loss={
            "types": [
                {
                    "type": "MixedLoss",
                    "losses": [{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}],
                    "coef": [1, 1],
                }
            ],
            "coef": [1],
        },
    )
    return config


def model_configs(in_channels: int, num_classes: int) -> dict[str, dict[str, Any]]:
    """The `model:` node and deep-supervision loss weights of each generated model file.

    Every model is deep-supervised nnU-Net's way (outputs at their own resolution, weights
    halving per level, the lowest dropped); the weights go in the model file's `loss.coef`.
    """
    # Imported here: the models import torch, and the rest of preprocessing stays torch-free.
    from medseg.models.losses.deep_supervision import deep_supervision_weights
    from medseg.models.resenc_unet import PRESETS

    common = {"in_channels": in_channels, "num_classes": num_classes, "pretrained": None}
    native = {"deep_supervision": True, "upsample_aux": False}
    vnet = {"type": "VNet", "elu": False, **common, **native}
    unet = {"type": "UNet3D", **common, "base_channels": 32, "num_levels": 4, "norm": "instance"}
    resenc = {"type": "ResEncUNet", **common, "preset": "M", "deep_supervision": True}
    return {
        "vnet": {"model": vnet, "loss": {"coef": deep_supervision_weights(4)}},
        "unet3d": {"model": {**unet, **native}, "loss": {"coef": deep_supervision_weights(3)}},
        "resencunet": {
            "model": resenc,
            "loss": {"coef": deep_supervision_weights(PRESETS["M"].num_stages - 1)},
        },
    }


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def write_configs(
    config_dir: str | os.PathLike,
    name: str,
    dataset_root: str,
    num_classes: int,
    in_channels: int,
    patch_size: Sequence[int],
    *,
    plan: dict[str, Any] | None = None,
    iters: int = DEFAULT_ITERS,
    base: str | None = None,
    ignore_labels: bool = False,
) -> list[Path]:
    """Write the dataset file and the VNet and UNet3D model files; returns their paths.

    Args:
        config_dir: Destination folder (created).
        name: Dataset name used in the file names.
        dataset_root: The prepared folder, absolute or relative to `data_root`.
        num_classes: Classes including background.
        in_channels: Image channels (modalities).
        patch_size: Training crop and inference window (z, y, x).
        plan: The plan from dataset.json, summarised in a comment.
        iters: Training iterations.
        base: `_base_` of the dataset file (e.g. the global configs), or None.
        ignore_labels: Whether the labels hold the ignore id 255.
    """
    config_dir = Path(config_dir)
    header = [f"# Generated by medseg's dataset preparation for '{name}'."]
    if plan:
        header.append(
            f"# Plan: target spacing (z, y, x) {plan.get('target_spacing')} mm, median shape "
            f"after resampling {plan.get('median_shape_after_resampling')}, "
            f"patch {plan.get('patch_size')}."
        )
    dataset_file = config_dir / f"{name}.yml"
    spacing = (plan or {}).get("target_spacing")
    config = dataset_config(
        dataset_root, num_classes, patch_size, iters, base, ignore_labels, target_spacing=spacing
    )
    write_text_atomic(dataset_file, "\n".join(header) + "\n" + _dump(config))
    written = [dataset_file]
    suffix = "_".join(str(n) for n in patch_size)
    for prefix, node in model_configs(in_channels, num_classes).items():
        path = config_dir / f"{prefix}_{name}_{suffix}_{iters}.yml"
        text = f"# Generated: the {node['model']['type']} model for '{name}'.\n"
        write_text_atomic(path, text + _dump({"_base_": dataset_file.name, **node}))
        written.append(path)
    return written
