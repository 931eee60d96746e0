"""Segment scans with an exported model on onnxruntime; imports no torch.

A thin command line over `medseg.inference.Segmenter`. Per case: read the scan (NIfTI, MHA, NRRD
or a DICOM series folder) → the case pipeline val.py also uses (training preprocessing from
deploy.yaml, streaming sliding window on onnxruntime with mirror TTA, back-mapping onto the scan's
grid, largest-component filter) → `<save_dir>/<case>.nii.gz` with the scan's size, spacing,
origin and direction.

Batches of thousands of scans: outputs are written under a temporary name and renamed, so with
`--skip_existing` a rerun skips every finished case and redoes any the kill interrupted;
`--shard i/n` splits the sorted cases between jobs (e.g. a SLURM array, deploy/README.md); per
case times, status and errors go to `<save_dir>/infer_report.json` and `.csv` (one pair per shard).

A case that cannot be read or has the wrong number of channels is reported and skipped; the
exit code is then 1 (0 when every case was written, 2 for bad arguments or deploy.yaml).

Usage:
    python deploy/python/infer.py --config output/export/deploy.yaml \
        --image_path data/phantom/raw/imagesTr --save_dir output/predictions
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from medseg.cvlibs.errors import ConfigError
from medseg.inference.deploy_config import DeployConfig, load_deploy_config
from medseg.inference.dicom_seg import SEG_EXTENSION, import_highdicom, write_dicom_seg
from medseg.inference.inputs import InputCase, find_cases, save_dir_problem
from medseg.inference.onnx_predictor import OnnxPredictor
from medseg.inference.segmenter import Segmenter, deploy_yaml_path
from medseg.inference.settings import add_tta_arguments
from medseg.inference.timing import StageTimer
from medseg.preprocessing.io import Geometry, write_volume
from medseg.utils.atomic import atomic_path, remove_stale_temporaries, write_text_atomic
from medseg.utils.help_format import HelpFormatter
from medseg.utils.logging import setup_logging
from medseg.utils.machine import machine_lines
from medseg.utils.vocabulary import DEVICE_CHOICES

logger = logging.getLogger("medseg.infer")

STAGES = ("read", "preprocess", "inference", "postprocess", "write")
REPORT_FIELDS = ("case", "status", "seconds", *STAGES, "voxels", "error")


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
        "--lcc",
        action="store_true",
        help="keep the largest connected component of every foreground class",
    )
    add_tta_arguments(parser)
    parser.add_argument(
        "--output_format",
        choices=tuple(OUTPUT_FORMATS),
        default="nifti",
        help="nifti (<case>.nii.gz, the default) or dicom-seg (<case>.dcm, a DICOM Segmentation "
        "referencing the input series; DICOM inputs only; needs highdicom)",
    )
    parser.add_argument(
        "--skip_existing",
        action="store_true",
        help="skip cases whose label map is already in --save_dir (a rerun resumes a batch)",
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
    """`probabilities` float32 (K, Z, Y, X) on the scan grid, with channel names and geometry."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            probabilities=probabilities.astype(np.float32, copy=False),
            class_names=np.array(deploy.channel_names()),
            spacing=np.array(geometry.spacing),
            origin=np.array(geometry.origin),
            direction=geometry.matrix,
        )


OUTPUT_FORMATS = {"nifti": ".nii.gz", "dicom-seg": SEG_EXTENSION}


def output_path(save_dir: Path, case: InputCase, output_format: str = "nifti") -> Path:
    """The label map of `case`; it exists only once the case is finished (atomic writes)."""
    return save_dir / f"{case.case_id}{OUTPUT_FORMATS[output_format]}"


class CaseRunner:
    """Segments one case after another and writes its outputs.

    Args:
        segmenter: The model and its settings.
        save_dir: Output folder.
        save_probabilities: Also write `<case>_probabilities.npz`.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        save_dir: Path,
        save_probabilities: bool,
        output_format: str = "nifti",
    ):
        self.segmenter = segmenter
        self.save_dir = save_dir
        self.save_probabilities = save_probabilities
        self.output_format = output_format

    def __call__(self, case: InputCase, timer: StageTimer) -> int:
        """Predict `case` and write its outputs; returns the scan's voxel count."""
        paths = ", ".join(map(str, case.paths))
        if self.output_format == "dicom-seg" and not (
            len(case.paths) == 1 and case.paths[0].is_dir()
        ):
            raise ValueError(
                f"case '{case.case_id}' ({paths}): --output_format dicom-seg needs a DICOM series "
                "folder as input (a SEG references its source slices)"
            )
        try:
            result = self.segmenter.predict(
                list(case.paths), None, self.save_probabilities, case.case_id, timer
            )
        except ValueError as err:
            raise ValueError(f"case '{case.case_id}' ({paths}): {err}") from None
        geometry = result.geometry
        with timer.stage("write"):
            if self.save_probabilities:  # first: the label map's presence marks a finished case
                path = self.save_dir / f"{case.case_id}_probabilities.npz"
                _save_probabilities(result.probabilities, self.segmenter.deploy, geometry, path)
            path = output_path(self.save_dir, case, self.output_format)
            if self.output_format == "dicom-seg":
                write_dicom_seg(result.label, case.paths[0], self.segmenter.deploy.classes, path)
            else:
                write_volume(result.label, geometry, path)
        return int(np.prod(geometry.shape))


