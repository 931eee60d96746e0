"""Training iterations per second of the phantom VNet and UNet3D, with and without data loading.

Usage:
    python tools/prepare_phantom.py            # once: data/phantom
    python benchmarks/bench_train.py [--models vnet unet3d] [--steps 20] [--workers 0 1 2]
        [--repeats 2] [--device cpu|cuda] [--amp fp16|bf16] [--channels_last] [--compile]

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
the training process (worker processes not included); on CUDA also the peak GPU memory torch
allocated. `--amp`, `--channels_last` and `--compile` are resolved as train.py resolves them (on
the CPU they are dropped with a log line); with `--compile` raise `--warmup` past the compilation.
The default worker counts are 0, 1, 2 and train.py's default for the device.
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
from measure import in_fresh_process, peak_mib_since, reset_peak

from medseg.cvlibs import Config
from medseg.engine.runtime import AMP_DTYPES, amp_dtype, default_num_workers, use_channels_last
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
        channels_last = use_channels_last(args.channels_last, device)
        options = TrainOptions(
            Path(folder),
            device,
            num_workers=workers or 0,
            amp_dtype=amp_dtype(args.amp is not None, args.amp or "fp16", device),
            compile=args.compile,
            channels_last=channels_last,
        )
        trainer = Trainer(cfg, options)
        trainer.net.train()
        loader = iter(trainer._loader())
        fixed = next(loader)
        layout = torch.channels_last_3d if channels_last else torch.contiguous_format

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            images, labels, _ = fixed if workers is None else next(loader)
            images = images.to(device, non_blocking=True, memory_format=layout)
            return images, labels.to(device, non_blocking=True)

        for _ in range(args.warmup):
            trainer._step(*batch())
        before = reset_peak()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            trainer._step(*batch())  # returns loss.item(): the device is synchronised
            times.append(time.perf_counter() - start)
        gpu_mib = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0
    queue.put((statistics.median(times), peak_mib_since(before), gpu_mib))


def measure(
    model: str, workers: int | None, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(median step s, peak MiB, peak GPU MiB) in a fresh process; `workers` None = in-memory."""
    return in_fresh_process(_measure, model, workers, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["vnet", "unet3d"])
    parser.add_argument("--workers", nargs="+", type=int, help="default: 0 1 2 and train.py's")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), help="autocast dtype (CUDA)")
    parser.add_argument("--channels_last", action="store_true", help="channels-last-3d (CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile (CUDA)")
    parser.add_argument("--data_root", default=str(REPO / "data"), help="holds phantom/")
    args = parser.parse_args()
    if not (Path(args.data_root) / "phantom" / "preprocessed").is_dir():
        sys.exit(f"no phantom in {args.data_root}; run python tools/prepare_phantom.py first")
    device = torch.device(args.device)
    workers = args.workers or sorted({0, 1, 2, default_num_workers(device)})
    for line in machine_lines(("numpy", "torch")):
        print(line)
    if device.type == "cuda":
        print(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    print(
        f"device {args.device}, amp {args.amp or 'off'}, channels_last {args.channels_last}, "
        f"compile {args.compile}, torch threads {torch.get_num_threads()}, patch 32x48x48, "
        f"batch 2, {args.steps} timed steps after {args.warmup}, {args.repeats} interleaved rounds"
    )
    modes: list[int | None] = [None, *workers]
    times: dict[tuple[str, int | None], list[float]] = {}
    peaks: dict[tuple[str, int | None], tuple[float, float]] = {}
    for _ in range(args.repeats):
        for model in args.models:
            for mode in modes:
                seconds, peak, gpu_peak = measure(model, mode, args)
                times.setdefault((model, mode), []).append(seconds)
                old = peaks.get((model, mode), (0.0, 0.0))
                peaks[model, mode] = (max(old[0], peak), max(old[1], gpu_peak))
    print(
        f"{'model':<8}{'data':<20}{'s/step':>8}{'it/s':>7}{'vs in-memory':>14}{'peak MiB':>10}"
        f"{'GPU MiB':>9}"
    )
    for model in args.models:
        base = statistics.median(times[model, None])
        for mode in modes:
            step = statistics.median(times[model, mode])
            label = "in-memory" if mode is None else f"loader, {mode} workers"
            peak, gpu_peak = peaks[model, mode]
            print(
                f"{model:<8}{label:<20}{step:>8.3f}{1 / step:>7.2f}{step / base - 1:>+13.1%}"
                f"{peak:>10.0f}{gpu_peak:>9.0f}"
            )


if __name__ == "__main__":
    main()
