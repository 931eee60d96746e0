"""Write the configs `train.py` needs for a freshly prepared dataset.

Files in `config_dir`, following the repository's three levels, one set per plan so that a
rerun with another plan never changes what an older file trains:

- `<name>_<z>_<y>_<x>.yml`: data (MedicalDataset on the prepared folder), the planned patch as
  the training crop and the inference window, augmentation, optimizer, schedule and loss (for a
  dataset that declares regions: region-based training, `regions: true` with sigmoid BCE + Dice
  per region, nnU-Net's region loss, and one output channel per region);
- `vnet_…`, `unet3d_…` and `resencunet_<name>_<z>_<y>_<x>_<iters>.yml`: the model sized for the
  device with its deep-supervision loss weights, the batch size and the iterations.

The plan (target spacing, median shape, device, measured seconds per iteration) is written as a
comment at the top. Every file carries the hash of its generated text: a file whose text no
longer matches it was edited by hand and is kept (with a warning) instead of being rewritten.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from medseg.preprocessing.planning import TrainingPlan
from medseg.preprocessing.regions import Regions
from medseg.utils.atomic import write_text_atomic
from medseg.utils.vocabulary import IGNORE_INDEX

STAMP = re.compile(r"^# medseg-generated (?P<digest>[0-9a-f]{16})\b.*$", re.MULTILINE)


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
    base: str | None = None,
    ignore_labels: bool = False,
    target_spacing: Sequence[float] | None = None,
    regions: bool = False,
) -> dict[str, Any]:
    """The dataset-level config as a dict (see the module docstring)."""
    crop = {"type": "RandomCrop3D", "size": list(patch_size), "fg_prob": 0.33}
    if ignore_labels:
        crop["ignore_index"] = IGNORE_INDEX
    dataset = {"type": "MedicalDataset", "dataset_root": dataset_root, "num_classes": num_classes}
    losses: list[dict[str, Any]] = [{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}]
    if regions:
        dataset["regions"] = True
        losses = [{"type": "BCELoss"}, {"type": "DiceLoss", "sigmoid_norm": True}]
    config: dict[str, Any] = {"_base_": base} if base else {}
    config.update(
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
                    "losses": losses,
                    "coef": [1, 1],
                }
            ],
            "coef": [1],
        },
    )
    return config


def model_configs(
    in_channels: int, num_classes: int, widths: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The `model:` node and deep-supervision loss weights of each generated model file.

    `widths` (from the `TrainingPlan`) sizes each model for the device. Every model is
    deep-supervised nnU-Net's way (outputs at their own resolution, weights halving per level,
    the lowest dropped); the weights go in the model file's `loss.coef`.
    """
    # Imported here: the models import torch, and the rest of preprocessing stays torch-free.
    from medseg.models.losses.deep_supervision import deep_supervision_weights
    from medseg.models.resenc_unet import PRESETS

    common = {"in_channels": in_channels, "num_classes": num_classes, "pretrained": None}
    native = {"deep_supervision": True, "upsample_aux": False}
    vnet = {"type": "VNet", "elu": False, **common, **widths["vnet"], **native}
    unet = {"type": "UNet3D", **common, **widths["unet3d"], "num_levels": 4, "norm": "instance"}
    resenc = {"type": "ResEncUNet", **common, **widths["resencunet"], "deep_supervision": True}
    preset = widths["resencunet"].get("preset")
    stages = PRESETS[preset].num_stages if preset else widths["resencunet"]["num_stages"]
    return {
        "vnet": {"model": vnet, "loss": {"coef": deep_supervision_weights(4)}},
        "unet3d": {"model": {**unet, **native}, "loss": {"coef": deep_supervision_weights(3)}},
        "resencunet": {"model": resenc, "loss": {"coef": deep_supervision_weights(stages - 1)}},
    }


def output_channels(num_classes: int, regions: Regions | None) -> int:
    """The networks' `num_classes`: one output per region, else one per class."""
    return num_classes if regions is None else len(regions)


