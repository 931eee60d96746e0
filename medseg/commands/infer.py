"""Segment scans with an exported model on onnxruntime; imports no torch.

Per case: read the scan (NIfTI, MHA, NRRD or a DICOM series folder) → the training preprocessing
(recipe from deploy.yaml, same code as training) → sliding window on onnxruntime → class
probabilities mapped back onto the scan's grid → argmax → optional largest-component filter →
`<save_dir>/<case>.nii.gz` with the scan's size, spacing, origin and direction.

A case that cannot be read or has the wrong number of channels is reported and skipped; the
exit code is then 1 (0 when every case was written, 2 for bad arguments or deploy.yaml).

Usage:
    python deploy/python/infer.py --config output/export/deploy.yaml \
        --image_path data/phantom/raw/imagesTr --save_dir output/predictions
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

# Run from a checkout: the repository's medseg package (an installed medseg works as well).
from medseg.cvlibs.errors import ConfigError
from medseg.inference.case import predict_logits
from medseg.inference.deploy_config import DeployConfig, load_deploy_config
from medseg.inference.inputs import InputCase, find_cases, save_dir_problem
from medseg.inference.onnx_predictor import OnnxPredictor
from medseg.inference.postprocess import keep_largest_component
from medseg.inference.settings import InferenceSettings
from medseg.inference.sliding_window import softmax
from medseg.inference.timing import StageTimer
from medseg.preprocessing.io import Geometry, read_case, write_volume
from medseg.preprocessing.pipeline import (
    invert_probabilities,
    preprocess_case,
    probabilities_to_original_labels,
)
from medseg.utils.atomic import atomic_path, remove_stale_temporaries
from medseg.utils.help_format import HelpFormatter
from medseg.utils.logging import setup_logging
from medseg.utils.machine import machine_lines
from medseg.utils.vocabulary import DEVICE_CHOICES

logger = logging.getLogger("medseg.infer")

STAGES = ("read", "preprocess", "inference", "postprocess", "write")


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/n"` → (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"expected 0 <= i < n in i/n, got {text!r}")
    return index, count


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; the first four follow MedicalSeg's deploy/python/infer.py."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--config", required=True, help="deploy.yaml written by export.py")
    parser.add_argument(
        "--image_path", required=True, help="a scan, a folder of scans or a .txt list of scans"
    )
    parser.add_argument("--save_dir", default="output/predictions", help="where label maps go")
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="auto and gpu use onnxruntime's CUDA provider when usable, else the CPU (gpu also "
        "shows why CUDA could not load)",
    )
    parser.add_argument(
        "--batch_size",
        type=_positive,
        default=None,
        help="windows per onnxruntime call (default: deploy.yaml's)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="onnxruntime CPU threads (default: one per physical core)",
    )
    parser.add_argument(
        "--save_probabilities",
        action="store_true",
        help="also write <case>_probabilities.npz on the scan's grid",
    )
    parser.add_argument(
        "--no_tta",
        action="store_true",
        help="no mirroring at test time (deploy.yaml's inference.tta_axes; export.py writes "
        "every axis unless the training config set them)",
    )
    parser.add_argument(
        "--lcc",
        action="store_true",
        help="keep the largest connected component of every foreground class",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        default=(0, 1),
        metavar="i/n",
        help="process every n-th case of the sorted list, starting at i",
    )
    parser.add_argument(
        "--benchmark",
        action="store_true",
        help="print per-case stage times, voxels per second and the machine",
    )
    return parser.parse_args(argv)


def _save_probabilities(
    probabilities: np.ndarray, deploy: DeployConfig, geometry: Geometry, path: Path
) -> None:
    """`probabilities` float32 (K, Z, Y, X) on the scan grid, with class names and geometry."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            probabilities=probabilities.astype(np.float32, copy=False),
            class_names=np.array([deploy.classes[i] for i in range(deploy.num_classes)]),
            spacing=np.array(geometry.spacing),
            origin=np.array(geometry.origin),
            direction=geometry.matrix,
        )


