"""Checkpoints: `iter_N/` folders that hold everything needed to resume exactly.

A folder is written under a temporary name and renamed, so a killed run never leaves a
half-written `iter_N/` that looks valid; replacing a folder (`best_model/`) swaps the two in
one step, so the old one stays visible until the new one is in place.

Nothing is unpickled: `model.pth` and `train_state.pth` are read with `weights_only=True`, so
they may hold tensors and plain Python values only (the RNG states are stored that way).
Checkpoints of earlier medseg versions kept NumPy's RNG state as an array: they are read with
NumPy's array type allowlisted as well, and nothing else.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import pickle
import random
import re
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
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        # Plain values, not an ndarray, so `torch.load(weights_only=True)` reads them back.
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo `rng_states`; the GPU state goes to the current GPU, when CUDA is present."""
    random.setstate(tuple(states["python"]))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False  # the filesystem or kernel cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(b))


def recover_folder(folder: Path) -> None:
    """Put back `folder` from its `.old` copy if a run was killed between two renames."""
    folder = Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    if old.is_dir() and not folder.exists():
        os.replace(old, folder)
        logger.warning("%s restored from %s (a run was killed while replacing it)", folder, old)


def write_folder_atomic(folder: Path, files: dict[str, Any]) -> None:
    """Write `{name: object}` into `folder`, replacing it only once all are written.

    A `str` value is written as text, anything else with `torch.save`. An existing `folder`
    is swapped with the new one in one step where the filesystem can (Linux), so it never
    disappears; elsewhere a run killed between the two renames leaves `.<folder>.old`, which
    `recover_folder` (called here and on loading) puts back.
    """
    folder = Path(folder)
    recover_folder(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for name, obj in files.items():
            if isinstance(obj, str):
                (tmp / name).write_text(obj)
            else:
                torch.save(obj, tmp / name)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as a RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise OSError(
            getattr(err, "errno", None) or errno.EIO,
            f"cannot write {folder} ({reason}); is {folder.parent} full or read-only?",
        ) from None
    if not folder.exists():
        os.replace(tmp, folder)
    elif _exchange(tmp, folder):
        shutil.rmtree(tmp)  # now the old folder
    else:
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old)


def earlier_checkpoints(save_dir: Path, up_to: int) -> list[Path]:
    """The `iter_N/` folders in `save_dir` with N <= `up_to`, oldest first (a resumed run's)."""
    found = []
    for folder in Path(save_dir).glob("iter_*"):
        number = folder.name.removeprefix("iter_")
        if folder.is_dir() and number.isdigit() and int(number) <= up_to:
            found.append((int(number), folder))
    return [folder for _, folder in sorted(found)]


def save_checkpoint(
    folder: Path, model: torch.nn.Module, state: dict[str, Any], texts: dict[str, str] | None = None
) -> None:
    """Write `model.pth` (weights only, for val.py/export.py), `train_state.pth` and `texts`.

    `texts` are e.g. the model folder's `model_info.json` and `config.yaml`.
    """
    files = {MODEL_FILE: model.state_dict(), STATE_FILE: state, **(texts or {})}
    write_folder_atomic(folder, files)
    logger.info("saved checkpoint %s", folder)


def load_train_state(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read `(model_state_dict, train_state)` from an `iter_N/` folder of `save_checkpoint`."""
    folder = Path(folder)
    recover_folder(folder)
    missing = [name for name in (MODEL_FILE, STATE_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--resume_model {folder} is not a medseg checkpoint folder: "
            f"missing {', '.join(missing)}"
        )
    model_state = _load(folder / MODEL_FILE)
    state = _load(folder / STATE_FILE)
    if not isinstance(state, dict) or not {"iter", "optimizer", "rng"} <= set(state):
        raise ValueError(f"{folder / STATE_FILE}: not a medseg training state")
    return model_state, state


def _load(path: Path) -> Any:
    """`torch.load(weights_only=True)`, with errors naming the file.

    Files of earlier medseg versions hold NumPy's RNG state as an array; NumPy's array type is
    allowlisted for them (only that: no other class, no function call).
    """
    numpy_array = [np.ndarray.__reduce__(np.zeros(0))[0], np.ndarray, np.dtype]
    numpy_array.append(type(np.dtype(np.uint32)))
    try:
        with torch.serialization.safe_globals(numpy_array):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        reason = f"it names {found.group(1)}" if found else "it holds other objects"
        raise ValueError(
            f"{path}: refused: a checkpoint may hold tensors and plain values only, {reason} "
            "(nothing in it is executed; was the file replaced?)"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{path}: cannot be read ({type(err).__name__}: {str(err).strip()[:200]}); "
            "the file is truncated or corrupt (an interrupted copy?)"
        ) from None


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
