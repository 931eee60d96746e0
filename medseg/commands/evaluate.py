"""Score a folder of predicted label maps against a folder of reference label maps.

Files are paired by case id (file name without .nii/.nii.gz/.mha/.mhd/.nrrd/.nhdr), every pair's
geometry is checked, metrics use the reference's spacing. Writes metrics_per_case.csv,
summary.json (with an `errors` list) and evaluate.log to --save_dir, in the layout of val.py. A
missing pair, an unreadable file or a geometry mismatch is reported and the run goes on; the exit
code is then 1. With --only_predicted, references without a prediction are skipped (and listed).

Usage:
    python tools/evaluate.py --pred_dir output/val/predictions --gt_dir raw/labelsTr
        --save_dir output/eval --metrics dice hd95 nsd --nsd_tolerance 2
        --label_names raw/dataset.json
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from medseg.metrics.cli import add_metric_arguments, check_metric_arguments
from medseg.metrics.folder import evaluate_folders
from medseg.metrics.report import format_table, write_results
from medseg.preprocessing.description import read_class_names
from medseg.preprocessing.io import GEOMETRY_TOLERANCE
from medseg.utils.logging import setup_logging
from medseg.utils.parallel import WorkerDiedError

logger = logging.getLogger("medseg.evaluate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pred_dir", required=True, help="folder of predicted label maps")
    parser.add_argument("--gt_dir", required=True, help="folder of reference label maps")
    parser.add_argument("--save_dir", required=True, help="where results are written")
    parser.add_argument(
        "--labels",
        nargs="+",
        type=int,
        help="foreground ids to score (default: every id > 0 found in the references)",
    )
    parser.add_argument(
        "--label_names",
        help='JSON with class names: a dataset.json `labels` ({"1": "liver"} or nnU-Net\'s '
        '{"liver": 1}); default class_<id>',
    )
    add_metric_arguments(parser, "default: dice hd95")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=GEOMETRY_TOLERANCE,
        help="largest spacing/origin (mm) and direction difference accepted between a "
        f"prediction's and its reference's header (default {GEOMETRY_TOLERANCE})",
    )
    parser.add_argument(
        "--only_predicted",
        action="store_true",
        help="score only references that have a prediction (e.g. the validation split against "
        "all of labelsTr); without it a missing prediction is an error",
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes scoring cases in parallel (default: min(4, CPUs))",
    )
    args = parser.parse_args(argv)
    check_metric_arguments(parser, args)
    if args.labels is not None and any(i <= 0 for i in args.labels):
        parser.error(f"--labels takes foreground ids > 0, got {args.labels}")
    if args.tolerance < 0:
        parser.error(f"--tolerance must be >= 0, got {args.tolerance}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Evaluate; returns the exit code (1 when some case could not be scored, 2 on bad input)."""
    args = parse_args(argv)
    save_dir = Path(args.save_dir)
    setup_logging(save_dir / "evaluate.log")
    metrics = list(dict.fromkeys(args.metrics))
    try:
        names = read_class_names(args.label_names) if args.label_names else {}
        result, unpredicted = evaluate_folders(
            args.pred_dir,
            args.gt_dir,
            class_ids=args.labels,
            metrics=metrics,
            nsd_tolerance=args.nsd_tolerance,
            tolerance=args.tolerance,
            num_workers=args.num_workers,
            require_predictions=not args.only_predicted,
            class_names=names,
        )
    except (ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2
    except WorkerDiedError as err:
        logger.error("%s", err)
        return 1
    extra = {
        "pred_dir": str(args.pred_dir),
        "gt_dir": str(args.gt_dir),
        "nsd_tolerance": args.nsd_tolerance,
        "geometry_tolerance": args.tolerance,
        "num_cases": len(result.cases),
        "unpredicted": unpredicted,
    }
    write_results(save_dir, result, extra)
    print(format_table(result))
    if result.errors:
        logger.error(
            "%d case(s) could not be scored (listed in %s): %s",
            len(result.errors),
            save_dir / "summary.json",
            ", ".join(error.case for error in result.errors),
        )
        return 1
    logger.info("%d cases scored; results in %s", len(result.cases), save_dir)
    return 0
