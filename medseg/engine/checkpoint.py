"""Checkpoints: `iter_N/` folders that hold everything needed to resume exactly.

A folder is written under a temporary name and renamed, so a killed run never leaves a
half-written `iter_N/` that looks valid.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.models.pretrained import WeightsMismatchError, check_shapes, load_pretrained

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pth"
STATE_FILE = "train_state.pth"
CONFIG_FILE = "config.yaml"


def rng_states() -> dict[str, Any]:
    """The Python, NumPy and torch random states: the CPU's and this process's current GPU's.

    One GPU per process (each torchrun rank saves its own), so a checkpoint resumes on a
    machine with any number of GPUs.
    """
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo `rng_states`; the GPU state goes to the current GPU, when CUDA is present."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def write_folder_atomic(folder: Path, files: dict[str, Any]) -> None:
    """`torch.save` each `{name: object}` into `folder`, replacing it only once all are written."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, obj in files.items():
        torch.save(obj, tmp / name)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)


def save_checkpoint(folder: Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Write `model.pth` (weights only, loadable by val.py/export.py) and `train_state.pth`."""
    write_folder_atomic(folder, {MODEL_FILE: model.state_dict(), STATE_FILE: state})
    logger.info("saved checkpoint %s", folder)


def load_train_state(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read `(model_state_dict, train_state)` from an `iter_N/` folder of `save_checkpoint`."""
    folder = Path(folder)
    missing = [name for name in (MODEL_FILE, STATE_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--resume_model {folder} is not a medseg checkpoint folder: "
            f"missing {', '.join(missing)}"
        )
    model_state = torch.load(folder / MODEL_FILE, map_location="cpu", weights_only=True)
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    return model_state, state


def training_config(path: str | os.PathLike) -> Path | None:
    """The resolved config a model was trained with: `config.yaml` in its folder or above.

    `path` is `model.pth` or a folder holding it (`best_model/` has its own `config.yaml`;
    an `iter_N/` folder's is the run's, in `save_dir`).
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / CONFIG_FILE, folder.parent / CONFIG_FILE):
        if candidate.is_file():
            return candidate
    return None


def model_config(config: str | None, model_path: str | os.PathLike) -> str:
    """`--config` when given, else the config `model_path` was trained with (logged)."""
    if config is not None:
        return config
    found = training_config(model_path)
    if found is None:
        raise FileNotFoundError(
            f"--config not given and no {CONFIG_FILE} lies beside --model_path {model_path} "
            "or in its run folder; pass --config"
        )
    logger.info("config: %s (the one the model was trained with)", found)
    return str(found)


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load weights strictly for evaluation/export from `model.pth` or an `iter_N/` folder.

    Weights of another model config are one line that names the config they were trained with.
    """
    path = Path(path)
    try:
        load_pretrained(model, path / MODEL_FILE if path.is_dir() else path, strict=True)
    except WeightsMismatchError as err:
        config = training_config(path)
        if config is None:
            raise
        raise WeightsMismatchError(
            f"{err}; it was trained with {config}: pass --config {config} or leave --config out"
        ) from None


def check_resume_shapes(model: torch.nn.Module, state: dict[str, Any], folder: str) -> None:
    """One clear line when `--resume_model` holds weights of another model config."""
    try:
        check_shapes(model, state, f"--resume_model {folder}")
    except WeightsMismatchError as err:
        config = training_config(folder)
        hint = f" ({config})" if config else ""
        raise WeightsMismatchError(
            f"{err}; resume with the config of that run{hint}, or start a new run without "
            "--resume_model"
        ) from None
