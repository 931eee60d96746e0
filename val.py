"""Evaluate a trained model on the validation set: sliding window over whole volumes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from medseg.cvlibs import Config, ConfigError
from medseg.utils.atomic import write_text_atomic
from medseg.utils.logging import setup_logging

logger = logging.getLogger("medseg.val")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; the names follow MedicalSeg's val.py."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--model_path", required=True, help="model.pth or an iter_N/ folder")
    parser.add_argument("--save_dir", default="output/val", help="where results are written")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["dice"],
        help="dice iou precision recall hausdorff hd95 assd",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--opts", nargs="+", default=[], help="config overrides key.sub=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Evaluate; returns the exit code."""
    args = parse_args(argv)
    save_dir = Path(args.save_dir)
    setup_logging(save_dir / "val.log")
    from medseg.engine.checkpoint import load_model_weights
    from medseg.engine.evaluator import evaluate
    from medseg.engine.report import format_table, write_results
    from medseg.engine.runtime import select_device, use_amp
    from medseg.inference.settings import inference_settings

    metrics = list(dict.fromkeys(["dice", *args.metrics]))
    try:
        cfg = Config(args.config, opts=args.opts)
        dataset = cfg.val_dataset
        if dataset is None:
            raise ConfigError("missing required key", cfg.path, "val_dataset")
        settings = inference_settings(cfg.dic, cfg.path)
        device = select_device(args.device)
        model = cfg.model
        load_model_weights(model, args.model_path)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    model.to(device)
    logger.info("evaluating %s on %d cases with %s", args.model_path, len(dataset), settings)
    result = evaluate(
        model, dataset, settings, device, amp=use_amp(args.amp, device), metrics=metrics
    )
    extra = {
        "model_path": str(args.model_path),
        "config": cfg.path,
        "grid": "preprocessed",
        "inference": settings.to_dict(),
    }
    write_results(save_dir, result["rows"], result["summary"], extra)
    write_text_atomic(
        save_dir / "metrics.json",
        json.dumps(
            {"mean_dice": result["mean_dice"], "class_dice": result["class_dice"]}, indent=2
        ),
    )
    print(format_table(result["summary"], metrics))
    logger.info("results in %s", save_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
