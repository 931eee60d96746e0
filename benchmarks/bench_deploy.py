"""Sliding-window inference time per case: torch (TorchPredictor) vs onnxruntime, both on the CPU.

The same exported model, the same raw phantom scans, the same preprocessing and the same window,
overlap and Gaussian blending; only the predictor differs. Each case is preprocessed once, then
each backend predicts it in turn (`--runs` times, interleaved) and the median is reported, with
the share of voxels whose argmax agrees.

Usage (after training the phantom demo model):
    python benchmarks/bench_deploy.py --config configs/phantom/vnet_phantom_32_48_48_600.yml \
        --model_path output/phantom_vnet/best_model/model.pth --image_dir data/phantom/raw/imagesTr
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medseg.commands import export
from medseg.cvlibs import MODELS, Config
from medseg.engine.checkpoint import load_model_weights
from medseg.inference.case import predict_logits
from medseg.inference.deploy_config import load_deploy_config
from medseg.inference.onnx_predictor import OnnxPredictor
from medseg.inference.torch_predictor import TorchPredictor
from medseg.preprocessing.io import read_case
from medseg.preprocessing.pipeline import preprocess_case
from medseg.utils.machine import machine_lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/phantom/vnet_phantom_32_48_48_600.yml")
    parser.add_argument("--model_path", required=True, help="model.pth or an iter_N/ folder")
    parser.add_argument("--image_dir", default="data/phantom/raw/imagesTr")
    parser.add_argument("--num_cases", type=int, default=4, help="first N scans (sorted)")
    parser.add_argument(
        "--runs", type=int, default=3, help="timed predictions per backend (median)"
    )
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--batch_size", type=int, default=None, help="windows per call (both)")
    return parser.parse_args()


def timed(predict, image: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = predict(image)
    return time.perf_counter() - start, out


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        export_args = ["--config", args.config, "--model_path", args.model_path]
        if export.main([*export_args, "--save_dir", folder]) != 0:
            sys.exit("export failed")
        deploy = load_deploy_config(Path(folder) / "deploy.yaml")
        onnx_predictor = OnnxPredictor(deploy.model_path, "cpu", args.threads)
        model = MODELS.build(Config(args.config).model)
        load_model_weights(model, args.model_path)
        torch_predictor = TorchPredictor(model, "cpu")
        settings = deploy.inference
        if args.batch_size:
            settings = dataclasses.replace(settings, batch_size=args.batch_size)
        predictors = {"torch": torch_predictor, "onnxruntime": onnx_predictor}

        for line in machine_lines(("numpy", "torch", "onnxruntime", "onnxruntime-gpu")):
            print(line)
        print(
            f"torch threads {torch.get_num_threads()}, onnxruntime threads "
            f"{args.threads or 'default'}; window {settings.patch_size}, overlap "
            f"{settings.overlap}, gaussian {settings.gaussian}, batch {settings.batch_size}"
        )
        print(f"{'case':<14}{'shape':>16}{'torch (s)':>11}{'onnx (s)':>10}{'ratio':>7}{'agree':>9}")
        ratios = []
        paths = sorted(Path(args.image_dir).glob("*_0000.nii.gz"))[: args.num_cases]
        for path in paths:
            image, geometry = read_case([path])
            image, _, _ = preprocess_case(image, geometry, deploy.recipe)
            times = {name: [] for name in predictors}
            outputs = {}
            for _ in range(args.runs):
                for name, predictor in predictors.items():
                    seconds, outputs[name] = timed(
                        lambda x, p=predictor: predict_logits(x, p, settings, deploy.num_classes),
                        image,
                    )
                    times[name].append(seconds)
            medians = {name: statistics.median(t) for name, t in times.items()}
            ratio = medians["onnxruntime"] / medians["torch"]
            ratios.append(ratio)
            agree = np.mean(outputs["torch"].argmax(0) == outputs["onnxruntime"].argmax(0))
            print(
                f"{path.name[:13]:<14}{image.shape[1:]!s:>16}{medians['torch']:>11.3f}"
                f"{medians['onnxruntime']:>10.3f}{ratio:>7.2f}{agree:>9.5f}"
            )
        print(f"onnxruntime / torch time, mean over {len(ratios)} cases: {np.mean(ratios):.2f}")


if __name__ == "__main__":
    main()
