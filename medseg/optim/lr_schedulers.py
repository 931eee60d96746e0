"""Per-iteration learning-rate schedules with an optional linear warmup (Paddle semantics).

Each scheduler is a `torch.optim.lr_scheduler.LRScheduler` built as `Cls(optimizer, **cfg)` and
stepped once per iteration. The rate is a pure function of the step, `lr_at(step)`, so curves
are testable and a resumed run (`load_state_dict`) continues exactly. Every parameter group
gets the same rate: the scheduler, not the optimizer's `learning_rate`, owns it.
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from medseg.cvlibs.registry import LR_SCHEDULERS


class WarmupScheduler(LRScheduler):
    """Linear warmup to `learning_rate`, then the subclass's decay counted from warmup's end.

    For `step < warmup_iters` the rate rises linearly from `warmup_start_lr` (at step 0) towards
    `learning_rate` (reached at step `warmup_iters`); from then on it is `decay_at(step -
    warmup_iters)`, so the whole schedule lasts `warmup_iters` + the decay's length.

    Args:
        optimizer: The optimizer whose parameter groups get the rate.
        learning_rate: Peak rate, reached when warmup ends.
        warmup_iters: Warmup length in iterations (0: no warmup).
        warmup_start_lr: Rate at step 0 of the warmup.
        last_epoch: Index of the last step taken; -1 starts a fresh schedule.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        learning_rate: float,
        warmup_iters: int = 0,
        warmup_start_lr: float = 0.0,
        last_epoch: int = -1,
    ):
        name = type(self).__name__
        if learning_rate < 0 or warmup_start_lr < 0:
            raise ValueError(
                f"{name}: learning_rate and warmup_start_lr must be >= 0, got "
                f"{learning_rate} and {warmup_start_lr}"
            )
        if int(warmup_iters) != warmup_iters or warmup_iters < 0:
            raise ValueError(f"{name}: warmup_iters must be an integer >= 0, got {warmup_iters}")
        self.learning_rate = float(learning_rate)
        self.warmup_iters = int(warmup_iters)
        self.warmup_start_lr = float(warmup_start_lr)
        super().__init__(optimizer, last_epoch)

    def decay_at(self, step: int) -> float:
        """Return the rate `step` iterations after warmup; subclasses define the curve."""
        raise NotImplementedError

    def lr_at(self, step: int) -> float:
        """Return the learning rate at iteration `step` (0-based)."""
        if step < 0:
            raise ValueError(f"{type(self).__name__}.lr_at: step must be >= 0, got {step}")
        if step < self.warmup_iters:
            rise = self.learning_rate - self.warmup_start_lr
            return self.warmup_start_lr + rise * step / self.warmup_iters
        return self.decay_at(step - self.warmup_iters)

    def get_lr(self) -> list[float]:
        """Return the rate for the current step, once per parameter group."""
        return [self.lr_at(self.last_epoch)] * len(self.optimizer.param_groups)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the schedule and put its current rate into the optimizer right away."""
        super().load_state_dict(state_dict)
        rates = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = lr
        self._last_lr = rates


@LR_SCHEDULERS.register()
class PolynomialDecay(WarmupScheduler):
    """`lr = (learning_rate - end_lr) * (1 - t / decay_steps) ** power + end_lr`, t after warmup.

    Past `decay_steps` the rate holds at `end_lr`; with `cycle=True` (Paddle's option) the decay
    restarts from a `decay_steps` stretched to the next multiple covering `t` instead.

    Args:
        optimizer: The optimizer whose parameter groups get the rate.
        learning_rate: Rate when decay starts.
        decay_steps: Decay length in iterations (MedicalSeg's configs default it to `iters`).
        end_lr: Final rate.
        power: Polynomial power (1: linear; MedicalSeg's configs use 0.9).
        cycle: Restart the decay instead of holding `end_lr` after `decay_steps`.
        warmup_iters: Linear warmup length before the decay starts.
        warmup_start_lr: Rate at step 0 of the warmup.
        last_epoch: Index of the last step taken; -1 starts a fresh schedule.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        learning_rate: float,
        decay_steps: int,
        end_lr: float = 0.0,
        power: float = 1.0,
        cycle: bool = False,
        warmup_iters: int = 0,
        warmup_start_lr: float = 0.0,
        last_epoch: int = -1,
    ):
        if int(decay_steps) != decay_steps or decay_steps <= 0:
            raise ValueError(
                f"PolynomialDecay: decay_steps must be an integer > 0, got {decay_steps}"
            )
        if power <= 0:
            raise ValueError(f"PolynomialDecay: power must be > 0, got {power}")
        self.decay_steps = int(decay_steps)
        self.end_lr = float(end_lr)
        self.power = float(power)
        self.cycle = cycle
        super().__init__(optimizer, learning_rate, warmup_iters, warmup_start_lr, last_epoch)

    def decay_at(self, step: int) -> float:
        """Return the polynomial rate `step` iterations after warmup."""
        length = self.decay_steps
        if self.cycle:
            length *= max(1, math.ceil(step / self.decay_steps))
        else:
            step = min(step, length)
        fraction = (1 - step / length) ** self.power
        return (self.learning_rate - self.end_lr) * fraction + self.end_lr


@LR_SCHEDULERS.register()
class CosineAnnealingDecay(WarmupScheduler):
    """`lr = eta_min + (learning_rate - eta_min) * (1 + cos(pi * t / T_max)) / 2`, t after warmup.

    Past `T_max` the rate holds at `eta_min` (Paddle's and torch's versions would rise again).

    Args:
        optimizer: The optimizer whose parameter groups get the rate.
        learning_rate: Rate when decay starts.
        T_max: Decay length in iterations.
        eta_min: Final rate.
        warmup_iters: Linear warmup length before the decay starts.
        warmup_start_lr: Rate at step 0 of the warmup.
        last_epoch: Index of the last step taken; -1 starts a fresh schedule.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        learning_rate: float,
        T_max: int,  # noqa: N803  (Paddle's and torch's name)
        eta_min: float = 0.0,
        warmup_iters: int = 0,
        warmup_start_lr: float = 0.0,
        last_epoch: int = -1,
    ):
        if int(T_max) != T_max or T_max <= 0:
            raise ValueError(f"CosineAnnealingDecay: T_max must be an integer > 0, got {T_max}")
        self.T_max = int(T_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, learning_rate, warmup_iters, warmup_start_lr, last_epoch)

    def decay_at(self, step: int) -> float:
        """Return the cosine rate `step` iterations after warmup."""
        progress = min(step, self.T_max) / self.T_max
        return (
            self.eta_min
            + (self.learning_rate - self.eta_min) * (1 + math.cos(math.pi * progress)) / 2
        )
