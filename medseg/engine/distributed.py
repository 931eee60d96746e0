"""Multi-process training through PyTorch's own launcher: torchrun + DistributedDataParallel.

`torchrun` (or `python -m torch.distributed.run`) starts one process per GPU and tells each its
place through environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
Without them a run is a single process and nothing here changes its behaviour.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from medseg.utils.vocabulary import device_name

logger = logging.getLogger(__name__)

T = TypeVar("T")
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: Global rank, 0 to `world_size - 1`.
        world_size: Number of processes over all machines.
        local_rank: Rank on this machine (the GPU index it uses).
        backend: "nccl", "gloo", or None when not distributed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs at INFO and writes files."""
        return self.rank == 0


def _launch_environment() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from torchrun's variables, or None when not launched."""
    present = [name for name in LAUNCH_VARIABLES if name in os.environ]
    if not present:
        return None
    if len(present) != len(LAUNCH_VARIABLES):
        missing = sorted(set(LAUNCH_VARIABLES) - set(present))
        raise RuntimeError(
            f"torchrun variables are partly set (missing {', '.join(missing)}); start with "
            "torchrun --nproc_per_node N train.py ..., or unset RANK/WORLD_SIZE/LOCAL_RANK"
        )
    try:
        values = tuple(int(os.environ[name]) for name in LAUNCH_VARIABLES)
    except ValueError:
        shown = ", ".join(f"{n}={os.environ[n]!r}" for n in LAUNCH_VARIABLES)
        raise RuntimeError(f"torchrun variables must be integers, got {shown}") from None
    return values  # type: ignore[return-value]


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun set up; a plain single-process context without torchrun.

    NCCL is used when this process runs on CUDA, gloo on the CPU. Each process takes the GPU of
    its LOCAL_RANK (the usual one-process-per-GPU layout).

    Args:
        device: The `--device` choice (`medseg.utils.vocabulary.DEVICES`; "cuda" is "gpu").

    Raises:
        RuntimeError: for inconsistent launcher variables or a CUDA run with fewer GPUs than
            processes on this machine.
    """
    launch = _launch_environment()
    if launch is None or launch[1] == 1:
        return DistContext()
    rank, world_size, local_rank = launch
    device = device_name(device)
    use_cuda = device == "gpu" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process with LOCAL_RANK {local_rank} needs GPU {local_rank} but torch sees "
                f"{torch.cuda.device_count()} usable GPU(s); lower --nproc_per_node or use "
                "--device cpu"
            )
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistContext(rank, world_size, local_rank, backend)


def cleanup(context: DistContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """A seed for the random numbers that should differ between ranks (e.g. dropout masks)."""
    return int(np.random.SeedSequence([seed, rank, 0x5EED]).generate_state(1)[0])


def shard(count: int, context: DistContext) -> list[int]:
    """The indices of `count` items this rank handles: every `world_size`-th, from `rank`."""
    return list(range(context.rank, count, context.world_size))


def all_gather(obj: T, context: DistContext) -> list[T]:
    """Every rank's `obj`, in rank order (a one-item list for a single process)."""
    if not context.distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj: T, context: DistContext) -> T:
    """Rank 0's `obj` on every rank (the object itself for a single process)."""
    if not context.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(context: DistContext) -> None:
    """Wait until every rank gets here (no-op for a single process)."""
    if context.distributed:
        dist.barrier()


def any_rank(flag: bool, context: DistContext, device: torch.device | None = None) -> bool:
    """True on every rank when `flag` is true on at least one (e.g. a stop request).

    `device` holds the exchanged value: this rank's GPU under NCCL (the default), the CPU
    under gloo.
    """
    if not context.distributed:
        return flag
    if device is None:
        device = torch.device("cuda", context.local_rank) if context.backend == "nccl" else None
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sync_buffers(module: torch.nn.Module, context: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them at the start of each training forward only, so after the last step each
    rank holds statistics of its own batch; evaluating or comparing ranks needs rank 0's, which
    are the ones saved.
    """
    if not context.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
