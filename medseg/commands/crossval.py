"""k-fold cross-validation: train every fold, score its validation cases, choose post-processing.

    medseg-crossval --config C --save_dir D [--folds all|0,2] [--train] [--evaluate]

The dataset must be prepared with `--folds K`. `--train` runs `train.py --fold k --do_eval` for
each fold, one after another, into `D/fold_<k>/`: a finished fold (its `iter_<iters>/` exists)
is skipped and an interrupted one resumes from its latest `iter_N/`. `--evaluate` predicts each
fold's validation cases with that fold's `best_model/` through the runner's case pipeline
(without post-processing), writes the predictions to `D/crossval/predictions/<case>.nii.gz` (in
each scan's own geometry when the dataset records it), scores them and writes
`D/crossval/summary.json` and `metrics_per_case.csv` (per class: per fold, the mean over folds
and the mean over all cases; per fold the foreground mean), then chooses the largest-component
filter per class on those predictions (`D/crossval/postprocessing.json`, read by export.py).
Neither flag: both. `val.py` and `export.py` take `D` as `--model_path`: the fold ensemble.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medseg.cvlibs import DATASETS, Config, ConfigError
from medseg.engine.cli import add_device_argument
from medseg.engine.folds import (
    BEST_MODEL,
    fold_count,
    fold_dir,
    fold_opts,
    training_description,
)
from medseg.inference.settings import add_tta_arguments
from medseg.metrics.cli import add_metric_arguments, check_metric_arguments
from medseg.utils.help_format import HelpFormatter
from medseg.utils.logging import setup_logging

logger = logging.getLogger("medseg.crossval")

CROSSVAL_DIR = "crossval"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--save_dir", required=True, help="fold_<k>/ runs and crossval/ go here")
    parser.add_argument(
        "--folds", default="all", help="'all' (every fold dataset.json records) or e.g. 0,2"
    )
    parser.add_argument("--train", action="store_true", help="train the folds")
    parser.add_argument("--evaluate", action="store_true", help="score the folds' predictions")
    parser.add_argument("--iters", type=int, help="override the config's iters")
    parser.add_argument("--save_interval", type=int, default=1000, help="iters between checkpoints")
    parser.add_argument("--num_workers", type=int, help="data-loading processes (train.py's)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every fold")
    add_metric_arguments(parser, "Dice is always included")
    add_tta_arguments(parser)
    add_device_argument(parser)
    parser.add_argument("--opts", nargs="+", default=[], help="config overrides key.sub=value")
    args = parser.parse_args(argv)
    check_metric_arguments(parser, args)
    if not args.train and not args.evaluate:
        args.train = args.evaluate = True
    return args


def _folds(spec: str, count: int, where: str) -> list[int]:
    """The fold numbers `--folds` names, checked against the `count` dataset.json records."""
    if count == 0:
        raise ValueError(
            f"{where} records no 'folds': prepare the dataset with --folds K for cross-validation"
        )
    if spec == "all":
        return list(range(count))
    try:
        folds = sorted({int(item) for item in spec.split(",")})
    except ValueError:
        raise ValueError(f"--folds expects 'all' or numbers like 0,2, got {spec!r}") from None
    bad = [k for k in folds if not 0 <= k < count]
    if bad:
        raise ValueError(f"--folds {spec}: {where} records folds 0..{count - 1}, not {bad}")
    return folds


def _latest_checkpoint(run: Path) -> tuple[int, Path] | None:
    """The newest `iter_N/` of a fold's run with its N, or None."""
    found = [
        (int(f.name.removeprefix("iter_")), f)
        for f in run.glob("iter_*")
        if f.name.removeprefix("iter_").isdigit() and (f / "train_state.pth").is_file()
    ]
    return max(found) if found else None


def _train_fold(args: argparse.Namespace, fold: int, iters: int, log: Path) -> int:
    """Train one fold unless it is finished; resumes an interrupted one. Returns the exit code."""
    from medseg.commands import train

    latest = _latest_checkpoint(fold_dir(args.save_dir, fold))
    if latest is not None and latest[0] >= iters:
        logger.info("fold %d: finished (%s), skipped", fold, latest[1])
        return 0
    argv = ["--config", args.config, "--save_dir", args.save_dir, "--fold", str(fold)]
    argv += ["--do_eval", "--seed", str(args.seed), "--device", args.device]
    argv += ["--save_interval", str(args.save_interval)]
    if args.iters is not None:
        argv += ["--iters", str(args.iters)]
    if args.num_workers is not None:
        argv += ["--num_workers", str(args.num_workers)]
    if latest is not None:
        logger.info("fold %d: resuming from %s", fold, latest[1])
        argv += ["--resume_model", str(latest[1])]
    if args.opts:
        argv += ["--opts", *args.opts]
    logger.info("fold %d: training into %s", fold, fold_dir(args.save_dir, fold))
    code = train.main(argv)
    setup_logging(log)  # train.py logged to the fold's train.log
    return code


@dataclasses.dataclass
class FoldRun:
    """One evaluated fold: its result and what its references are read from."""

    fold: int
    model_path: Path
    dataset: Any
    result: Any