def report_stem(shard: tuple[int, int]) -> str:
    """`infer_report` (or `infer_report_<i>of<n>` for a shard: jobs share --save_dir)."""
    index, count = shard
    return "infer_report" if count == 1 else f"infer_report_{index}of{count}"


def write_report(save_dir: Path, stem: str, rows: list[dict], header: dict) -> None:
    """Per-case status, times and errors as JSON (with the run's settings) and CSV, atomically."""
    write_text_atomic(save_dir / f"{stem}.json", json.dumps({**header, "cases": rows}, indent=2))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=REPORT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(save_dir / f"{stem}.csv", text.getvalue())


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
    index, count = args.shard
    log_name = "infer.log" if count == 1 else f"infer_{index}of{count}.log"
    try:
        deploy = load_deploy_config(deploy_yaml_path(args.config))
        cases = find_cases(args.image_path, deploy.input_channels)
        problem = save_dir_problem(save_dir, args.image_path, cases)
        if problem is not None:
            raise ValueError(problem)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        setup_logging()
        logger.error("%s", err)
        return 2
    setup_logging(save_dir / log_name)
    if count == 1:  # shards sharing a save_dir may have files in flight
        remove_stale_temporaries(save_dir)
    cases = cases[index::count]
    if not cases:
        logger.error("no cases to process in %s (shard %d/%d)", args.image_path, index, count)
        return 2
    lcc_ids = tuple(range(1, deploy.num_classes)) if args.lcc else None
    try:
        segmenter = Segmenter(deploy, args.device, args.threads, args.batch_size, args.tta, lcc_ids)
    except (ImportError, ValueError) as err:
        logger.error("%s", err)
        return 2
    if args.output_format == "dicom-seg":
        try:
            import_highdicom()
        except ImportError as err:
            logger.error("%s", err)
            return 2
    runner = CaseRunner(segmenter, save_dir, args.save_probabilities, args.output_format)
    logger.info(
        "%d case(s) from %s (shard %d/%d) -> %s, with %s (%s)",
        len(cases),
        args.image_path,
        index,
        count,
        save_dir,
        deploy_yaml_path(args.config),
        segmenter.settings,
    )
    header = {
        "config": str(deploy_yaml_path(args.config)),
        "image_path": str(args.image_path),
        "shard": f"{index}/{count}",
        "inference": segmenter.settings.to_dict(),
    }
    stem = report_stem(args.shard)
    rows: list[dict] = []
    failed: list[str] = []
    times: dict[str, StageTimer] = {}
    voxels: dict[str, int] = {}
    for case in tqdm(cases, desc="cases", unit="case"):
        row = {"case": case.case_id, "status": "written"}
        if case.error is not None:
            logger.error("skipped: %s", case.error)
            failed.append(case.case_id)
            rows.append({**row, "status": "failed", "error": case.error})
        elif args.skip_existing and output_path(save_dir, case, args.output_format).is_file():
            logger.info("%s: already in %s, skipped", case.case_id, save_dir)
            rows.append({**row, "status": "skipped"})
        else:
            timer = StageTimer()
            try:
                voxels[case.case_id] = runner(case, timer)
            except Exception as err:  # one bad case must not stop the batch
                expected = isinstance(err, (ValueError, OSError))
                logger.error("skipped case '%s': %s", case.case_id, err, exc_info=not expected)
                failed.append(case.case_id)
                rows.append({**row, "status": "failed", "error": str(err)})
            else:
                times[case.case_id] = timer
                logger.info("%s: written in %.2f s", case.case_id, timer.total)
                stages = {s: round(timer.seconds.get(s, 0.0), 4) for s in STAGES}
                rows.append(
                    {
                        **row,
                        "seconds": round(timer.total, 4),
                        **stages,
                        "voxels": voxels[case.case_id],
                    }
                )
        write_report(save_dir, stem, rows, header)
    if args.benchmark:
        _print_benchmark(times, voxels, segmenter.predictor)
    skipped = sum(row["status"] == "skipped" for row in rows)
    logger.info(
        "%d of %d case(s) written to %s (%d already there); report %s.json",
        len(times),
        len(cases),
        save_dir,
        skipped,
        save_dir / stem,
    )
    if failed:
        logger.error("%d case(s) failed: %s", len(failed), ", ".join(failed))
        return 1
    return 0
