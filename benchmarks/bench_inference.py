"""Sliding-window inference time and memory: medseg (torch and onnxruntime) vs MONAI, same weights.

Usage:
    python benchmarks/bench_inference.py [--model_path RUN/best_model] [--shape 96 160 160]
        [--patch 48 64 80] [--overlap 0.5] [--batch 1] [--runs 3]

One volume `(1, Z, Y, X)` (the phantom's intensity range, smooth random texture) is predicted by
the phantom VNet config's model (trained weights with `--model_path`, else a seeded random
initialisation: the time does not depend on the values) with the same window, overlap, Gaussian
blending (sigma = patch / 8) and windows per call through:

- medseg: `sliding_window_inference` + `TorchPredictor` (what val.py and training use);
- MONAI: `monai.inferers.sliding_window_inference(mode="gaussian")` on a torch tensor;
- MONAI with the model in channels-last-3d memory, the layout medseg's `TorchPredictor` runs on
  the CPU (so the comparison separates the layout from the windowing);
- medseg + onnxruntime: `sliding_window_inference` + `OnnxPredictor` on the model exported with
  export.py's exporter (what deploy/python/infer.py uses).

Every measurement is a fresh process running one method: one untimed call (allocations,
onnxruntime warm-up), then one timed call and the peak resident memory growth during it. The
methods take turns for `--runs` rounds, so load changes on a shared machine hit them alike; the
median and best are reported. The outputs are compared with the first method's (max |difference|
of the blended logits, share of voxels with the same argmax).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from measure import in_fresh_process, peak_mib_since, reset_peak

from medseg.cvlibs import MODELS, Config
from medseg.engine.checkpoint import load_model_weights
from medseg.inference.sliding_window import sliding_window_inference
from medseg.inference.torch_predictor import TorchPredictor
from medseg.utils.machine import machine_lines

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/phantom/vnet_phantom_32_48_48_600.yml"
METHODS = ("medseg", "monai", "monai-channels-last", "medseg-onnxruntime")


def make_volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A float32 `(1, Z, Y, X)` volume with smooth structure in roughly [-1, 2]."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=3)
    return (noise / noise.std())[None].astype(np.float32)


def load_model(model_path: str | None) -> torch.nn.Module:
    torch.manual_seed(0)
    model = MODELS.build(Config(CONFIG).model)
    if model_path:
        load_model_weights(model, model_path)
    return model.eval()


def _predict_fn(method: str, args: argparse.Namespace, folder: str):
    """A function volume → blended logits `(K, Z, Y, X)` numpy, for `method`."""
    model = load_model(args.model_path)
    patch = tuple(args.patch)
    if method.startswith("monai"):
        from monai.inferers import sliding_window_inference as monai_window

        if method == "monai-channels-last":
            model = model.to(memory_format=torch.channels_last_3d)

        def predict(volume: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = monai_window(
                    torch.from_numpy(volume)[None],
                    roi_size=patch,
                    sw_batch_size=args.batch,
                    predictor=model,
                    overlap=args.overlap,
                    mode="gaussian",
                    sigma_scale=0.125,
                )
            return out[0].numpy()

        return predict
    if method == "medseg":
        predictor = TorchPredictor(model, "cpu")
    else:
        from medseg.commands import export
        from medseg.inference.onnx_predictor import OnnxPredictor

        path = Path(folder) / "model.onnx"
        sample = np.zeros((1, 1, *patch), dtype=np.float32)
        export.export_onnx(export._graph(model, False), path, sample, 17, "logits")
        predictor = OnnxPredictor(path, "cpu")

    def predict(volume: np.ndarray) -> np.ndarray:
        return sliding_window_inference(
            volume, predictor, patch, args.overlap, args.batch, gaussian=True
        )

    return predict


def _measure(method: str, args: argparse.Namespace, queue: multiprocessing.Queue) -> None:
    volume = make_volume(tuple(args.shape))
    with tempfile.TemporaryDirectory() as folder:
        predict = _predict_fn(method, args, folder)
        predict(volume)  # untimed: first-call allocations, onnxruntime warm-up
        before = reset_peak()
        start = time.perf_counter()
        out = predict(volume)
        seconds = time.perf_counter() - start
    queue.put((seconds, peak_mib_since(before), out))


def measure(method: str, args: argparse.Namespace) -> tuple[float, float, np.ndarray]:
    """(seconds, peak MiB, output) of one timed call of `method` in a fresh process."""
    return in_fresh_process(_measure, method, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", help="model.pth or iter_N/ (default: random weights)")
    parser.add_argument("--shape", nargs=3, type=int, default=[96, 160, 160], help="z y x")
    parser.add_argument("--patch", nargs=3, type=int, default=[48, 64, 80], help="z y x")
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=1, help="windows per model call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = parser.parse_args()
    for line in machine_lines(("numpy", "torch", "monai", "onnxruntime", "onnxruntime-gpu")):
        print(line)
    print(
        f"torch threads {torch.get_num_threads()}; volume {tuple(args.shape)}, window "
        f"{tuple(args.patch)}, overlap {args.overlap}, gaussian, {args.batch} window(s) per "
        f"call, {args.runs} timed runs, weights {args.model_path or 'random (seed 0)'}"
    )
    times: dict[str, list[float]] = {method: [] for method in args.methods}
    peaks: dict[str, float] = dict.fromkeys(args.methods, 0.0)
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.runs):
        for method in args.methods:
            seconds, peak, outputs[method] = measure(method, args)
            times[method].append(seconds)
            peaks[method] = max(peaks[method], peak)
    reference = outputs[args.methods[0]]
    header = f"{'method':<20}{'median s':>9}{'best s':>8}{'peak MiB':>9}"
    print(f"{header}{'max |diff|':>11}{'agree':>8}")
    for method, out in outputs.items():
        diff = float(np.max(np.abs(out - reference)))
        agree = float(np.mean(out.argmax(0) == reference.argmax(0)))
        print(
            f"{method:<20}{statistics.median(times[method]):>9.2f}{min(times[method]):>8.2f}"
            f"{peaks[method]:>9.0f}{diff:>11.2e}{agree:>8.4f}"
        )


if __name__ == "__main__":
    main()