def run_config(node: dict[str, Any], batch_size: int, iters: int) -> dict[str, Any]:
    """A model file's own keys: batch size, iterations, the model and its loss weights."""
    return {"batch_size": batch_size, "iters": iters, **node}


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _with_stamp(header: list[str], body: str) -> str:
    stamp = f"# medseg-generated {_digest(body)} (edit freely: a rerun keeps an edited file)"
    return "\n".join([*header, stamp]) + "\n" + body


def edited_by_hand(path: Path) -> bool:
    """Whether a generated config's text no longer matches the hash it was written with.

    A file without the stamp (written by hand, or by an older medseg) counts as edited.
    """
    text = path.read_text()
    match = STAMP.search(text)
    if match is None:
        return True
    body = text[text.index("\n", match.start()) + 1 :]
    return _digest(body) != match["digest"]


def write_config(path: Path, header: list[str], config: dict[str, Any]) -> str:
    """Write one generated config unless the user changed it; returns what happened.

    "written" (new file), "unchanged", "updated" (an unedited file whose generated text
    changed) or "kept" (edited by hand: left as it is, and the caller says so).
    """
    text = _with_stamp(header, _dump(config))
    if not path.exists():
        write_text_atomic(path, text)
        return "written"
    if path.read_text() == text:
        return "unchanged"
    if edited_by_hand(path):
        return "kept"
    write_text_atomic(path, text)
    return "updated"


def config_stem(name: str, patch_size: Sequence[int]) -> str:
    """`<name>_<z>_<y>_<x>`: the dataset file's name and the model files' middle part."""
    return "_".join([name, *(str(n) for n in patch_size)])


def write_configs(
    config_dir: str | os.PathLike,
    name: str,
    dataset_root: str,
    num_classes: int,
    in_channels: int,
    patch_size: Sequence[int],
    training: TrainingPlan,
    iters: dict[str, int],
    *,
    plan: dict[str, Any] | None = None,
    notes: dict[str, str] | None = None,
    base: str | None = None,
    ignore_labels: bool = False,
    regions: Regions | None = None,
) -> dict[Path, str]:
    """Write the dataset file and the VNet, UNet3D and ResEncUNet model files.

    Args:
        config_dir: Destination folder (created).
        name: Dataset name used in the file names.
        dataset_root: The prepared folder, absolute or relative to `data_root`.
        num_classes: Classes including background.
        in_channels: Image channels (modalities).
        patch_size: Training crop and inference window (z, y, x).
        training: The device plan (model widths, batch size).
        iters: Training iterations by model file prefix ("vnet", "unet3d", "resencunet").
        plan: The plan from dataset.json, summarised in a comment.
        notes: One comment line per model file prefix (e.g. the measured step time).
        base: `_base_` of the dataset file (e.g. the global configs), or None.
        ignore_labels: Whether the labels hold the ignore id 255.
        regions: The dataset's regions: region-based training (None: softmax over classes).

    Returns:
        What `write_config` did, by path: the dataset file first, then the model files.
    """
    config_dir = Path(config_dir)
    stem = config_stem(name, patch_size)
    header = [f"# Generated by medseg's dataset preparation for '{name}'."]
    if plan:
        header.append(
            f"# Plan: target spacing (z, y, x) {plan.get('target_spacing')} mm, median shape "
            f"after resampling {plan.get('median_shape_after_resampling')}, "
            f"patch {plan.get('patch_size')}."
        )
    dataset_file = config_dir / f"{stem}.yml"
    spacing = (plan or {}).get("target_spacing")
    config = dataset_config(
        dataset_root,
        num_classes,
        patch_size,
        base,
        ignore_labels,
        target_spacing=spacing,
        regions=regions is not None,
    )
    done = {dataset_file: write_config(dataset_file, header, config)}
    channels = output_channels(num_classes, regions)
    for prefix, node in model_configs(in_channels, channels, training.widths).items():
        path = config_dir / f"{prefix}_{stem}_{iters[prefix]}.yml"
        kind = node["model"]["type"]
        lines = [f"# Generated: the {kind} model for '{name}', {training.device} plan."]
        if notes and prefix in notes:
            lines.append(f"# {notes[prefix]}")
        body = {
            "_base_": dataset_file.name,
            **run_config(node, training.batch_size, iters[prefix]),
        }
        done[path] = write_config(path, lines, body)
    return done
