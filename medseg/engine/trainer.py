"""The iteration-based training loop: logging, evaluation, best model, exact resume."""

from __future__ import annotations

import collections
import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from medseg.cvlibs import Config
from medseg.datasets import InfiniteSampler
from medseg.engine.checkpoint import (
    load_train_state,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    write_folder_atomic,
)
from medseg.engine.evaluator import evaluate
from medseg.engine.scalar_writer import ScalarWriter
from medseg.inference.settings import inference_settings
from medseg.models.losses.computation import loss_computation

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class TrainOptions:
    """Command-line choices of one training run (everything else comes from the config)."""

    save_dir: Path
    device: torch.device
    save_interval: int = 1000
    eval_interval: int | None = None
    log_iters: int = 10
    num_workers: int = 0
    do_eval: bool = False
    keep_checkpoint_max: int = 5
    seed: int = 0
    resume_model: str | None = None
    amp: bool = False
    use_vdl: bool = False
    use_tensorboard: bool = False
    eval_space: str = "auto"


class Trainer:
    """Trains `cfg.model` on `cfg.train_dataset` for `cfg.iters` iterations.

    Every `save_interval` iterations an `iter_N/` checkpoint is written (model, optimizer,
    scheduler, grad scaler, RNG states, best score); every `eval_interval` iterations, with
    `do_eval`, the validation mean foreground Dice decides `best_model/`. Resuming from `iter_N/`
    replays the same samples and random numbers, so the weights end as in an uninterrupted run.
    """

    def __init__(self, cfg: Config, options: TrainOptions):
        self.cfg = cfg
        self.opt = options
        self.device = options.device
        self.iters = cfg.iters
        self.batch_size = cfg.batch_size
        self.model = cfg.model.to(self.device)
        self.losses = cfg.loss
        for loss in self.losses["types"]:
            loss.to(self.device)
        self.optimizer = cfg.optimizer
        self.scheduler = cfg.lr_scheduler
        self.grad_clip_norm = cfg.grad_clip_norm
        self.scaler = torch.amp.GradScaler("cuda", enabled=options.amp)
        self.train_dataset = cfg.train_dataset
        self.val_dataset = cfg.val_dataset if options.do_eval else None
        if options.do_eval and self.val_dataset is None:
            raise ValueError(f"--do_eval needs a val_dataset in {cfg.path}")
        self.inference = inference_settings(cfg.dic, cfg.path) if self.val_dataset else None
        self.eval_interval = options.eval_interval or options.save_interval
        self.start_iter = 0
        self.best = {"mean_dice": -1.0, "iter": 0}
        self.saved: collections.deque[Path] = collections.deque()
        self._check_classes()
        if options.resume_model:
            self._resume()

    def _check_classes(self) -> None:
        model_classes = getattr(self.model, "num_classes", None)
        data_classes = self.train_dataset.num_classes
        if model_classes is not None and model_classes != data_classes:
            raise ValueError(
                f"model.num_classes is {model_classes} but train_dataset has {data_classes} "
                f"classes ({self.cfg.path})"
            )

    def _resume(self) -> None:
        model_state, state = load_train_state(self.opt.resume_model)
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        self.scaler.load_state_dict(state["grad_scaler"])
        self.start_iter = int(state["iter"])
        self.best = state["best"]
        restore_rng_states(state["rng"])
        logger.info("resumed from %s at iter %d", self.opt.resume_model, self.start_iter)

    def _loader(self) -> DataLoader:
        sampler = InfiniteSampler(
            len(self.train_dataset),
            seed=self.opt.seed,
            start_sample=self.start_iter * self.batch_size,
        )
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.opt.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.opt.num_workers > 0,
            drop_last=True,
            # A private generator keeps DataLoader start-up from consuming the global torch RNG,
            # which would shift dropout masks between a resumed and an uninterrupted run.
            generator=torch.Generator().manual_seed(self.opt.seed),
        )

    def _state(self, iteration: int) -> dict[str, Any]:
        return {
            "iter": iteration,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": rng_states(),
            "best": dict(self.best),
            "seed": self.opt.seed,
        }

    def _save(self, iteration: int) -> None:
        folder = self.opt.save_dir / f"iter_{iteration}"
        save_checkpoint(folder, self.model, self._state(iteration))
        if folder not in self.saved:
            self.saved.append(folder)
        while len(self.saved) > max(self.opt.keep_checkpoint_max, 1):
            old = self.saved.popleft()
            for file in old.iterdir():
                file.unlink()
            old.rmdir()

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, float]]:
        with torch.autocast(self.device.type, enabled=self.opt.amp):
            logits = self.model(images)
            loss, terms = loss_computation(logits, labels, self.losses)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} (terms {terms}); lower lr_scheduler.learning_rate or "
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
        return loss.item(), terms

    def _evaluate(self, iteration: int, writer: ScalarWriter) -> None:
        # The same space and metric as val.py's defaults, so val.py on best_model/ repeats the
        # best score logged here. TODO(owner of TrainOptions): make `eval_space` a field.
        result = evaluate(
            self.model,
            self.val_dataset,
            self.inference,
            self.device,
            self.opt.amp,
            progress=False,
            space=getattr(self.opt, "eval_space", "auto"),
        )
        self.model.train()
        if result["errors"]:
            logger.warning(
                "[EVAL] %d case(s) could not be scored and are left out of the mean: %s",
                len(result["errors"]),
                ", ".join(error["case"] for error in result["errors"]),
            )
        mean_dice = result["mean_dice"]
        per_class = ", ".join(f"{name} {value:.4f}" for name, value in result["class_dice"].items())
        logger.info(
            "[EVAL] iter %d: mean foreground Dice %.4f (%s space; %s)",
            iteration,
            mean_dice,
            result["space"],
            per_class,
        )
        writer.add_scalar("Evaluate/mean_dice", mean_dice, iteration)
        if mean_dice > self.best["mean_dice"]:
            self.best = {"mean_dice": mean_dice, "iter": iteration}
            write_folder_atomic(
                self.opt.save_dir / "best_model", {"model.pth": self.model.state_dict()}
            )
            self.cfg.dump(self.opt.save_dir / "best_model" / "config.yaml")
        logger.info(
            "[EVAL] best mean foreground Dice %.4f at iter %d",
            self.best["mean_dice"],
            self.best["iter"],
        )

    def train(self) -> dict[str, Any]:
        """Run the loop; returns `{"best": {...}, "iters": N}`.

        Ctrl-C or SIGTERM finishes the current iteration, saves `iter_N/` and exits with 130; a
        second Ctrl-C stops at once.
        """
        self.model.train()
        writer = ScalarWriter(self.opt.save_dir, self.opt.use_vdl, self.opt.use_tensorboard)
        self._stop_signal: str | None = None
        handlers = {sig: signal.signal(sig, self._request_stop) for sig in STOP_SIGNALS}
        try:
            iteration = self._loop(writer)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            writer.close()
        return {"best": self.best, "iters": iteration}

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_signal = signal.Signals(signum).name
        logger.warning("%s: finishing this iteration, then saving a checkpoint", self._stop_signal)

    def _loop(self, writer: ScalarWriter) -> int:
        loader = iter(self._loader())
        window: dict[str, list[float]] = collections.defaultdict(list)
        data_time = batch_time = 0.0
        tic = time.perf_counter()
        for iteration in range(self.start_iter + 1, self.iters + 1):
            images, labels, _ = next(loader)
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            data_time += time.perf_counter() - tic
            loss, terms = self._step(images, labels)
            batch_time += time.perf_counter() - tic
            window["loss"].append(loss)
            for name, value in terms.items():
                window[name].append(value)
            if iteration % self.opt.log_iters == 0 or iteration == self.iters:
                self._log(iteration, window, data_time, batch_time, writer)
                window.clear()
                data_time = batch_time = 0.0
            if self.val_dataset is not None and (
                iteration % self.eval_interval == 0 or iteration == self.iters
            ):
                self._evaluate(iteration, writer)
            if (
                iteration % self.opt.save_interval == 0
                or iteration == self.iters
                or self._stop_signal is not None
            ):
                self._save(iteration)
            if self._stop_signal is not None:
                logger.warning("stopped by %s after iter %d", self._stop_signal, iteration)
                raise SystemExit(130)
            tic = time.perf_counter()
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
        means = {name: sum(values) / len(values) for name, values in window.items()}
        lr = self.optimizer.param_groups[0]["lr"]
        per_step = batch_time / steps
        eta = per_step * (self.iters - iteration)
        terms = " ".join(f"{k}={v:.4f}" for k, v in means.items() if k != "loss")
        logger.info(
            "[TRAIN] iter %d/%d loss=%.4f %s lr=%.6f batch_cost=%.3fs reader_cost=%.3fs "
            "ips=%.2f samples/s ETA %s",
            iteration,
            self.iters,
            means["loss"],
            terms,
            lr,
            per_step,
            data_time / steps,
            self.batch_size / per_step if per_step > 0 else math.inf,
            time.strftime("%H:%M:%S", time.gmtime(eta)),
        )
        for name, value in means.items():
            writer.add_scalar(f"Train/{name}", value, iteration)
        writer.add_scalar("Train/lr", lr, iteration)
        writer.add_scalar("Train/batch_cost", per_step, iteration)
        writer.add_scalar("Train/reader_cost", data_time / steps, iteration)
