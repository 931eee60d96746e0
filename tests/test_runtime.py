"""Run-time switches: CUDA-only requests are dropped on the CPU with a log line, bad ones named."""

import logging

import pytest
import torch

from medseg.engine import runtime

CPU = torch.device("cpu")


def test_amp_on_the_cpu_runs_in_float32_with_a_warning(caplog):
    with caplog.at_level(logging.INFO, logger="medseg.engine.runtime"):
        assert runtime.amp_dtype(True, "bf16", CPU) is None
        assert runtime.amp_dtype(False, "fp16", CPU) is None
    assert [r.getMessage() for r in caplog.records] == [
        "--amp needs a CUDA device; running in float32 on cpu"
    ]


def test_unknown_amp_dtype_is_named():
    with pytest.raises(ValueError, match=r"--amp_dtype: unknown precision 'fp8'.*fp16, bf16"):
        runtime.amp_dtype(True, "fp8", CPU)


def test_compile_and_channels_last_are_ignored_on_the_cpu(caplog):
    model = torch.nn.Conv3d(1, 2, 3)
    with caplog.at_level(logging.INFO, logger="medseg.engine.runtime"):
        assert runtime.maybe_compile(model, True, CPU) is model
        assert runtime.use_channels_last(True, CPU) is False
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "--compile is for CUDA runs; ignored on cpu" in messages
    assert "--channels_last only helps cuDNN convolutions; ignored on cpu" in messages


def test_cuda_requested_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="use --device cpu"):
        runtime.select_device("cuda")
    with pytest.raises(ValueError, match=r"--device: unknown device 'tpu'.*auto, cpu, gpu\)"):
        runtime.select_device("tpu")


@pytest.mark.parametrize(
    ("device", "cpus", "per_node", "workers"),
    [
        ("cpu", 2, 1, 0),
        ("cpu", 16, 1, 2),
        ("cuda", 2, 1, 1),
        ("cuda", 64, 1, 4),
        ("cuda", 16, 8, 1),  # 8 GPUs share 16 cores: 1 worker each, not 4
        ("cpu", 16, 2, 2),
    ],
)
def test_default_num_workers(device, cpus, per_node, workers):
    assert runtime.default_num_workers(torch.device(device), cpus, per_node) == workers
