"""Shared fixtures: a small phantom dataset and a briefly trained model on it (built once)."""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Scripts started as subprocesses import medseg from this checkout, as `pip install -e .` makes
# them do (pytest's `pythonpath` setting only reaches this process).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.getenv("PYTHONPATH")]))
VNET_CONFIG = REPO / "configs" / "phantom" / "vnet_phantom_32_48_48_600.yml"
SMALL_PHANTOM = ["--num_cases", "6", "--size", "64", "64", "24"]


def load_tool(path: Path):
    """Import a script from tools/ as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """6 small phantom cases: raw/ (nnU-Net layout) and preprocessed/ (train and val lists)."""
    output = tmp_path_factory.mktemp("phantom")
    from medseg.preparation import phantom

    assert phantom.main([*SMALL_PHANTOM, "--output_dir", str(output)]) == 0
    return output


def write_config(folder: Path, data_dir: Path, base: Path = VNET_CONFIG, extra: str = "") -> Path:
    """A config inheriting `base` but reading `data_dir` with a tiny, fast model."""
    path = folder / "config.yml"
    path.write_text(
        textwrap.dedent(
            f"""
            _base_: {base}
            iters: 20
            train_dataset: {{dataset_root: {data_dir / "preprocessed"}}}
            val_dataset: {{dataset_root: {data_dir / "preprocessed"}}}
            inference: {{patch_size: [32, 48, 48]}}
            model: {{base_channels: 4}}
            """
        )
        + textwrap.dedent(extra)
    )
    return path


@pytest.fixture(scope="session")
def tiny_config(phantom_dir, tmp_path_factory) -> Path:
    """Config of a width-4 VNet on the small phantom, 20 iterations."""
    return write_config(tmp_path_factory.mktemp("config"), phantom_dir)


@pytest.fixture(scope="session")
def trained_run(tiny_config, tmp_path_factory) -> Path:
    """save_dir of a 20-iteration training run with evaluation every 10 iterations."""
    from medseg.commands import train

    save_dir = tmp_path_factory.mktemp("run")
    args = ["--config", str(tiny_config), "--save_dir", str(save_dir), "--do_eval"]
    assert train.main([*args, "--save_interval", "10", "--log_iters", "5"]) == 0
    return save_dir
