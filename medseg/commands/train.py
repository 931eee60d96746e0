"""Train a segmentation model from a YAML config (MedicalSeg-compatible flags).

One process: python train.py --config ... ; several GPUs or machines: torchrun
--nproc_per_node N train.py --config ... (DistributedDataParallel; see docs/scaling.md).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from medseg.cvlibs import Config, ConfigError
from medseg.engine.cli import add_amp_arguments, add_device_argument, add_eval_space_argument
from medseg.engine.folds import fold_dir, fold_opts
from medseg.utils.help_format import HelpFormatter
from medseg.utils.logging import setup_logging

logger = logging.getLogger("medseg.train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; the names follow MedicalSeg's train.py."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--save_dir", default="output", help="where checkpoints and logs go")
    parser.add_argument("--iters", type=int, help="override the config's iters")
    parser.add_argument(
        "--batch_size",
        type=int,
        help="override the config's batch_size: samples per process and iteration (under "
        "torchrun each iteration trains on nproc × batch_size samples)",
    )
    parser.add_argument("--learning_rate", type=float, help="override lr_scheduler.learning_rate")
    parser.add_argument("--save_interval", type=int, default=1000, help="iters between checkpoints")
    parser.add_argument(
        "--eval_interval", type=int, help="iters between evaluations (default: --save_interval)"
    )
    parser.add_argument("--log_iters", type=int, default=10, help="iters between log lines")
    parser.add_argument(
        "--num_workers",
        type=int,
        help="data-loading processes per training process (default: 0 on a CPU with fewer "
        "than 8 cores, 2 on larger CPUs, min(4, cores/2) with CUDA)",
    )
    parser.add_argument(
        "--prefetch_factor", type=int, help="batches each worker loads ahead (torch default 2)"
    )
    parser.add_argument("--do_eval", action="store_true", help="evaluate and keep best_model/")
    add_eval_space_argument(parser)
    parser.add_argument("--use_vdl", action="store_true", help="write VisualDL curves")
    parser.add_argument("--use_tensorboard", action="store_true", help="write TensorBoard curves")
    parser.add_argument("--keep_checkpoint_max", type=int, default=5, help="iter_N/ folders kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling, augmentation, init")
    parser.add_argument("--resume_model", help="iter_N/ folder to continue from")
    parser.add_argument(
        "--fold",
        type=int,
        help="train cross-validation fold k of a dataset prepared with --folds K (its train and "
        "val lists) into <save_dir>/fold_<k>/",
    )
    add_device_argument(parser)
    add_amp_arguments(parser)
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (CUDA only; slow start)"
    )
    parser.add_argument(
        "--channels_last",
        action="store_true",
        help="channels-last-3d memory format (CUDA only; helps cuDNN, most with --amp)",
    )
    parser.add_argument(
        "--sync_bn",
        action="store_true",
        help="synchronise BatchNorm statistics across torchrun processes (CUDA only)",
    )
    parser.add_argument("--opts", nargs="+", default=[], help="config overrides key.sub=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train; returns the exit code."""
    args = parse_args(argv)
    save_dir = Path(args.save_dir) if args.fold is None else fold_dir(args.save_dir, args.fold)
    # Under torchrun only rank 0 logs and writes train.log; the others report errors only.
    if int(os.environ.get("RANK", "0")) == 0:
        setup_logging(save_dir / "train.log")
    else:
        setup_logging(level=logging.ERROR)  # the others' warnings would repeat rank 0's
    # torch is imported after logging is set up so its import time is not silent.
    from medseg.engine.distributed import barrier, cleanup, init_distributed

    try:
        context = init_distributed(args.device)
    except RuntimeError as err:
        logger.error("%s", err)
        return 2
    try:
        code = _train(args, save_dir, context)
        # Leaving together: gloo aborts a process whose peer tears the group down mid-write.
        barrier(context)
        return code
    finally:
        cleanup(context)


def _config(args: argparse.Namespace) -> Config:
    """The resolved config; with `--fold k` its datasets read the fold's train and val lists."""
    flags = {
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "iters": args.iters,
    }
    cfg = Config(args.config, opts=args.opts, **flags)
    if args.fold is None:
        return cfg
    opts = fold_opts(cfg, args.fold)
    logger.info("fold %d: %s", args.fold, ", ".join(opts))
    return Config(args.config, opts=[*args.opts, *opts], **flags)


def _train(args: argparse.Namespace, save_dir: Path, context: Any) -> int:
    """Build the trainer in this process's (maybe distributed) context and run it."""
    from medseg.engine.distributed import any_rank
    from medseg.engine.runtime import (
        amp_dtype,
        default_num_workers,
        seed_everything,
        select_device,
        use_channels_last,
    )
    from medseg.engine.trainer import Trainer, TrainOptions

    try:
        cfg = _config(args)
        # The same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        seed_everything(args.seed)
        device = select_device(args.device, context.local_rank if context.distributed else None)
        num_workers = args.num_workers
        if num_workers is None:
            num_workers = default_num_workers(device)
        options = TrainOptions(
            save_dir=save_dir,
            device=device,
            save_interval=args.save_interval,
            eval_interval=args.eval_interval,
            log_iters=args.log_iters,
            num_workers=num_workers,
            prefetch_factor=args.prefetch_factor,
            do_eval=args.do_eval,
            keep_checkpoint_max=args.keep_checkpoint_max,
            seed=args.seed,
            resume_model=args.resume_model,
            amp_dtype=amp_dtype(args.amp, args.amp_dtype, device),
            compile=args.compile,
            channels_last=use_channels_last(args.channels_last, device),
            sync_bn=args.sync_bn,
            use_vdl=args.use_vdl,
            use_tensorboard=args.use_tensorboard,
            eval_space=args.eval_space,
            fold=args.fold,
            dist=context,
        )
        trainer = Trainer(cfg, options)
        failed = False
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as err:
        logger.error("%s", err)
        failed = True
    # Every rank stops if one could not start, instead of the others waiting for it in DDP.
    if any_rank(failed, context):
        if not failed:
            logger.error("another process could not start (its error is above); stopping")
        return 2
    if context.is_main:
        cfg.dump(save_dir / "config.yaml")
        logger.info("config %s resolved into %s", args.config, save_dir / "config.yaml")
    try:
        result = trainer.train()
    except OSError as err:  # a full or read-only save_dir: one line, not a traceback
        logger.error("%s", err)
        return 1
    if args.do_eval:
        logger.info(
            "best validation mean foreground Dice %.4f at iter %d (%s)",
            result["best"]["mean_dice"],
            result["best"]["iter"],
            save_dir / "best_model" / "model.pth",
        )
    return 0
