"""Evaluate a trained model on the validation set: sliding window over whole volumes.

By default (`--space auto`) the predictions are mapped back onto each scan's own grid and scored
against the raw reference label maps in the raw spacing. Predictions go through the deploy
runner's case pipeline, post-processing included, so a score is the score of the file the runner
writes. They are mirrored along every axis and averaged (nnU-Net's test-time augmentation) unless
the config sets `inference.tta_axes` or `--no_tta` is given, as in the runner; with `--no_tta`
val.py predicts exactly as evaluation during training does, so its mean Dice for best_model/
equals the best in train.log.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from medseg.cvlibs import DATASETS, ConfigError
from medseg.engine.cli import (
    add_amp_arguments,
    add_device_argument,
    add_eval_space_argument,
    add_model_arguments,
)
from medseg.inference.settings import add_tta_arguments
from medseg.metrics.cli import add_metric_arguments, check_metric_arguments
from medseg.utils.atomic import write_text_atomic
from medseg.utils.help_format import HelpFormatter
from medseg.utils.logging import setup_logging

logger = logging.getLogger("medseg.val")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; the names follow MedicalSeg's val.py."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--save_dir", default="output/val", help="where results are written")
    add_metric_arguments(parser, "Dice is always included")
    add_eval_space_argument(parser)
    parser.add_argument(
        "--save_predictions",
        action="store_true",
        help="write label maps to <save_dir>/predictions/<case>.nii.gz in the scored grid",
    )
    add_tta_arguments(parser)
    add_device_argument(parser)
    add_amp_arguments(parser)
    parser.add_argument("--opts", nargs="+", default=[], help="config overrides key.sub=value")
    args = parser.parse_args(argv)
    check_metric_arguments(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    """Evaluate; returns the exit code (1 when some case could not be scored, 2 on bad input)."""
    args = parse_args(argv)
    save_dir = Path(args.save_dir)
    setup_logging(save_dir / "val.log")
    from medseg.engine.ensemble import load_models
    from medseg.engine.evaluator import evaluate, resolve_space
    from medseg.engine.folds import expand_model_paths
    from medseg.engine.runtime import amp_dtype, select_device
    from medseg.inference.settings import MIRROR_AXES, with_tta
    from medseg.metrics.report import format_table, write_results
    from medseg.preprocessing.io import Geometry, write_volume

    metrics = list(dict.fromkeys(["dice", *args.metrics]))
    model_paths = expand_model_paths(args.model_path)
    try:
        loaded = load_models(args.config, model_paths, args.opts)
        cfg = loaded[0].cfg
        dataset = DATASETS.build(cfg.node("val_dataset"))
        settings = with_tta(cfg.inference_settings(MIRROR_AXES), args.tta)
        largest_component = cfg.postprocess.largest_component
        space = resolve_space(dataset, args.eval_space)
        device = select_device(args.device)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    models = [m.model.to(device) for m in loaded]
    cfg.dump(save_dir / "config.yaml")
    logger.info(
        "evaluating %s on %d cases in %s space with %s",
        model_paths[0] if len(models) == 1 else f"an ensemble of {', '.join(model_paths)}",
        len(dataset),
        space,
        settings,
    )

    prediction_dir = save_dir / "predictions"

    def save_prediction(case_id: str, prediction: np.ndarray, geometry: Geometry) -> None:
        write_volume(prediction, geometry, prediction_dir / f"{case_id}.nii.gz")

    if args.save_predictions:
        grid = (
            "each scan's own geometry"
            if space == "original"
            else "the preprocessed (reoriented, cropped, resampled) geometry, not the scans' own"
        )
        logger.info("writing predictions to %s in %s", prediction_dir, grid)
    result = evaluate(
        models,
        dataset,
        settings,
        device,
        amp_dtype=amp_dtype(args.amp, args.amp_dtype, device),
        metrics=metrics,
        space=space,
        nsd_tolerance=args.nsd_tolerance,
        on_prediction=save_prediction if args.save_predictions else None,
        largest_component=largest_component,
    )
    extra = {
        "model_path": model_paths[0] if len(models) == 1 else model_paths,
        "config": cfg.path,
        "nsd_tolerance": args.nsd_tolerance,
        "inference": settings.to_dict(),
    }
    if args.save_predictions:
        extra["predictions"] = {"folder": str(prediction_dir), "grid": result.space}
    write_results(save_dir, result, extra)
    write_text_atomic(
        save_dir / "metrics.json",
        json.dumps(
            {
                "mean_dice": result.mean_dice,
                "class_dice": result.class_dice,
                "space": result.space,
            },
            indent=2,
        ),
    )
    print(format_table(result))
    if result.errors:
        logger.error(
            "%d of %d cases could not be scored (listed in summary.json): %s",
            len(result.errors),
            len(dataset),
            ", ".join(error.case for error in result.errors),
        )
        return 1
    logger.info("results in %s", save_dir)
    return 0
