"""Load medseg (PyTorch) checkpoints into a model: the `pretrained` argument of every network."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)

PADDLE_SUFFIXES = (".pdparams", ".pdopt")


def _read_state_dict(path: str) -> Mapping[str, torch.Tensor]:
    """Return the state_dict in `path`: a plain one or the `"model"` entry of a checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors alike
        raise ValueError(
            f"cannot read '{path}' as a PyTorch checkpoint ({type(err).__name__}: {err}); only "
            "medseg/PyTorch checkpoints (a state_dict saved with torch.save) are supported"
        ) from err
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("model"), Mapping):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.items()
    ):
        found = list(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint)
        raise ValueError(
            f"'{path}' holds no state_dict: expected a mapping of parameter names to tensors or "
            f"{{'model': state_dict, ...}}, found {found}"
        )
    return checkpoint


class WeightsMismatchError(ValueError):
    """The weights do not fit the model: another width, depth or class count."""


def check_shapes(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise `WeightsMismatchError` (one line) if a tensor both sides have differs in shape."""
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        key = mismatched[0]
        raise WeightsMismatchError(
            f"{source} does not fit this {type(model).__name__}: {len(mismatched)} of "
            f"{len(own)} tensors differ in shape (e.g. {key}: {tuple(state[key].shape)} saved, "
            f"{tuple(own[key].shape)} in the model), so it was trained with another model "
            "config (width, levels or classes)"
        )


def load_pretrained(model: nn.Module, path: str | os.PathLike, strict: bool = False) -> nn.Module:
    """Copy the weights saved in the local file `path` into `model` and return `model`.

    Shapes must match for every key both sides have; keys only one side has are logged as
    warnings (e.g. a new head), so fine-tuning from a related model works. With `strict`
    (evaluation, export) they are an error instead.

    Raises:
        ValueError: For a URL, a Paddle checkpoint or an unreadable file;
            `WeightsMismatchError` for weights of another model config.
        FileNotFoundError: If `path` does not exist.
    """
    path = os.fspath(path)
    if path.startswith(("http://", "https://")):
        raise ValueError(
            f"pretrained weights must be a local file, got the URL '{path}'; "
            "download it and pass the local path"
        )
    if path.endswith(PADDLE_SUFFIXES):
        raise ValueError(
            f"'{path}' is a PaddlePaddle checkpoint; only medseg/PyTorch "
            "checkpoints (.pth/.pt saved with torch.save) are supported"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights file '{path}' does not exist")

    state = _read_state_dict(path)
    check_shapes(model, state, f"'{path}'")
    result = model.load_state_dict(state, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise WeightsMismatchError(
            f"'{path}' does not fit {type(model).__name__}: missing keys "
            f"{result.missing_keys[:10]}, unexpected keys {result.unexpected_keys[:10]}; was it "
            "trained with another model config?"
        )
    if result.missing_keys:
        logger.warning(
            "%s: %d model keys not in '%s' (left as initialised): %s",
            type(model).__name__,
            len(result.missing_keys),
            path,
            ", ".join(result.missing_keys),
        )
    if result.unexpected_keys:
        logger.warning(
            "%s: %d keys in '%s' not used by the model: %s",
            type(model).__name__,
            len(result.unexpected_keys),
            path,
            ", ".join(result.unexpected_keys),
        )
    logger.info(
        "loaded %d tensors from '%s' into %s",
        len(state) - len(result.unexpected_keys),
        path,
        type(model).__name__,
    )
    return model