def _evaluate_fold(args: argparse.Namespace, fold: int, metrics: list[str], out: Path) -> FoldRun:
    """Predict and score fold `fold`'s validation cases with its best model."""
    from medseg.engine.checkpoint import model_config
    from medseg.engine.ensemble import load_models
    from medseg.engine.evaluator import evaluate, resolve_space
    from medseg.engine.runtime import select_device
    from medseg.inference.settings import MIRROR_AXES, with_tta
    from medseg.preprocessing.io import write_volume

    model_path = fold_dir(args.save_dir, fold) / BEST_MODEL
    if not (model_path / "model.pth").is_file():
        raise FileNotFoundError(
            f"{model_path}/model.pth not found: train fold {fold} first (medseg-crossval --train)"
        )
    config = model_config(None, model_path)
    base = Config(config, opts=args.opts)
    loaded = load_models(config, [model_path], [*args.opts, *fold_opts(base, fold)])[0]
    dataset = DATASETS.build(loaded.cfg.node("val_dataset"))
    settings = with_tta(loaded.cfg.inference_settings(MIRROR_AXES), args.tta)
    device = select_device(args.device)
    space = resolve_space(dataset, "auto")
    logger.info("fold %d: %d validation case(s), %s space, %s", fold, len(dataset), space, settings)

    def save(case_id: str, prediction: np.ndarray, geometry: Any) -> None:
        write_volume(prediction, geometry, out / "predictions" / f"{case_id}.nii.gz")

    result = evaluate(
        loaded.model.to(device),
        dataset,
        settings,
        device,
        metrics=metrics,
        space=space,
        nsd_tolerance=args.nsd_tolerance,
        on_prediction=save,
    )
    return FoldRun(fold, model_path, dataset, result)


def _pairs(runs: list[FoldRun], out: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(prediction, reference) of every scored case, read one at a time from disk."""
    from medseg.engine.evaluator import reference_label
    from medseg.metrics.folder import read_label_map

    for run in runs:
        scored = {case.case for case in run.result.cases}
        for index in range(len(run.dataset)):
            _, label, case_id = run.dataset[index]
            if case_id not in scored:
                continue
            prediction, geometry = read_label_map(out / "predictions" / f"{case_id}.nii.gz")
            space = run.result.space
            yield prediction, reference_label(run.dataset, case_id, space, label, geometry)


def _fold_means(runs: list[FoldRun], metrics: list[str]) -> dict[str, dict[str, float]]:
    """Per class and metric, the mean of the per-fold means (folds without the class left out)."""
    means: dict[str, dict[str, float]] = {}
    for name in runs[0].result.per_class:
        means[name] = {}
        for metric in metrics:
            values = [r.result.per_class[name].mean(metric) for r in runs]
            kept = [v for v in values if not math.isnan(v)]
            means[name][metric] = float(np.mean(kept)) if kept else math.nan
    return means


def _evaluate(args: argparse.Namespace, folds: list[int], out: Path) -> int:
    """Score every fold, write the summary, choose and write the post-processing."""
    from medseg.inference.postprocess_choice import POSTPROCESSING_FILE, choose_postprocessing
    from medseg.metrics.report import format_crossval_table, write_results
    from medseg.metrics.results import EvaluationResult

    metrics = list(dict.fromkeys(["dice", *args.metrics]))
    runs = [_evaluate_fold(args, fold, metrics, out) for fold in folds]
    cases, errors, offset = [], [], 0
    for run in runs:  # one case index per case over all folds, for the report order
        cases += [dataclasses.replace(c, index=offset + c.index) for c in run.result.cases]
        errors += [dataclasses.replace(e, index=offset + e.index) for e in run.result.errors]
        offset += len(run.dataset)
    first = runs[0].result
    pooled = EvaluationResult.collect(cases, errors, first.class_names, metrics, first.space)
    # On label ids, also for a region-trained model (its label maps hold ids, not regions).
    dataset = runs[0].dataset
    labels = {i: dataset.class_names[i] for i in range(1, dataset.num_classes)}
    choice = choose_postprocessing(_pairs(runs, out), labels)
    choice.write(out / POSTPROCESSING_FILE)
    extra = {
        "config": args.config,
        "inference_tta": args.tta,
        "predictions": str(out / "predictions"),
        "folds": {
            str(run.fold): {"model_path": str(run.model_path), **run.result.summary} for run in runs
        },
        "mean_over_folds": _fold_means(runs, metrics),
        "postprocessing": choice.to_dict(),
    }
    write_results(out, pooled, extra)
    table = format_crossval_table({run.fold: run.result for run in runs}, pooled)
    lines = [table, "", "post-processing (largest component), mean Dice without -> with:"]
    lines += [
        f"  {c.name}: {c.dice_without:.4f} -> {c.dice_with:.4f}, "
        f"{'chosen' if c.chosen else 'not chosen'}"
        for c in choice.classes
    ]
    logger.info("cross-validation summary:\n%s", "\n".join(lines))
    logger.info("results in %s (summary.json, %s)", out, POSTPROCESSING_FILE)
    if errors:
        logger.error("%d case(s) could not be scored (listed in summary.json)", len(errors))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Train and/or evaluate the folds; returns the exit code."""
    args = parse_args(argv)
    out = Path(args.save_dir) / CROSSVAL_DIR
    log = out / "crossval.log"
    setup_logging(log)
    try:
        cfg = Config(args.config, opts=args.opts, iters=args.iters)
        folds = _folds(args.folds, fold_count(cfg), str(training_description(cfg).path))
    except (ConfigError, ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 2
    if args.train:
        for fold in folds:
            code = _train_fold(args, fold, cfg.iters, log)
            if code != 0:
                logger.error("fold %d: training failed (exit code %d); stopping", fold, code)
                return code
    if not args.evaluate:
        return 0
    try:
        return _evaluate(args, folds, out)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
