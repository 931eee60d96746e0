"""Helpers the benchmarks share: run one measurement in a fresh process, read its peak memory."""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from collections.abc import Callable
from typing import Any


def status_kib(field: str) -> int:
    """A `/proc/self/status` field in KiB (Linux), e.g. VmRSS or VmHWM."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> int:
    """Reset the peak resident size (VmHWM) to the current one; returns the current KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kib("VmRSS")


def peak_mib_since(before_kib: int) -> float:
    """Growth of the peak resident size since `reset_peak()` returned `before_kib`, in MiB."""
    return (status_kib("VmHWM") - before_kib) / 1024


def in_fresh_process(target: Callable[..., None], *args: Any, timeout: float = 3600) -> Any:
    """Run `target(*args, queue)` in a spawned process and return what it put on the queue.

    A fresh process per measurement keeps caches, allocator state and peak memory of one method
    from leaking into the next.
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    try:
        result = results.get(timeout=timeout)
    except queue_module.Empty:
        process.kill()
        raise RuntimeError(
            f"{target.__name__}{args} gave no result (exit code {process.exitcode})"
        ) from None
    process.join()
    return result
