"""Optimizer factories registered in OPTIMIZERS under MedicalSeg's names: sgd, adam, adamw.

Each takes `(params, learning_rate, **hyper-parameters)`. Paddle's spellings (`use_nesterov`,
`beta1`, `beta2`, `epsilon`) and torch's (`nesterov`, `betas`, `eps`) are both accepted, so
MedicalSeg configs load unchanged. The learning rate is then driven by the LR scheduler.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from medseg.cvlibs.registry import OPTIMIZERS

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _checked_kwargs(factory: Callable[..., torch.optim.Optimizer]) -> Callable[..., Any]:
    """Make an unknown keyword raise `TypeError` naming it and the accepted ones."""
    accepted = [
        name
        for name, param in inspect.signature(factory).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]

    @functools.wraps(factory)
    def wrapper(params: Params, learning_rate: float, **kwargs: Any) -> torch.optim.Optimizer:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(
                f"optimizer '{factory.__name__}' got unknown argument(s) {unknown}; "
                f"accepted: learning_rate, {', '.join(accepted)}"
            )
        return factory(params, learning_rate, **kwargs)

    return wrapper


def _either(name: str, value: Any, alias: str, alias_value: Any, default: Any) -> Any:
    """Return whichever of two spellings of one argument was given, or `default`."""
    if value is not None and alias_value is not None:
        raise TypeError(f"give either '{name}' or '{alias}', not both")
    if value is not None:
        return value
    return default if alias_value is None else alias_value


def _betas(
    betas: tuple[float, float] | None, beta1: float | None, beta2: float | None
) -> tuple[float, float]:
    """Resolve torch's `betas` pair against Paddle's separate `beta1` / `beta2`."""
    if betas is not None and (beta1 is not None or beta2 is not None):
        raise TypeError("give either 'betas' or 'beta1'/'beta2', not both")
    if betas is not None:
        if len(betas) != 2:
            raise ValueError(f"betas must be two numbers, got {betas!r}")
        return float(betas[0]), float(betas[1])
    return 0.9 if beta1 is None else float(beta1), 0.999 if beta2 is None else float(beta2)


@OPTIMIZERS.register()
@_checked_kwargs
def sgd(
    params: Params,
    learning_rate: float,
    *,
    momentum: float = 0.0,
    nesterov: bool | None = None,
    weight_decay: float = 0.0,
    use_nesterov: bool | None = None,
) -> torch.optim.SGD:
    """SGD with optional (Nesterov) momentum and L2 weight decay (`use_nesterov`: Paddle name)."""
    nesterov = bool(_either("nesterov", nesterov, "use_nesterov", use_nesterov, False))
    if nesterov and momentum <= 0:
        raise ValueError(f"sgd: nesterov=True needs momentum > 0, got momentum={momentum}")
    return torch.optim.SGD(
        params, lr=learning_rate, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )


@OPTIMIZERS.register()
@_checked_kwargs
def adam(
    params: Params,
    learning_rate: float,
    *,
    betas: tuple[float, float] | None = None,
    eps: float | None = None,
    weight_decay: float = 0.0,
    beta1: float | None = None,
    beta2: float | None = None,
    epsilon: float | None = None,
) -> torch.optim.Adam:
    """Adam with L2 weight decay added to the gradient (Paddle's and torch's `Adam`)."""
    return torch.optim.Adam(
        params,
        lr=learning_rate,
        betas=_betas(betas, beta1, beta2),
        eps=_either("eps", eps, "epsilon", epsilon, 1e-8),
        weight_decay=weight_decay,
    )


@OPTIMIZERS.register()
@_checked_kwargs
def adamw(
    params: Params,
    learning_rate: float,
    *,
    betas: tuple[float, float] | None = None,
    eps: float | None = None,
    weight_decay: float = 0.01,
    beta1: float | None = None,
    beta2: float | None = None,
    epsilon: float | None = None,
) -> torch.optim.AdamW:
    """AdamW: weight decay applied to the weights, decoupled from the gradient."""
    return torch.optim.AdamW(
        params,
        lr=learning_rate,
        betas=_betas(betas, beta1, beta2),
        eps=_either("eps", eps, "epsilon", epsilon, 1e-8),
        weight_decay=weight_decay,
    )
