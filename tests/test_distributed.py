"""Distributed training on the CPU: two gloo processes, through mp.spawn and through torchrun."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from medseg.cvlibs import DATASETS, MODELS, Config
from medseg.engine import distributed
from medseg.engine.distributed import DistContext, all_gather, broadcast, shard

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # seconds for one multi-process launch before it is killed
# Five validation cases (the train list), so two ranks get an uneven share (3 and 2).
ALL_CASES = ["val_dataset.file_list=train_list.txt"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_ranks(worker, args: tuple, timeout: float) -> None:
    """`worker(rank, *args)` in two spawned processes; fails if they are not done in `timeout` s."""
    processes = mp.start_processes(worker, args=args, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not processes.join(timeout=1):
            assert time.monotonic() < deadline, f"the two ranks did not finish in {timeout} s"
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.kill()


def spawn_worker(rank: int, world_size: int, port: int, config: str, out: str) -> None:
    """One rank: train 3 iterations with DDP, validate, save its weights and the result."""
    from medseg.engine.runtime import seed_everything
    from medseg.engine.trainer import Trainer, TrainOptions

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    context = distributed.init_distributed("cpu")
    try:
        cfg = Config(config, opts=ALL_CASES, iters=3)
        seed_everything(0)
        options = TrainOptions(
            Path(out) / "run", torch.device("cpu"), save_interval=3, do_eval=True, dist=context
        )
        trainer = Trainer(cfg, options)
        trainer.train()
        result = trainer.validate()
        torch.save(
            {"weights": trainer.model.state_dict(), "result": result},
            Path(out) / f"rank{rank}.pth",
        )
        distributed.barrier(context)
    finally:
        distributed.cleanup(context)


def test_two_gloo_ranks_hold_identical_weights_and_reduce_metrics_exactly(tiny_config, tmp_path):
    from medseg.engine.evaluator import evaluate

    run_two_ranks(spawn_worker, (2, free_port(), str(tiny_config), str(tmp_path)), TIMEOUT)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pth", weights_only=False) for r in (0, 1))
    assert rank0["weights"].keys() == rank1["weights"].keys()
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), key
    assert not any(key.startswith("module.") for key in rank0["weights"])
    # The weights moved: training really happened (else equality would prove nothing).
    cfg = Config(tiny_config, opts=ALL_CASES)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    initial = model.state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in rank0["weights"].items())

    model.load_state_dict(rank0["weights"])
    torch.set_num_threads(1)
    single = evaluate(
        model,
        DATASETS.build(cfg.val_dataset),
        cfg.inference,
        torch.device("cpu"),
        progress=False,
    )
    assert len({case.case for case in single.cases}) == 5
    for result in (rank0["result"], rank1["result"]):
        assert result.rows() == single.rows()
        assert result.mean_dice == single.mean_dice
        assert result.summary == single.summary


def spawn_train_main(rank: int, port: int, argv: list[str], bad_rank_argv: list[str], out: str):
    """train.main as one of 2 ranks; rank 1 gets extra (bad) arguments; writes its exit code."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    from medseg.commands import train

    code = train.main(argv + (bad_rank_argv if rank == 1 else []))
    Path(out, f"code{rank}").write_text(str(code))


def test_a_rank_that_cannot_start_stops_every_rank(tiny_config, tmp_path):
    """Rank 1's config is broken: both ranks exit with 2, rank 0 does not wait in DDP set-up."""
    argv = ["--config", str(tiny_config), "--save_dir", str(tmp_path / "run"), "--device", "cpu"]
    run_two_ranks(
        spawn_train_main, (free_port(), argv, ["--opts", "model.depth=3"], str(tmp_path)), 60
    )
    assert [(tmp_path / f"code{r}").read_text() for r in (0, 1)] == ["2", "2"]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "another process could not start" in log


def torchrun(save_dir: Path, config: Path, *extra: str, nproc: int = 2) -> str:
    """Run train.py under torchrun with `nproc` gloo processes; returns the combined output."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(REPO / "train.py"),
        "--config",
        str(config),
        "--save_dir",
        str(save_dir),
        "--device",
        "cpu",
        "--iters",
        "4",
        "--save_interval",
        "2",
        "--log_iters",
        "2",
        *extra,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT} s")
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_torchrun_writes_plain_checkpoints_once_and_resumes_on_any_world_size(
    tiny_config, tmp_path
):
    from medseg.engine.checkpoint import load_model_weights

    output = torchrun(tmp_path / "full", tiny_config, "--do_eval", "--opts", *ALL_CASES)
    full = tmp_path / "full"
    # Rank 0 alone logs: each progress line appears once.
    assert output.count("[TRAIN] iter 4/4") == 1
    assert "DistributedDataParallel over 2 processes (gloo)" in output
    assert "batch_size 2 per process, 4 per iteration" in output
    log = (full / "train.log").read_text()
    assert log.count("[EVAL] iter 4:") == 1 and "compute_cost=" in log
    weights = torch.load(full / "iter_4" / "model.pth", weights_only=True)
    assert not any(key.startswith("module.") for key in weights)
    # strict: plain keys
    load_model_weights(MODELS.build(Config(tiny_config).model), full / "best_model")
    state = torch.load(full / "iter_2" / "train_state.pth", weights_only=False)
    assert (state["samples"], state["world_size"], len(state["rng_ranks"])) == (8, 2, 2)

    # Same world size: the resumed run ends with the uninterrupted run's weights.
    resumed = tmp_path / "resumed"
    torchrun(resumed, tiny_config, "--resume_model", str(full / "iter_2"))
    again = torch.load(resumed / "iter_4" / "model.pth", weights_only=True)
    for key, value in weights.items():
        assert torch.equal(value, again[key]), key

    # One process continues the global sample stream where the two left it.
    from medseg.commands import train

    single = tmp_path / "single"
    args = ["--config", str(tiny_config), "--save_dir", str(single), "--iters", "3"]
    assert train.main([*args, "--resume_model", str(full / "iter_2"), "--device", "cpu"]) == 0
    assert "at iter 2 (global sample 8)" in (single / "train.log").read_text()
    state = torch.load(single / "iter_3" / "train_state.pth", weights_only=False)
    assert (state["samples"], state["world_size"]) == (10, 1)


def test_single_process_context_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = distributed.init_distributed("cpu")
    assert context == DistContext() and context.is_main and not context.distributed
    assert all_gather({"a": 1}, context) == [{"a": 1}]
    assert broadcast(5, context) == 5


def test_partial_torchrun_variables_are_an_error(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(RuntimeError, match="missing LOCAL_RANK, WORLD_SIZE"):
        distributed.init_distributed("cpu")


def test_shards_cover_every_case_once():
    parts = [shard(7, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard(2, DistContext(rank=2, world_size=3)) == []


def test_slow_data_loading_is_warned_about(tiny_config, tmp_path, caplog):
    from medseg.engine.trainer import Trainer, TrainOptions

    trainer = Trainer(Config(tiny_config), TrainOptions(tmp_path, torch.device("cpu")))
    trainer._windows_logged, trainer._last_data_warning = 0, -100
    caplog.clear()  # building may warn (a warm-up longer than the 20-iteration run is shortened)
    with caplog.at_level("WARNING"):
        trainer._warn_if_starved(0.5, 1.0)  # first window: worker start-up, never warned
        trainer._warn_if_starved(0.1, 1.0)  # 10%: fine
        assert not caplog.records
        trainer._warn_if_starved(0.3, 1.0)
    assert "data loading takes 30% of each step" in caplog.text
    assert "raise --num_workers (now 0)" in caplog.text
