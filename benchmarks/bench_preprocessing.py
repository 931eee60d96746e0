"""Time and peak memory of preprocessing one 512×512×200 CT-like volume to 1 mm.

Usage: python benchmarks/bench_preprocessing.py [--runs 3]

The volume (int16 HU: a body in air, organs, noise) has spacing 0.7 × 0.7 × 2.5 mm (x, y, z), a
typical abdominal CT, and is resampled to 1 mm isotropic (output 500 × 358 × 358, z, y, x).
Measured, each in its own fresh process so that peak memory is that method's alone:

- `medseg resample (cpu)`: `resample_image`, linear, float32 (separable, threaded);
- `SimpleITK linear`: `sitk.Resample` with `sitkLinear` to the same grid (float32 output);
- `scipy zoom order=1`: what medseg's linear path replaced, for reference;
- `medseg preprocess_case (cpu)`: reorient, crop, resample image (linear) and label (nearest),
  CT window: the whole per-case work of a `tools/prepare_*.py` worker;
- the two medseg rows again with `backend="cupy"` when CuPy and a GPU are usable.

Time is the median of `--runs` calls; peak memory is the largest resident set size of the process
during the calls minus its size just before them (input arrays already built; Linux only: the peak
is reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import time

import numpy as np
import scipy
import scipy.ndimage
import SimpleITK as sitk  # noqa: N813 (the library's own idiom)
from measure import in_fresh_process, peak_mib_since, reset_peak

from medseg.preprocessing.backend import gpu_unavailable_reason
from medseg.preprocessing.io import Geometry
from medseg.preprocessing.pipeline import preprocess_case
from medseg.preprocessing.recipe import Recipe
from medseg.preprocessing.resample import resample_image, resampled_shape
from medseg.utils.machine import cpu_model

SHAPE = (200, 512, 512)  # z, y, x
SPACING = (2.5, 0.7, 0.7)  # z, y, x mm
TARGET = (1.0, 1.0, 1.0)


def make_volume() -> tuple[np.ndarray, np.ndarray, Geometry]:
    """CT-like int16 HU volume, a uint8 label map and their geometry."""
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    body = ((y - 256) / 200.0) ** 2 + ((x - 256) / 240.0) ** 2 <= 1.0
    organ = ((z - 100) / 60.0) ** 2 + ((y - 230) / 80.0) ** 2 + ((x - 180) / 70.0) ** 2 <= 1.0
    image = np.full(SHAPE, -1000, np.int16)
    image[:, body[0]] = 40
    np.putmask(image, organ, np.int16(120))
    for k in range(SHAPE[0]):  # slab by slab: no large temporaries to inflate the baseline
        image[k] += rng.normal(0, 20, SHAPE[1:]).astype(np.int16)
    label = organ.astype(np.uint8)
    geometry = Geometry(SHAPE, SPACING, (0.0, 0.0, 0.0), np.eye(3)[:, ::-1])
    return image, label, geometry


def _measure(method: str, runs: int, queue: multiprocessing.Queue) -> None:
    image, label, geometry = make_volume()
    out_shape = resampled_shape(SHAPE, SPACING, TARGET)
    if method.startswith("SimpleITK"):
        itk_image = sitk.GetImageFromArray(image.astype(np.float32))
        itk_image.SetSpacing(tuple(reversed(SPACING)))
        size = tuple(reversed(out_shape))
        spacing = tuple(n * s / m for n, s, m in zip(SHAPE[::-1], SPACING[::-1], size, strict=True))

        def call() -> None:
            sitk.Resample(
                itk_image, size, sitk.Transform(), sitk.sitkLinear, itk_image.GetOrigin(),
                spacing, itk_image.GetDirection(), 0.0, sitk.sitkFloat32,
            )  # fmt: skip
    elif method.startswith("scipy"):
        volume = image.astype(np.float32)
        factors = [n / o for n, o in zip(out_shape, SHAPE, strict=True)]

        def call() -> None:
            scipy.ndimage.zoom(volume, factors, np.float32, 1, mode="nearest", grid_mode=True)
    elif "resample" in method:
        volume = image.astype(np.float32)[None]
        backend = "cupy" if "gpu" in method else "numpy"

        def call() -> None:
            resample_image(volume, out_shape, 1, backend)
    else:
        recipe = Recipe(
            target_spacing=TARGET,
            image_order=1,
            crop={"threshold": -500.0, "margin": 0},
            normalization={"type": "ct", "window": [-200.0, 300.0]},
        )
        volume = image.astype(np.float32)[None]
        backend = "cupy" if "gpu" in method else "numpy"

        def call() -> None:
            preprocess_case(volume, geometry, recipe, label, backend=backend)

    before = reset_peak()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    queue.put((statistics.median(times), min(times), peak_mib_since(before)))


def measure(method: str, runs: int) -> tuple[float, float, float]:
    """(median s, best s, peak extra MiB) of `method`, run in a fresh process."""
    return in_fresh_process(_measure, method, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed calls per method (median)")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores")
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"SimpleITK {sitk.Version.VersionString()}"
    )
    out_shape = resampled_shape(SHAPE, SPACING, TARGET)
    print(f"input {SHAPE} (z, y, x) at {SPACING} mm -> {out_shape} at {TARGET} mm")
    methods = [
        "medseg resample (cpu)",
        "SimpleITK linear",
        "scipy zoom order=1",
        "medseg preprocess_case (cpu)",
    ]
    reason = gpu_unavailable_reason()
    if reason is None:
        methods += ["medseg resample (gpu)", "medseg preprocess_case (gpu)"]
    else:
        print(f"GPU rows skipped: {reason}")
    print(f"{'method':30s} {'median s':>9s} {'best s':>8s} {'peak MiB':>9s}")
    for method in methods:
        median, best, peak = measure(method, args.runs)
        print(f"{method:30s} {median:9.2f} {best:8.2f} {peak:9.0f}")


if __name__ == "__main__":
    main()
