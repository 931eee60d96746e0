"""Time val.py end to end in both evaluation spaces (original and preprocessed).

Usage:
    python benchmarks/bench_val.py --config CONFIG --model_path RUN/best_model [--runs 3]
        [--opts key=value ...]

Each run is a fresh `python val.py` process (imports, model load, inference, metrics, files), the
two spaces called in turn so load changes on a shared machine hit both. Prints the best, median
and worst wall time (on a shared machine the best is the steadiest figure), the mean Dice of each
space and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medseg.utils.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
SPACES = ("original", "preprocessed")


def run_val(args: argparse.Namespace, space: str, save_dir: Path) -> tuple[float, dict]:
    """Wall time and metrics.json of one val.py process."""
    command = [sys.executable, str(REPO / "val.py"), "--config", args.config, "--model_path"]
    command += [args.model_path, "--save_dir", str(save_dir), "--space", space]
    command += ["--device", args.device, *(["--opts", *args.opts] if args.opts else [])]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    return elapsed, json.loads((save_dir / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--opts", nargs="+", default=[])
    args = parser.parse_args()
    times: dict[str, list[float]] = {space: [] for space in SPACES}
    dice: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for space in SPACES:
                elapsed, metrics = run_val(args, space, Path(tmp) / f"{space}_{run}")
                times[space].append(elapsed)
                dice[space] = metrics["mean_dice"]
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.platform()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}")
    print(f"config {args.config}, model {args.model_path}, {args.runs} runs per space")
    for space in SPACES:
        print(
            f"{space:>12}: best {min(times[space]):.1f} s, median "
            f"{statistics.median(times[space]):.1f} s, worst {max(times[space]):.1f} s; "
            f"mean foreground Dice {dice[space]:.4f}"
        )


if __name__ == "__main__":
    main()
