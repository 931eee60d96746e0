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

from medseg.models.pretrained import load_pretrained

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pth"
STATE_FILE = "train_state.pth"


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


def write_folder_atomic(
    folder: Path, files: dict[str, Any], texts: dict[str, str] | None = None
) -> None:
    """`torch.save` each `{name: object}`, write each `{name: text}`, into `folder` atomically.

    The folder is replaced only once every file is written.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, obj in files.items():
        torch.save(obj, tmp / name)
    for name, text in (texts or {}).items():
        (tmp / name).write_text(text)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)


def save_checkpoint(
    folder: Path, model: torch.nn.Module, state: dict[str, Any], texts: dict[str, str] | None = None
) -> None:
    """Write `model.pth` (weights only, for val.py/export.py), `train_state.pth` and `texts`.

    `texts` are e.g. the model folder's `model_info.json` and `config.yaml`.
    """
    write_folder_atomic(folder, {MODEL_FILE: model.state_dict(), STATE_FILE: state}, texts)
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


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load weights strictly for evaluation/export from `model.pth` or an `iter_N/` folder."""
    path = Path(path)
    load_pretrained(model, path / MODEL_FILE if path.is_dir() else path, strict=True)
