"""The iteration-based training loop: logging, evaluation, best model, exact resume, DDP.

Under torchrun every process runs this loop on its share of one global sample stream and
DistributedDataParallel averages the gradients; validation cases are split between the ranks and
their scores gathered, so the logged mean equals a single-process evaluation. Only rank 0 writes
files; checkpoints hold the plain model's weights (no `module.` prefix) and the global sample
position, so a run resumes on any number of processes.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from medseg.cvlibs import DATASETS, MODELS, Config, ConfigError
from medseg.datasets import InfiniteSampler
from medseg.engine.checkpoint import (
    check_resume_shapes,
    earlier_checkpoints,
    load_train_state,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    write_folder_atomic,
)
from medseg.engine.distributed import (
    DistContext,
    all_gather,
    any_rank,
    barrier,
    broadcast,
    rank_seed,
    shard,
    sync_buffers,
)
from medseg.engine.evaluator import resolve_space, score_cases, summarize_cases
from medseg.engine.runtime import maybe_compile
from medseg.engine.scalar_writer import ScalarWriter
from medseg.engine.stop_signals import stop_signals
from medseg.inference.model_info import MODEL_INFO_FILE, ModelInfo
from medseg.metrics.results import EvaluationResult
from medseg.models.losses import build_losses
from medseg.models.losses.computation import loss_computation
from medseg.optim import build_lr_scheduler, build_optimizer
from medseg.utils.atomic import remove_stale_temporaries

logger = logging.getLogger(__name__)

DATA_WARN_EVERY = 10  # log windows between two repeats of the slow-data-loading warning


@dataclass
class TrainOptions:
    """Command-line choices of one training run (everything else comes from the config)."""

    save_dir: Path
    device: torch.device
    save_interval: int = 1000
    eval_interval: int | None = None
    log_iters: int = 10
    num_workers: int = 0
    prefetch_factor: int | None = None
    do_eval: bool = False
    keep_checkpoint_max: int = 5
    seed: int = 0
    resume_model: str | None = None
    amp_dtype: torch.dtype | None = None
    compile: bool = False
    channels_last: bool = False
    sync_bn: bool = False
    use_vdl: bool = False
    use_tensorboard: bool = False
    eval_space: str = "auto"
    fold: int | None = None
    data_warn_fraction: float = 0.2
    dist: DistContext = field(default_factory=DistContext)

    def __post_init__(self) -> None:
        # Each is a divisor of the iteration number (0 would fail after the first step).
        for flag in ("save_interval", "eval_interval", "log_iters"):
            value = getattr(self, flag)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{flag} must be a positive number of iterations, got {value}")


class Trainer:
    """Trains the config's model on its training dataset for `cfg.iters` iterations.

    Every `save_interval` iterations an `iter_N/` checkpoint is written (model, optimizer,
    scheduler, grad scaler, RNG states, best score); every `eval_interval` iterations, with
    `do_eval`, the validation mean foreground Dice decides `best_model/`. Resuming from `iter_N/`
    replays the same samples and random numbers, so the weights end as in an uninterrupted run.

    `cfg.batch_size` is per process: a torchrun job with N processes trains on N × batch_size
    samples per iteration.
    """

    def __init__(self, cfg: Config, options: TrainOptions):
        self.cfg = cfg
        self.opt = options
        self.dist = options.dist
        self.device = options.device
        self.iters = cfg.iters
        self.batch_size = cfg.batch_size
        self.global_batch = self.batch_size * self.dist.world_size
        # The plain model: what is saved, evaluated and resumed into. `self.net` is what
        # the training step calls: the same parameters, maybe behind DDP and torch.compile.
        self.model = MODELS.build(cfg.model).to(self.device)
        if options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        self.train_dataset = DATASETS.build(cfg.train_dataset)
        self.regions = getattr(self.train_dataset, "regions", None)
        self.losses = build_losses(
            cfg.loss, getattr(self.train_dataset, "ignore_index", None), self.regions
        )
        for loss in self.losses["types"]:
            loss.to(self.device)
        self.optimizer = build_optimizer(cfg.optimizer, self.model, cfg.learning_rate)
        self.scheduler = build_lr_scheduler(cfg.lr_scheduler, self.optimizer, self.iters)
        self.grad_clip_norm = cfg.grad_clip_norm
        self.amp_dtype = options.amp_dtype
        # fp16 gradients underflow without loss scaling; bf16 has float32's exponent range.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        if self.scaler.is_enabled():
            logger.info("fp16 training: the loss is scaled by a GradScaler")
        val_node = cfg.val_dataset if options.do_eval else None
        if options.do_eval and val_node is None:
            raise ValueError(f"--do_eval needs a val_dataset in {cfg.path}")
        self.val_dataset = DATASETS.build(val_node) if val_node else None
        self.inference = cfg.inference if self.val_dataset else None
        self.folder_texts = self._folder_texts(cfg)
        self.largest_component = cfg.postprocess.largest_component if self.val_dataset else ()
        self.eval_space = (
            resolve_space(self.val_dataset, options.eval_space) if self.val_dataset else None
        )
        self.eval_interval = options.eval_interval or options.save_interval
        self.start_iter = 0
        self.start_sample = 0  # global sample position of `start_iter`
        self.rank_rng_restored = False  # this rank's own RNG state came from the checkpoint
        self.best = {"mean_dice": -1.0, "iter": 0}
        self.saved: collections.deque[Path] = collections.deque()
        self._check_classes()
        if options.resume_model:
            self._resume()
            if self.start_iter >= self.iters:
                raise ValueError(
                    f"--resume_model {options.resume_model} is at iter {self.start_iter}, the run "
                    f"ends at iter {self.iters}: nothing left to train (pass --iters above "
                    f"{self.start_iter} to train on)"
                )
            self.saved.extend(earlier_checkpoints(options.save_dir, self.start_iter))
        self._net: torch.nn.Module | None = None

    @property
    def net(self) -> torch.nn.Module:
        """What the training step calls, wrapped (SyncBN, DDP, compile) on first use.

        Under torchrun DDP's set-up is a collective: it waits until every rank has built its
        trainer, which train.py checks first.
        """
        if self._net is None:
            self._net = self._wrap()
        return self._net

    def _wrap(self) -> torch.nn.Module:
        """The module the training step calls: SyncBN, DDP and torch.compile as requested."""
        net: torch.nn.Module = self.model
        if self.opt.sync_bn:
            if not self.dist.distributed:
                logger.info("--sync_bn only matters with several processes; ignored")
            elif self.device.type != "cuda":
                logger.warning("--sync_bn needs CUDA (PyTorch's SyncBatchNorm); ignored on CPU")
            else:
                # The converted layers reuse the BatchNorm parameters the optimizer holds.
                net = self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
                logger.info(
                    "BatchNorm layers synchronised across %d processes", self.dist.world_size
                )
        if self.dist.distributed:
            # DDP broadcasts rank 0's weights here, so every rank starts from the same model.
            net = DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if not self.rank_rng_restored:
                # Dropout and other torch randomness should differ between ranks.
                torch.manual_seed(rank_seed(self.opt.seed + self.start_iter, self.dist.rank))
            logger.info(
                "DistributedDataParallel over %d processes (%s); batch_size %d per process, "
                "%d per iteration",
                self.dist.world_size,
                self.dist.backend,
                self.batch_size,
                self.global_batch,
            )
        return maybe_compile(net, self.opt.compile, self.device)

    def _check_classes(self) -> None:
        model_classes = getattr(self.model, "num_classes", None)
        data_classes = self.train_dataset.num_classes
        if self.regions is not None:
            if model_classes is not None and model_classes != len(self.regions):
                raise ValueError(
                    f"model.num_classes is {model_classes} but train_dataset trains "
                    f"{len(self.regions)} regions {list(self.regions.names)} (regions: true): "
                    f"one output channel per region ({self.cfg.path})"
                )
        elif model_classes is not None and model_classes != data_classes:
            raise ValueError(
                f"model.num_classes is {model_classes} but train_dataset has {data_classes} "
                f"classes ({self.cfg.path})"
            )
        val_regions = getattr(self.val_dataset, "regions", None)
        if self.val_dataset is not None and val_regions != self.regions:
            raise ValueError(
                f"train_dataset and val_dataset must agree on regions (regions: true on both, "
                f"same dataset.json regions) ({self.cfg.path})"
            )

    def _resume(self) -> None:
        model_state, state = load_train_state(self.opt.resume_model)
        check_resume_shapes(self.model, model_state, self.opt.resume_model)
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        if state["grad_scaler"]:  # empty when the checkpoint's run did not scale (fp32, bf16)
            self.scaler.load_state_dict(state["grad_scaler"])
        self.start_iter = int(state["iter"])
        self.start_sample = int(state["samples"])
        self.best = state["best"]
        # A distributed run saves every rank's RNG state; on the same world size each rank gets
        # its own back (exact resume), otherwise the ranks are reseeded in `_wrap`.
        per_rank = state.get("rng_ranks") or [state["rng"]]
        self.rank_rng_restored = len(per_rank) == self.dist.world_size
        restore_rng_states(per_rank[self.dist.rank] if self.rank_rng_restored else state["rng"])
        if not self.rank_rng_restored:
            logger.info(
                "the checkpoint was written by %d process(es), this run has %d: each rank draws "
                "fresh torch random numbers (dropout) from here",
                len(per_rank),
                self.dist.world_size,
            )
        logger.info(
            "resumed from %s at iter %d (global sample %d)",
            self.opt.resume_model,
            self.start_iter,
            self.start_sample,
        )

    def _sampler_start(self) -> int:
        """The sampler's per-rank start: the global position rounded up to a whole global step.

        With the world size of the checkpoint's run this is exact; with another, fewer than
        `world_size` samples of the endless stream may be skipped.
        """
        world = self.dist.world_size
        start = -(-self.start_sample // world)
        if start * world != self.start_sample:
            logger.info(
                "resuming on %d processes: %d sample(s) of the stream skipped to align the ranks",
                world,
                start * world - self.start_sample,
            )
        return start

    def _loader(self) -> DataLoader:
        # One global stream, rank r taking every world_size-th sample: the samples of an
        # iteration depend on the global position only, so augmentation is rank-correct.
        sampler = InfiniteSampler(
            len(self.train_dataset),
            seed=self.opt.seed,
            start_sample=self._sampler_start(),
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        workers = self.opt.num_workers
        prefetch = self.opt.prefetch_factor if workers > 0 else None
        logger.info(
            "data loading: %s%s",
            f"{workers} worker process(es)" if workers else "in the training process",
            f", prefetch_factor {prefetch}" if prefetch else "",
        )
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            prefetch_factor=prefetch,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            drop_last=True,
            # A private generator keeps DataLoader start-up from consuming the global torch RNG,
            # which would shift dropout masks between a resumed and an uninterrupted run.
            generator=torch.Generator().manual_seed(self.opt.seed),
        )

    def _state(self, iteration: int) -> dict[str, Any]:
        """The resume state; collective under DDP (every rank's RNG state is gathered)."""
        state = {
            "iter": iteration,
            "samples": self.start_sample + (iteration - self.start_iter) * self.global_batch,
            "world_size": self.dist.world_size,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": rng_states(),
            "best": dict(self.best),
            "seed": self.opt.seed,
        }
        if self.dist.distributed:
            state["rng_ranks"] = all_gather(state["rng"], self.dist)
        return state

    def _folder_texts(self, cfg: Config) -> dict[str, str]:
        """What makes a model folder self-contained: `model_info.json` and `config.yaml`."""
        texts = {"config.yaml": cfg.to_yaml()}
        try:
            texts[MODEL_INFO_FILE] = ModelInfo.from_config(cfg, self.model, self.opt.fold).to_json()
        except (ConfigError, ValueError) as err:
            logger.warning("model folders will lack %s (export needs it): %s", MODEL_INFO_FILE, err)
        return texts

    def _save(self, iteration: int) -> None:
        state = self._state(iteration)
        if not self.dist.is_main:
            return
        folder = self.opt.save_dir / f"iter_{iteration}"
        save_checkpoint(folder, self.model, state, self.folder_texts)
        if folder not in self.saved:
            self.saved.append(folder)
        while len(self.saved) > max(self.opt.keep_checkpoint_max, 1):
            old = self.saved.popleft()
            for file in old.iterdir():
                file.unlink()
            old.rmdir()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, float]]:
        with self._autocast():
            logits = self.net(images)
            loss, terms = loss_computation(logits, labels, self.losses)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"loss became {loss_value} (terms {terms}); lower lr_scheduler.learning_rate or "
                "check the labels and intensity normalisation"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss_value, terms

    def validate(self) -> EvaluationResult:
        """Score the current weights on the validation set (`evaluate`'s result, on every rank).

        Each rank predicts every world_size-th case; the per-case rows are gathered and
        summarised in dataset order, so the figures equal a single-process evaluation. The same
        space and metric as val.py's defaults, so val.py on best_model/ repeats the best score.
        """
        sync_buffers(self.model, self.dist)
        scored, errors = score_cases(
            self.model,
            self.val_dataset,
            self.inference,
            self.device,
            shard(len(self.val_dataset), self.dist),
            self.eval_space,
            amp_dtype=self.amp_dtype,
            progress=False,
            largest_component=self.largest_component,
        )
        gathered = all_gather((scored, errors), self.dist)
        self.net.train()
        return summarize_cases(
            self.val_dataset,
            self.eval_space,
            [case for part, _ in gathered for case in part],
            [error for _, part in gathered for error in part],
        )

    def _evaluate(self, iteration: int, writer: ScalarWriter) -> None:
        result = self.validate()
        if result.errors:
            logger.warning(
                "[EVAL] %d case(s) could not be scored and are left out of the mean: %s",
                len(result.errors),
                ", ".join(error.case for error in result.errors),
            )
        mean_dice = result.mean_dice
        per_class = ", ".join(f"{name} {value:.4f}" for name, value in result.class_dice.items())
        logger.info(
            "[EVAL] iter %d: mean foreground Dice %.4f (%s space; %s)",
            iteration,
            mean_dice,
            result.space,
            per_class,
        )
        writer.add_scalar("Evaluate/mean_dice", mean_dice, iteration)
        # Every rank holds the same gathered result; rank 0's decision is still broadcast, so
        # the ranks cannot disagree on the best model.
        improved = broadcast(bool(mean_dice > self.best["mean_dice"]), self.dist)
        if improved:
            self.best = {"mean_dice": mean_dice, "iter": iteration}
            if self.dist.is_main:
                write_folder_atomic(
                    self.opt.save_dir / "best_model",
                    {"model.pth": self.model.state_dict(), **self.folder_texts},
                )
        logger.info(
            "[EVAL] best mean foreground Dice %.4f at iter %d",
            self.best["mean_dice"],
            self.best["iter"],
        )

    def train(self) -> dict[str, Any]:
        """Run the loop; returns `{"best": {...}, "iters": N}`.

        Ctrl-C or SIGTERM is logged when it arrives, finishes the current iteration, saves
        `iter_N/` and exits with 130; a second Ctrl-C stops at once. Iteration 1 is always logged
        and, in a terminal, a progress bar with ETA runs on rank 0.
        """
        self.net.train()
        main = self.dist.is_main
        if main:
            remove_stale_temporaries(self.opt.save_dir)
        writer = ScalarWriter(
            self.opt.save_dir, self.opt.use_vdl and main, self.opt.use_tensorboard and main
        )
        bar = tqdm(
            total=self.iters,
            initial=self.start_iter,
            desc="train",
            unit="it",
            disable=not main or not sys.stderr.isatty(),  # log files get the ETA in each line
            mininterval=1.0,
            dynamic_ncols=True,
        )
        try:
            with stop_signals() as self._stop, logging_redirect_tqdm():
                iteration = self._loop(writer, bar)
        finally:
            bar.close()
            writer.close()
        return {"best": self.best, "iters": iteration}

    def _loop(self, writer: ScalarWriter, bar: tqdm) -> int:
        loader = iter(self._loader())
        window: dict[str, list[float]] = collections.defaultdict(list)
        data_time = batch_time = 0.0
        self._windows_logged = 0
        self._last_data_warning = -DATA_WARN_EVERY
        memory_format = (
            torch.channels_last_3d if self.opt.channels_last else torch.contiguous_format
        )
        tic = time.perf_counter()
        for iteration in range(self.start_iter + 1, self.iters + 1):
            images, labels, _ = next(loader)
            images = images.to(self.device, non_blocking=True, memory_format=memory_format)
            labels = labels.to(self.device, non_blocking=True)
            data_time += time.perf_counter() - tic
            loss, terms = self._step(images, labels)
            batch_time += time.perf_counter() - tic
            window["loss"].append(loss)
            for name, value in terms.items():
                window[name].append(value)
            bar.update()
            # The first iteration is logged too: on a CPU one step may take a minute.
            first = iteration == self.start_iter + 1
            if first or iteration % self.opt.log_iters == 0 or iteration == self.iters:
                self._log(iteration, window, data_time, batch_time, writer)
                window.clear()
                data_time = batch_time = 0.0
            if self.val_dataset is not None and (
                iteration % self.eval_interval == 0 or iteration == self.iters
            ):
                self._evaluate(iteration, writer)
            # All ranks must stop at the same iteration (the checkpoint is collective).
            stop = any_rank(bool(self._stop), self.dist, self.device)
            if stop and not self._stop:
                self._stop.signal = "stop request of another rank"
            if iteration % self.opt.save_interval == 0 or iteration == self.iters or stop:
                self._save(iteration)
            if stop:
                logger.warning("stopped by %s after iter %d", self._stop.signal, iteration)
                barrier(self.dist)  # rank 0 has written the checkpoint; leave together
                raise SystemExit(130)
            tic = time.perf_counter()
        sync_buffers(self.model, self.dist)
        return self.iters

    def _log(
        self,
        iteration: int,
        window: dict[str, list[float]],
        data_time: float,
        batch_time: float,
        writer: ScalarWriter,
    ) -> None:
        steps = len(window["loss"])
        local = {name: sum(values) / len(values) for name, values in window.items()}
        # Averaged over the ranks: the loss of the global batch.
        parts = all_gather(local, self.dist)
        means = {name: sum(part[name] for part in parts) / len(parts) for name in local}
        lr = self.optimizer.param_groups[0]["lr"]
        per_step = batch_time / steps
        reader = data_time / steps
        eta = per_step * (self.iters - iteration)
        terms = " ".join(f"{k}={v:.4f}" for k, v in means.items() if k != "loss")
        logger.info(
            "[TRAIN] iter %d/%d loss=%.4f %s lr=%.6f batch_cost=%.3fs reader_cost=%.3fs "
            "compute_cost=%.3fs ips=%.2f samples/s ETA %s",
            iteration,
            self.iters,
            means["loss"],
            terms,
            lr,
            per_step,
            reader,
            per_step - reader,
            self.global_batch / per_step if per_step > 0 else math.inf,
            time.strftime("%H:%M:%S", time.gmtime(eta)),
        )
        self._warn_if_starved(reader, per_step)
        for name, value in means.items():
            writer.add_scalar(f"Train/{name}", value, iteration)
        writer.add_scalar("Train/lr", lr, iteration)
        writer.add_scalar("Train/batch_cost", per_step, iteration)
        writer.add_scalar("Train/reader_cost", reader, iteration)
        writer.add_scalar("Train/compute_cost", per_step - reader, iteration)

    def _warn_if_starved(self, reader: float, per_step: float) -> None:
        """Warn (now and then) when waiting for data takes a large share of the step."""
        self._windows_logged += 1
        # The first window includes starting the workers and filling their queues.
        if self._windows_logged == 1 or per_step <= 0:
            return
        share = reader / per_step
        if share <= self.opt.data_warn_fraction:
            return
        if self._windows_logged - self._last_data_warning < DATA_WARN_EVERY:
            return
        self._last_data_warning = self._windows_logged
        logger.warning(
            "data loading takes %.0f%% of each step (reader_cost %.3fs of batch_cost %.3fs); "
            "the %s is waiting for data: raise --num_workers (now %d)%s",
            100 * share,
            reader,
            per_step,
            self.device.type.upper() if self.device.type == "cuda" else "model",
            self.opt.num_workers,
            ", or --prefetch_factor" if self.opt.num_workers else "",
        )
