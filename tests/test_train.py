"""train.py end to end: outputs, exact resume after SIGKILL, Ctrl-C saves a checkpoint."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def train_command(config, save_dir, *extra):
    return [
        sys.executable,
        str(REPO / "train.py"),
        "--config",
        str(config),
        "--save_dir",
        str(save_dir),
        "--iters",
        "12",
        "--save_interval",
        "4",
        "--log_iters",
        "2",
        "--seed",
        "7",
        *extra,
    ]


def final_weights(save_dir):
    return torch.load(Path(save_dir) / "iter_12" / "model.pth", weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "training ended before the checkpoint appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_short_run_writes_everything(trained_run):
    for name in ("config.yaml", "train.log", "iter_10/model.pth", "iter_20/train_state.pth"):
        assert (trained_run / name).is_file(), name
    assert (trained_run / "best_model" / "model.pth").is_file()
    assert (trained_run / "best_model" / "config.yaml").is_file()
    log = (trained_run / "train.log").read_text()
    for field in (
        "loss=",
        "CrossEntropyLoss=",
        "DiceLoss=",
        "lr=",
        "batch_cost=",
        "reader_cost=",
        "samples/s",
        "ETA",
        "[EVAL] iter 20: mean foreground Dice",
        "[TRAIN] iter 1/20 ",  # the first step is logged at once, whatever --log_iters says
    ):
        assert field in log, field
    assert not list(trained_run.glob(".*tmp*")), "no temporary files left behind"
    state = torch.load(trained_run / "iter_20" / "train_state.pth", weights_only=True)
    assert state["iter"] == 20 and 0.0 <= state["best"]["mean_dice"] <= 1.0
    assert set(state) >= {"optimizer", "lr_scheduler", "grad_scaler", "rng", "best"}


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_identical_weights(tiny_config, tmp_path):
    subprocess.run(
        train_command(tiny_config, tmp_path / "full", "--do_eval"), check=True, capture_output=True
    )

    victim = subprocess.Popen(
        train_command(tiny_config, tmp_path / "killed", "--do_eval"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(tmp_path / "killed" / "iter_4" / "model.pth", victim)
    time.sleep(0.3)  # let it run on into the next iterations, then kill it hard
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    checkpoints = sorted(
        (p for p in (tmp_path / "killed").glob("iter_*") if p.is_dir()),
        key=lambda p: int(p.name.split("_")[1]),
    )
    last = checkpoints[-1]
    assert int(last.name.split("_")[1]) < 12, "the run finished before it was killed"

    subprocess.run(
        train_command(tiny_config, tmp_path / "killed", "--do_eval", "--resume_model", str(last)),
        check=True,
        capture_output=True,
    )
    assert_same_weights(final_weights(tmp_path / "full"), final_weights(tmp_path / "killed"))
    full_state = torch.load(tmp_path / "full" / "iter_12" / "train_state.pth", weights_only=True)
    resumed_state = torch.load(
        tmp_path / "killed" / "iter_12" / "train_state.pth", weights_only=True
    )
    assert full_state["best"] == resumed_state["best"]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resumes_exactly(tiny_config, tmp_path):
    subprocess.run(train_command(tiny_config, tmp_path / "full"), check=True, capture_output=True)
    process = subprocess.Popen(
        train_command(tiny_config, tmp_path / "stopped"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
    )
    wait_for(tmp_path / "stopped" / "iter_4" / "model.pth", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "SIGINT: finishing this iteration, then saving a checkpoint" in stderr
    saved = [p for p in (tmp_path / "stopped").glob("iter_*") if (p / "model.pth").exists()]
    last = max(saved, key=lambda p: int(p.name.split("_")[1]))
    stopped_at = int(last.name.split("_")[1])
    assert f"stopped by SIGINT after iter {stopped_at}" in stderr
    subprocess.run(
        train_command(tiny_config, tmp_path / "stopped", "--resume_model", str(last)),
        check=True,
        capture_output=True,
    )
    assert_same_weights(final_weights(tmp_path / "full"), final_weights(tmp_path / "stopped"))


def run_in_process(config, save_dir, *extra):
    """train.main in this process; returns (exit code, train.log text)."""
    from medseg.commands import train

    code = train.main(["--config", str(config), "--save_dir", str(save_dir), *extra])
    return code, (save_dir / "train.log").read_text()


def test_resume_from_a_folder_that_is_not_a_checkpoint(tiny_config, tmp_path):
    code, log = run_in_process(tiny_config, tmp_path / "r", "--resume_model", str(tmp_path))
    assert code == 2 and "is not a medseg checkpoint folder" in log


def test_resuming_at_the_last_iteration_says_nothing_is_left(trained_run, tiny_config, tmp_path):
    code, log = run_in_process(
        tiny_config, tmp_path / "r", "--resume_model", str(trained_run / "iter_20"), "--iters", "20"
    )
    assert code == 2 and "is at iter 20, the run ends at iter 20: nothing left to train" in log
    assert not (tmp_path / "r" / "iter_20").exists()


def test_resuming_with_another_width_is_one_line(trained_run, tiny_config, tmp_path):
    resume = ["--resume_model", str(trained_run / "iter_20"), "--iters", "30"]
    code, log = run_in_process(
        tiny_config, tmp_path / "r", *resume, "--opts", "model.base_channels=8"
    )
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert code == 2 and len(errors) == 1 and "tensors differ in shape" in errors[0]
    assert (
        f"resume with the config of that run ({trained_run / 'iter_20' / 'config.yaml'})"
        in errors[0]
    )
    assert "Traceback" not in log


def test_bad_config_key_is_reported_not_a_traceback(tiny_config, tmp_path):
    code, log = run_in_process(tiny_config, tmp_path / "r", "--opts", "model.depth=3")
    assert code == 2 and "VNet takes no argument 'depth'" in log


def test_model_and_dataset_classes_must_agree(tiny_config, tmp_path):
    code, log = run_in_process(tiny_config, tmp_path / "r", "--opts", "model.num_classes=3")
    assert code == 2 and "model.num_classes is 3 but train_dataset has 4" in log


def test_use_vdl_writes_visualdl_logs(tiny_config, tmp_path):
    pytest.importorskip("visualdl")
    code, _ = run_in_process(
        tiny_config, tmp_path / "r", "--iters", "2", "--log_iters", "1", "--use_vdl"
    )
    assert code == 0 and any((tmp_path / "r" / "vdl").iterdir())


def run_with_forced_amp(config, save_dir, dtype, *extra):
    """run_in_process with --amp resolved to `dtype` on the CPU (train.py allows it on CUDA only),
    so the mixed-precision code paths run here with CPU autocast."""
    from medseg.engine import runtime

    patch = pytest.MonkeyPatch()
    patch.setattr(runtime, "amp_dtype", lambda *_: dtype)
    args = ("--iters", "4", "--save_interval", "2", "--seed", "3", "--device", "cpu", "--amp")
    try:
        return run_in_process(config, save_dir, *args, *extra)
    finally:
        patch.undo()


def test_fp16_training_scales_the_loss_validates_and_resumes_exactly(
    tiny_config, tmp_path, monkeypatch
):
    from medseg.engine import evaluator

    dtypes = []

    class Spy(evaluator.TorchPredictor):
        def __init__(self, model, device, amp_dtype=None):
            dtypes.append(amp_dtype)
            super().__init__(model, device, amp_dtype)

    monkeypatch.setattr(evaluator, "TorchPredictor", Spy)
    code, log = run_with_forced_amp(
        tiny_config, tmp_path / "full", torch.float16, "--do_eval", "--eval_interval", "4"
    )
    assert code == 0 and "loss is scaled by a GradScaler" in log
    assert "[EVAL] iter 4: mean foreground Dice" in log
    assert dtypes == [torch.float16]  # validation runs under the training's autocast dtype
    state = torch.load(tmp_path / "full" / "iter_4" / "train_state.pth", weights_only=True)
    assert 0 < state["grad_scaler"]["scale"] <= 2.0**16
    resume = ("--resume_model", str(tmp_path / "full" / "iter_2"))
    assert run_with_forced_amp(tiny_config, tmp_path / "resumed", torch.float16, *resume)[0] == 0
    weights = [torch.load(tmp_path / run / "iter_4" / "model.pth") for run in ("full", "resumed")]
    assert_same_weights(*weights)  # the scaler's state came back with the checkpoint
    before = torch.load(tmp_path / "full" / "iter_2" / "model.pth")
    assert any(not torch.equal(before[key], weights[0][key]) for key in before)


def test_float32_checkpoint_resumes_under_fp16(tiny_config, tmp_path):
    """Switching --amp on mid-run: the fp32 checkpoint holds no scaler state to load."""
    assert (
        run_in_process(tiny_config, tmp_path / "fp32", "--iters", "2", "--save_interval", "2")[0]
        == 0
    )
    resume = ("--resume_model", str(tmp_path / "fp32" / "iter_2"))
    code, log = run_with_forced_amp(tiny_config, tmp_path / "fp16", torch.float16, *resume)
    assert code == 0 and "resumed from" in log and (tmp_path / "fp16" / "iter_4").is_dir()


def test_compiled_model_trains_and_saves_plain_weights(tiny_config, tmp_path):
    """--compile wraps the training module only: checkpoints keep the plain model's keys.

    train.py compiles only on CUDA; here torch.compile runs with its eager backend on the CPU,
    which traces the model with TorchDynamo but needs no C++ compiler."""
    from medseg.engine import trainer

    patch = pytest.MonkeyPatch()
    compiled = []

    def compile_eagerly(net, requested, device):
        compiled.append(requested)
        return torch.compile(net, backend="eager") if requested else net

    patch.setattr(trainer, "maybe_compile", compile_eagerly)
    try:
        args = ("--iters", "2", "--save_interval", "2", "--device", "cpu", "--compile")
        code, _ = run_in_process(tiny_config, tmp_path / "r", *args)
    finally:
        patch.undo()
    state = torch.load(tmp_path / "r" / "iter_2" / "model.pth")
    assert code == 0 and compiled == [True]
    assert not any(key.startswith(("_orig_mod.", "module.")) for key in state)


@pytest.mark.parametrize("flag", ["--save_interval", "--log_iters", "--eval_interval"])
def test_a_zero_interval_is_refused_naming_the_flag(tiny_config, tmp_path, flag):
    code, log = run_in_process(tiny_config, tmp_path / "r", "--iters", "2", flag, "0")
    assert code == 2 and f"{flag} must be a positive number of iterations, got 0" in log


def test_keep_checkpoint_max_counts_the_folders_from_before_a_resume(tiny_config, tmp_path):
    run = tmp_path / "r"
    args = ("--save_interval", "1", "--device", "cpu", "--keep_checkpoint_max", "3")
    assert run_in_process(tiny_config, run, "--iters", "3", *args)[0] == 0
    assert sorted(p.name for p in run.glob("iter_*")) == ["iter_1", "iter_2", "iter_3"]
    resume = ("--resume_model", str(run / "iter_3"))
    assert run_in_process(tiny_config, run, "--iters", "5", *args, *resume)[0] == 0
    assert sorted(p.name for p in run.glob("iter_*")) == ["iter_3", "iter_4", "iter_5"]
