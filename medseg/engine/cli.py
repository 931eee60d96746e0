"""Command-line options shared by the scripts that run a model (train.py, val.py).

Kept free of torch so `--help` answers at once.
"""

from __future__ import annotations

import argparse

AMP_DTYPE_NAMES = ("fp16", "bf16")


def add_amp_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--amp` and `--amp_dtype` (resolved against the device by `runtime.amp_dtype`)."""
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument(
        "--amp_dtype",
        choices=AMP_DTYPE_NAMES,
        default="fp16",
        help="--amp precision: fp16 (training scales the loss), or bf16 (Ampere and newer)",
    )
