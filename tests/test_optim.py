"""Optimizer factories and per-iteration LR schedules against their closed forms."""

import math

import pytest
import torch

from medseg.cvlibs.registry import LR_SCHEDULERS, OPTIMIZERS
from medseg.optim.lr_schedulers import CosineAnnealingDecay, PolynomialDecay
from medseg.optim.optimizers import adam, adamw, sgd


def params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(3))]


# --- optimizers --------------------------------------------------------------------------


def test_sgd_case_insensitive_lookup_and_hyper_parameters():
    optimizer = OPTIMIZERS.get("SGD")(params(), 0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 1e-4)
    assert group["nesterov"] is False


def test_sgd_accepts_paddle_use_nesterov():
    optimizer = sgd(params(), learning_rate=0.01, momentum=0.99, use_nesterov=True)
    assert optimizer.param_groups[0]["nesterov"] is True
    with pytest.raises(ValueError, match="momentum > 0"):
        sgd(params(), 0.01, nesterov=True)
    with pytest.raises(TypeError, match="either 'nesterov' or 'use_nesterov'"):
        sgd(params(), 0.01, momentum=0.9, nesterov=True, use_nesterov=True)


@pytest.mark.parametrize(
    ("name", "cls"), [("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW)]
)
def test_adam_family_paddle_and_torch_names(name, cls):
    factory = OPTIMIZERS.get(name)
    paddle_style = factory(params(), 1e-3, beta1=0.8, beta2=0.99, epsilon=1e-6, weight_decay=0.05)
    torch_style = factory(params(), 1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    for optimizer in (paddle_style, torch_style):
        assert type(optimizer) is cls
        group = optimizer.param_groups[0]
        assert group["betas"] == (0.8, 0.99)
        assert (group["eps"], group["weight_decay"], group["lr"]) == (1e-6, 0.05, 1e-3)
    with pytest.raises(TypeError, match="either 'betas' or 'beta1'/'beta2'"):
        factory(params(), 1e-3, betas=(0.9, 0.999), beta1=0.9)


def test_adam_defaults():
    assert adam(params(), 1e-3).param_groups[0]["betas"] == (0.9, 0.999)
    assert adam(params(), 1e-3).param_groups[0]["weight_decay"] == 0.0
    assert adamw(params(), 1e-3).param_groups[0]["weight_decay"] == 0.01


def test_unknown_optimizer_argument_names_it_and_the_accepted_ones():
    with pytest.raises(TypeError, match=r"'sgd' got unknown argument\(s\) \['momentom'\]") as err:
        OPTIMIZERS.get("sgd")(params(), 0.1, momentom=0.9)
    assert "momentum" in str(err.value) and "use_nesterov" in str(err.value)


def test_sgd_step_matches_hand_update():
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = sgd([weight], 0.1, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad()
        (weight * 2.0).sum().backward()  # gradient 2
        optimizer.step()
    # step 1: v=2, w=1-0.2=0.8; step 2: v=0.9*2+2=3.8, w=0.8-0.38=0.42
    assert weight.item() == pytest.approx(0.42)


# --- LR schedulers -----------------------------------------------------------------------


def make(cls, **cfg):
    optimizer = torch.optim.SGD(params(), lr=123.0)  # the scheduler overrides this rate
    return optimizer, cls(optimizer, **cfg)


def run(optimizer, scheduler, steps: int) -> list[float]:
    """Record the optimizer's rate at each of `steps` iterations, stepping once per iteration."""
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_schedulers_registered():
    assert LR_SCHEDULERS.get("PolynomialDecay") is PolynomialDecay
    assert LR_SCHEDULERS.get("CosineAnnealingDecay") is CosineAnnealingDecay


def test_polynomial_decay_closed_form_and_holds_end_lr():
    optimizer, scheduler = make(
        PolynomialDecay, learning_rate=0.01, decay_steps=100, end_lr=1e-4, power=0.9
    )
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # set on construction
    rates = run(optimizer, scheduler, 120)
    for step in (0, 1, 37, 99, 100):
        expected = (0.01 - 1e-4) * (1 - step / 100) ** 0.9 + 1e-4
        assert rates[step] == pytest.approx(expected, rel=1e-12)
        assert scheduler.lr_at(step) == pytest.approx(expected, rel=1e-12)
    assert rates[50] == pytest.approx(0.0099 * 0.5**0.9 + 1e-4)
    assert rates[100:] == pytest.approx([1e-4] * 20)


def test_polynomial_decay_cycle_restarts():
    _, scheduler = make(PolynomialDecay, learning_rate=1.0, decay_steps=10, cycle=True)
    # t=15 lies in the second cycle: decay length 20, lr = 1 - 15/20
    assert scheduler.lr_at(15) == pytest.approx(0.25)
    assert scheduler.lr_at(10) == pytest.approx(0.0)


def test_warmup_then_polynomial_decay_counts_from_warmup_end():
    optimizer, scheduler = make(
        PolynomialDecay,
        learning_rate=0.1,
        decay_steps=10,
        warmup_iters=4,
        warmup_start_lr=0.02,
    )
    rates = run(optimizer, scheduler, 16)
    assert rates[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert rates[9] == pytest.approx(0.1 * (1 - 5 / 10))  # 5 steps after warmup
    assert rates[14:] == pytest.approx([0.0, 0.0])


def test_cosine_decay_closed_form_with_warmup_and_hold():
    _, scheduler = make(
        CosineAnnealingDecay, learning_rate=1.0, T_max=8, eta_min=0.1, warmup_iters=2
    )
    assert scheduler.lr_at(0) == 0.0
    assert scheduler.lr_at(1) == pytest.approx(0.5)
    assert scheduler.lr_at(2) == pytest.approx(1.0)
    assert scheduler.lr_at(2 + 4) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2)=0
    assert scheduler.lr_at(2 + 2) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert scheduler.lr_at(2 + 8) == pytest.approx(0.1)
    assert scheduler.lr_at(2 + 50) == pytest.approx(0.1)


def test_state_dict_resume_continues_identically():
    cfg = {"learning_rate": 0.1, "decay_steps": 20, "power": 0.9, "warmup_iters": 3}
    optimizer, scheduler = make(PolynomialDecay, **cfg)
    run(optimizer, scheduler, 7)
    state = scheduler.state_dict()
    expected = run(optimizer, scheduler, 10)

    resumed_optimizer, resumed = make(PolynomialDecay, **cfg)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 7
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(expected[0])
    assert run(resumed_optimizer, resumed, 10) == expected


def test_scheduler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps must be an integer > 0, got 0"):
        make(PolynomialDecay, learning_rate=0.1, decay_steps=0)
    with pytest.raises(ValueError, match="warmup_iters must be an integer >= 0, got -1"):
        make(CosineAnnealingDecay, learning_rate=0.1, T_max=5, warmup_iters=-1)


# --- builders ----------------------------------------------------------------------------


def test_short_run_shortens_a_long_warmup_so_the_rate_peaks_and_decays(caplog):
    from medseg.optim import build_lr_scheduler

    node = {"type": "PolynomialDecay", "learning_rate": 0.1, "power": 0.9, "warmup_iters": 100}
    optimizer = torch.optim.SGD(params(), lr=0.1)
    with caplog.at_level("WARNING"):
        scheduler = build_lr_scheduler(node, optimizer, iters=60)
    assert "warmup_iters 100" in caplog.text and "using 6" in caplog.text
    rates = [scheduler.lr_at(step) for step in range(60)]
    assert max(rates) == pytest.approx(0.1)  # the rate reaches its value ...
    assert rates.index(max(rates)) == 6
    assert rates[-1] < 0.1 * 0.2  # ... and decays within the run
    assert node["warmup_iters"] == 100  # the caller's node is left alone
    # A warm-up that fits the run is kept as written.
    assert build_lr_scheduler(node, optimizer, iters=1000).warmup_iters == 100


def test_builder_fills_the_schedule_length_and_keeps_trainer_keys_out():
    from medseg.optim import build_lr_scheduler, build_optimizer

    model = torch.nn.Linear(2, 2)
    node = {"type": "sgd", "momentum": 0.9, "grad_clip_norm": 1.0, "learning_rate": 9.0}
    optimizer = build_optimizer(node, model, learning_rate=0.5)
    assert optimizer.param_groups[0]["lr"] == 0.5 and "grad_clip_norm" in node
    scheduler = build_lr_scheduler(
        {"type": "CosineAnnealingDecay", "learning_rate": 0.5}, optimizer, 40
    )
    assert scheduler.T_max == 40
