"""What machine a benchmark or a `--benchmark` run measured: CPU, GPUs, Python, package versions."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, or what `platform` reports."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs `nvidia-smi` reports (empty when there is none or no tool)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        result = subprocess.run(
            [tool, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine_lines(packages: Sequence[str]) -> list[str]:
    """Lines naming the CPU, GPUs, Python and the versions of `packages` (distribution names)."""
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"Python {platform.python_version()}",
    ]
    gpus = gpu_names()
    if gpus:
        lines.append(f"GPU: {', '.join(gpus)}")
    lines.append(", ".join(f"{name} {_version(name)}" for name in packages))
    return lines