class CaseRunner:
    """Segments one case after another with one model and one set of options.

    Args:
        deploy: The validated deploy.yaml.
        predictor: The onnxruntime session.
        settings: Sliding-window settings (deploy.yaml's, --batch_size applied).
        lcc_ids: Classes reduced to their largest connected component.
        save_dir: Output folder.
        save_probabilities: Also write `<case>_probabilities.npz`.
    """

    def __init__(
        self,
        deploy: DeployConfig,
        predictor: OnnxPredictor,
        settings: InferenceSettings,
        lcc_ids: tuple[int, ...],
        save_dir: Path,
        save_probabilities: bool,
    ):
        self.deploy = deploy
        self.predictor = predictor
        self.settings = settings
        self.lcc_ids = lcc_ids
        self.save_dir = save_dir
        self.save_probabilities = save_probabilities

    def __call__(self, case: InputCase, timer: StageTimer) -> int:
        """Predict `case` and write its outputs; returns the scan's voxel count."""
        deploy = self.deploy
        with timer.stage("read"):
            image, geometry = read_case(case.paths)
        if image.shape[0] != deploy.input_channels:
            raise ValueError(
                f"case '{case.case_id}': the model takes {deploy.input_channels} channel(s) "
                f"({', '.join(deploy.modalities)}), {', '.join(map(str, case.paths))} gave "
                f"{image.shape[0]}"
            )
        with timer.stage("preprocess"):
            image, _, record = preprocess_case(image, geometry, deploy.recipe, case=case.case_id)
        with timer.stage("inference"):
            output = predict_logits(image, self.predictor, self.settings, deploy.num_classes)
        with timer.stage("postprocess"):
            probabilities = softmax(output, axis=0) if deploy.output == "logits" else output
            label = probabilities_to_original_labels(probabilities, record)
            if self.lcc_ids:
                label = keep_largest_component(label, self.lcc_ids)
            if self.save_probabilities:
                probabilities = invert_probabilities(probabilities, record)
        with timer.stage("write"):
            write_volume(label, geometry, self.save_dir / f"{case.case_id}.nii.gz")
            if self.save_probabilities:
                path = self.save_dir / f"{case.case_id}_probabilities.npz"
                _save_probabilities(probabilities, deploy, geometry, path)
        return int(np.prod(geometry.shape))


def _print_benchmark(
    times: dict[str, StageTimer], voxels: dict[str, int], predictor: OnnxPredictor
) -> None:
    """Per-case stage times, voxels per second, their means, and the machine."""
    import onnxruntime

    header = f"{'case':<24}" + "".join(f"{s:>12}" for s in STAGES) + f"{'total':>10}{'Mvox/s':>9}"
    lines = [header]
    for case_id, timer in times.items():
        cells = "".join(f"{timer.seconds.get(s, 0.0):>11.3f}s" for s in STAGES)
        rate = voxels[case_id] / timer.total / 1e6
        lines.append(f"{case_id:<24}{cells}{timer.total:>9.3f}s{rate:>9.2f}")
    if times:
        means = [np.mean([t.seconds.get(s, 0.0) for t in times.values()]) for s in STAGES]
        total = float(np.mean([t.total for t in times.values()]))
        rate = float(np.mean([voxels[c] / t.total for c, t in times.items()])) / 1e6
        cells = "".join(f"{m:>11.3f}s" for m in means)
        lines.append(f"{f'mean of {len(times)}':<24}{cells}{total:>9.3f}s{rate:>9.2f}")
    lines += machine_lines(("numpy", "scipy", "SimpleITK"))
    lines.append(
        f"onnxruntime {onnxruntime.__version__} on {predictor.device.upper()} "
        f"(providers: {', '.join(predictor.providers)})"
    )
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit code."""
    args = parse_args(argv)
    save_dir = Path(args.save_dir)
    try:
        deploy = load_deploy_config(args.config)
        cases = find_cases(args.image_path, deploy.input_channels)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        setup_logging()
        logger.error("%s", err)
        return 2
    problem = save_dir_problem(save_dir, args.image_path, cases)
    if problem is not None:
        setup_logging()
        logger.error("%s", problem)
        return 2
    setup_logging(save_dir / "infer.log")
    remove_stale_temporaries(save_dir)
    index, count = args.shard
    cases = cases[index::count]
    if not cases:
        logger.error("no cases to process in %s (shard %d/%d)", args.image_path, index, count)
        return 2
    settings = deploy.inference
    if args.batch_size is not None:
        settings = dataclasses.replace(settings, batch_size=args.batch_size)
    if args.no_tta:
        settings = dataclasses.replace(settings, tta_axes=())
    try:
        predictor = OnnxPredictor(deploy.model_path, args.device, args.threads)
    except (ImportError, ValueError) as err:
        logger.error("%s", err)
        return 2
    lcc_ids = tuple(range(1, deploy.num_classes)) if args.lcc else deploy.largest_component
    runner = CaseRunner(deploy, predictor, settings, lcc_ids, save_dir, args.save_probabilities)
    logger.info(
        "%d case(s) from %s (shard %d/%d) -> %s, with %s",
        len(cases),
        args.image_path,
        index,
        count,
        save_dir,
        args.config,
    )

    failed: list[str] = []
    times: dict[str, StageTimer] = {}
    voxels: dict[str, int] = {}
    for case in tqdm(cases, desc="cases", unit="case"):
        if case.error is not None:
            logger.error("skipped: %s", case.error)
            failed.append(case.case_id)
            continue
        timer = StageTimer()
        try:
            voxels[case.case_id] = runner(case, timer)
        except Exception as err:  # one bad case must not stop the batch
            expected = isinstance(err, (ValueError, OSError))
            logger.error("skipped case '%s': %s", case.case_id, err, exc_info=not expected)
            failed.append(case.case_id)
            continue
        times[case.case_id] = timer
        logger.info("%s: written in %.2f s", case.case_id, timer.total)
    if args.benchmark:
        _print_benchmark(times, voxels, predictor)
    logger.info("%d of %d case(s) written to %s", len(times), len(cases), save_dir)
    if failed:
        logger.error("%d case(s) failed: %s", len(failed), ", ".join(failed))
        return 1
    return 0
