"""Time HD95 of two 256×256×160 masks: medseg against MONAI and medpy (when installed).

Usage: python benchmarks/bench_metrics.py [--runs 5]

The masks are two overlapping ellipsoids whose radii are perturbed by smooth random noise (a
segmentation disagreement of a few voxels), spacing 0.8 × 0.8 × 2.5 mm (x, y, z). medseg and
MONAI's `compute_hausdorff_distance(..., percentile=95)` share one definition (the larger of the
two directed 95th percentiles) and must agree to 1e-6; medpy's `hd95` takes the 95th percentile
of both directions pooled, so its value differs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy
from scipy import ndimage

from medseg.metrics import hd95
from medseg.utils.machine import cpu_model

SHAPE = (160, 256, 256)  # (z, y, x)
SPACING = (2.5, 0.8, 0.8)  # (z, y, x) mm


def make_masks(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two ellipsoids (z, y, x semi-axes in voxels) with smoothly perturbed surfaces."""
    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, n) for n in SHAPE)]

    def ellipsoid(center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
        level = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True))
        noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), sigma=4)
        return level <= 1.0 + noise / noise.std() * 0.04

    return ellipsoid((80, 128, 128), (60, 100, 90)), ellipsoid((83, 124, 131), (57, 104, 87))


def timed(candidates: dict[str, Callable[[], float]], runs: int) -> dict[str, tuple[float, float]]:
    """Value and median wall time of each candidate, calling them in turn `runs` times.

    Interleaving the calls spreads load changes on a shared machine over all candidates.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    values: dict[str, float] = {}
    for _ in range(runs):
        for name, fn in candidates.items():
            start = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (values[name], statistics.median(times[name])) for name in candidates}


def monai_hd95(pred: np.ndarray, ref: np.ndarray) -> Callable[[], float] | None:
    """MONAI's HD95 on the same masks, or None when MONAI is not installed."""
    try:
        import torch
        from monai.metrics import compute_hausdorff_distance
    except ImportError:
        return None
    y_pred = torch.from_numpy(pred)[None, None]
    y = torch.from_numpy(ref)[None, None]
    return lambda: float(
        compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=SPACING
        ).item()
    )


def medpy_hd95(pred: np.ndarray, ref: np.ndarray) -> Callable[[], float] | None:
    """HD95 by medpy (both directions pooled) on the same masks, or None when not installed."""
    try:
        from medpy.metric.binary import hd95 as medpy_fn
    except ImportError:
        return None
    return lambda: float(medpy_fn(pred, ref, voxelspacing=SPACING))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed calls per library (median)")
    args = parser.parse_args()

    pred, ref = make_masks()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores")
    print(f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"masks {SHAPE} (z, y, x), spacing {SPACING} mm, {pred.sum()} and {ref.sum()} voxels")

    candidates = {"medseg": lambda: hd95(pred, ref, SPACING)}
    for name, factory in (("monai", monai_hd95), ("medpy", medpy_hd95)):
        fn = factory(pred, ref)
        if fn is not None:
            candidates[name] = fn
    results = timed(candidates, args.runs)
    ours, t_ours = results["medseg"]
    print(f"{'library':8s} {'HD95 mm':>12s} {'median s':>10s} {'medseg speedup':>15s}")
    for name in ("medseg", "monai", "medpy"):
        if name not in results:
            print(f"{name:8s} {'not installed':>12s}")
            continue
        value, seconds = results[name]
        print(f"{name:8s} {value:12.6f} {seconds:10.3f} {seconds / t_ours:14.1f}x")
    if "monai" in results:
        print(f"|medseg - monai| = {abs(ours - results['monai'][0]):.2e} (same definition)")
    print("medpy pools both directions before the percentile, so its value differs by definition.")


if __name__ == "__main__":
    main()
