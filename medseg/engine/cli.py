"""Command-line options shared by the scripts that run a model (train.py, val.py, export.py).

Kept free of torch so `--help` answers at once.
"""

from __future__ import annotations

import argparse

from medseg.utils.vocabulary import DEVICE_CHOICES, EVAL_SPACES

AMP_DTYPE_NAMES = ("fp16", "bf16")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--config` (optional: the model folder's own) and `--model_path` (val.py, export.py).

    `--model_path` takes one model or several (an ensemble); a cross-validation save_dir
    stands for all its `fold_<k>/best_model/` folders.
    """
    parser.add_argument(
        "--config",
        help="YAML config file (default: the config.yaml the model was trained with, beside "
        "--model_path or in its run folder)",
    )
    parser.add_argument(
        "--model_path",
        required=True,
        nargs="+",
        help="model.pth or an iter_N/ folder; several (or a medseg-crossval save_dir, meaning "
        "its fold_<k>/best_model/ folders) are an ensemble whose probabilities are averaged",
    )


def add_device_argument(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """Add `--device` (auto, cpu or gpu; "cuda" is accepted for gpu)."""
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default=default, help="auto, cpu or gpu (cuda)"
    )


def add_eval_space_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--eval_space` (val.py also takes `--space`): the grid scores are computed on."""
    parser.add_argument(
        "--eval_space",
        "--space",
        dest="eval_space",
        choices=EVAL_SPACES,
        default="auto",
        help="grid of the scores: the scans' own (original), the preprocessed one, or auto "
        "(original when dataset.json records every case's source label)",
    )


def add_amp_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--amp` and `--amp_dtype` (resolved against the device by `runtime.amp_dtype`)."""
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument(
        "--amp_dtype",
        choices=AMP_DTYPE_NAMES,
        default="fp16",
        help="--amp precision: fp16 (training scales the loss), or bf16 (Ampere and newer)",
    )
