"""Augmentation samples per second: the phantom config's training pipeline vs MONAI's equivalent.

Usage:
    python tools/prepare_phantom.py            # once: data/phantom
    python benchmarks/bench_augmentation.py [--samples 400] [--runs 3]

Both pipelines get the same in-memory cases (the phantom's preprocessed training cases, float32
image `(1, Z, Y, X)` and integer label) and draw one 32×48×48 training patch per sample with the
same operations and probabilities:

| medseg (configs/phantom/phantom.yml)           | MONAI dictionary transforms                    |
|------------------------------------------------|------------------------------------------------|
| RandomCrop3D, fg_prob 0.5                      | RandCropByPosNegLabeld, pos 1, neg 1           |
| RandomRotation3D ±15° in the (y, x) plane, 0.2 | RandRotated range_x 15°, keep_size, prob 0.2   |
| RandomFlip3D: one of 3 axes, 0.5               | RandAxisFlipd, prob 0.5                        |
| RandomScaleIntensity ×U(0.9, 1.1), 0.2         | RandScaleIntensityd factors 0.1, prob 0.2      |
| RandomGaussianNoise std U(0, 0.03), 0.2        | RandGaussianNoised std 0.03, prob 0.2          |

MONAI is measured with its default metadata tracking (MetaTensor) and with `set_track_meta(False)`
(plain tensors, its fastest mode). A further row times medseg's whole `MedicalDataset` item
(memory-mapped read, label check, the same transforms): what a DataLoader worker does per sample.
Each measurement is a fresh process; the rows take turns for `--runs` rounds and the median is
reported, with the peak resident memory growth of the process.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from measure import in_fresh_process, peak_mib_since, reset_peak

from medseg.cvlibs import DATASETS, Config
from medseg.datasets import InfiniteSampler
from medseg.utils.machine import machine_lines

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/phantom/vnet_phantom_32_48_48_600.yml"
PATCH = (32, 48, 48)
METHODS = ("medseg", "medseg dataset item", "monai", "monai, track_meta off")


def monai_pipeline(seed: int):
    """MONAI's dictionary transforms equivalent to the phantom config's training pipeline."""
    from monai import transforms as mt

    keys = ["image", "label"]
    pipeline = mt.Compose(
        [
            mt.RandCropByPosNegLabeld(
                keys, label_key="label", spatial_size=PATCH, pos=1, neg=1, num_samples=1
            ),
            mt.RandRotated(
                keys,
                range_x=np.deg2rad(15),
                prob=0.2,
                keep_size=True,
                mode=("bilinear", "nearest"),
            ),
            mt.RandAxisFlipd(keys, prob=0.5),
            mt.RandScaleIntensityd("image", factors=0.1, prob=0.2),
            mt.RandGaussianNoised("image", prob=0.2, mean=0.0, std=0.03),
        ]
    )
    pipeline.set_random_state(seed)
    return pipeline


def _sampler(method: str, dataset, samples: int):
    """A function drawing sample `i` (case, seed) with `method`; returns the image patch."""
    stream = InfiniteSampler(len(dataset), seed=0)
    items = [item for item, _ in zip(stream, range(samples), strict=False)]
    if method == "medseg dataset item":
        return lambda i: dataset[items[i]][0]
    cases = [dataset.load_case(index)[:2] for index in range(len(dataset))]
    cases = [(np.array(image, np.float32), np.array(label)) for image, label in cases]
    if method == "medseg":
        transforms = dataset.transforms

        def draw(i: int) -> np.ndarray:
            index, seed = items[i]
            image, label = cases[index]
            return transforms(image, label, np.random.default_rng(seed))[0]

        return draw
    if method.endswith("track_meta off"):
        from monai.data import set_track_meta

        set_track_meta(False)
    pipeline = monai_pipeline(0)
    data = [
        {"image": torch.from_numpy(image), "label": torch.from_numpy(label[None])}
        for image, label in cases
    ]
    return lambda i: pipeline(data[items[i][0]])[0]["image"]


def _measure(method: str, samples: int, queue: multiprocessing.Queue) -> None:
    dataset = DATASETS.build(Config(CONFIG, opts=[f"data_root={REPO / 'data'}"]).train_dataset)
    draw = _sampler(method, dataset, samples)
    for i in range(min(10, samples)):  # warm-up: imports, first allocations
        assert tuple(draw(i).shape[1:]) == PATCH
    before = reset_peak()
    start = time.perf_counter()
    for i in range(samples):
        draw(i)
    rate = samples / (time.perf_counter() - start)
    queue.put((rate, peak_mib_since(before)))


def measure(method: str, samples: int) -> tuple[float, float]:
    """(samples/s, peak MiB) of `method` in a fresh process."""
    return in_fresh_process(_measure, method, samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="timed samples per run")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = parser.parse_args()
    if not (REPO / "data" / "phantom" / "preprocessed").is_dir():
        sys.exit("no data/phantom; run python tools/prepare_phantom.py first")
    for line in machine_lines(("numpy", "scipy", "torch", "monai")):
        print(line)
    print(
        f"torch threads {torch.get_num_threads()}; patch {PATCH}, {args.samples} samples per "
        f"run, {args.runs} interleaved rounds"
    )
    rates: dict[str, list[float]] = {method: [] for method in args.methods}
    peaks = dict.fromkeys(args.methods, 0.0)
    for _ in range(args.runs):
        for method in args.methods:
            rate, peak = measure(method, args.samples)
            rates[method].append(rate)
            peaks[method] = max(peaks[method], peak)
    print(f"{'pipeline':<24}{'samples/s':>10}{'best':>8}{'peak MiB':>9}")
    for method in args.methods:
        median, best = statistics.median(rates[method]), max(rates[method])
        print(f"{method:<24}{median:>10.0f}{best:>8.0f}{peaks[method]:>9.0f}")


if __name__ == "__main__":
    main()
