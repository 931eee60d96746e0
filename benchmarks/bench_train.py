"""Training iterations per second of the phantom VNet and UNet3D, with and without data loading.

Usage:
    python tools/prepare_phantom.py            # once: data/phantom
    python benchmarks/bench_train.py [--models vnet unet3d] [--steps 20] [--workers 0 1 2]
        [--repeats 2] [--device cpu|cuda] [--amp fp16|bf16]

Each measurement runs in its own fresh process through medseg's own `Trainer` (the config's
model, loss, optimizer, patch 32×48×48 and batch size 2):

- "in-memory": one batch is loaded once and the training step is repeated on it (the speed of the
  model alone: forward, loss, backward, optimizer);
- "loader, N workers": every step takes the next batch from the real DataLoader over the phantom
  (memory-mapped cases, the config's augmentation, N worker processes) and copies it to the
  device, as `train.py` does.

The first `--warmup` steps are not timed. Measurements are interleaved over `--repeats` rounds
(load changes on a shared machine then hit every row) and the median step time is reported with
the overhead of data loading against the in-memory step, and the peak resident memory growth of
the training process (worker processes not included).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import in_fresh_process, peak_mib_since, reset_peak

from medseg.cvlibs import Config
from medseg.engine.runtime import AMP_DTYPES
from medseg.engine.trainer import Trainer, TrainOptions
from medseg.utils.machine import machine_lines

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "vnet": REPO / "configs/phantom/vnet_phantom_32_48_48_600.yml",
    "unet3d": REPO / "configs/phantom/unet3d_phantom_32_48_48_600.yml",
}


def _measure(
    model: str, workers: int | None, args: argparse.Namespace, queue: multiprocessing.Queue
) -> None:
    """Median step time and peak memory growth of one (model, data mode), in this process."""
    device = torch.device(args.device)
    cfg = Config(CONFIGS[model], opts=[f"data_root={args.data_root}"])
    with tempfile.TemporaryDirectory() as folder:
        options = TrainOptions(
            Path(folder),
            device,
            num_workers=workers or 0,
            amp_dtype=AMP_DTYPES[args.amp] if args.amp else None,
        )
        trainer = Trainer(cfg, options)
        trainer.net.train()
        loader = iter(trainer._loader())
        fixed = next(loader)

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            images, labels, _ = fixed if workers is None else next(loader)
            return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

        for _ in range(args.warmup):
            trainer._step(*batch())
        before = reset_peak()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            trainer._step(*batch())  # returns loss.item(): the device is synchronised
            times.append(time.perf_counter() - start)
    queue.put((statistics.median(times), peak_mib_since(before)))


def measure(model: str, workers: int | None, args: argparse.Namespace) -> tuple[float, float]:
    """(median step s, peak MiB) in a fresh process; `workers` None = the in-memory batch."""
    return in_fresh_process(_measure, model, workers, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["vnet", "unet3d"])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), help="autocast dtype (CUDA)")
    parser.add_argument("--data_root", default=str(REPO / "data"), help="holds phantom/")
    args = parser.parse_args()
    if not (Path(args.data_root) / "phantom" / "preprocessed").is_dir():
        sys.exit(f"no phantom in {args.data_root}; run python tools/prepare_phantom.py first")
    for line in machine_lines(("numpy", "torch")):
        print(line)
    print(
        f"device {args.device}, amp {args.amp or 'off'}, torch threads {torch.get_num_threads()}, "
        f"patch 32x48x48, batch 2, {args.steps} timed steps after {args.warmup}, "
        f"{args.repeats} interleaved rounds"
    )
    modes: list[int | None] = [None, *args.workers]
    times: dict[tuple[str, int | None], list[float]] = {}
    peaks: dict[tuple[str, int | None], float] = {}
    for _ in range(args.repeats):
        for model in args.models:
            for workers in modes:
                seconds, peak = measure(model, workers, args)
                times.setdefault((model, workers), []).append(seconds)
                peaks[model, workers] = max(peaks.get((model, workers), 0.0), peak)
    print(f"{'model':<8}{'data':<20}{'s/step':>8}{'it/s':>7}{'vs in-memory':>14}{'peak MiB':>10}")
    for model in args.models:
        base = statistics.median(times[model, None])
        for workers in modes:
            step = statistics.median(times[model, workers])
            mode = "in-memory" if workers is None else f"loader, {workers} workers"
            print(
                f"{model:<8}{mode:<20}{step:>8.3f}{1 / step:>7.2f}{step / base - 1:>+13.1%}"
                f"{peaks[model, workers]:>10.0f}"
            )


if __name__ == "__main__":
    main()
