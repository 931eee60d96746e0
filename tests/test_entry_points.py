"""The installable commands and the thin scripts that wrap them in a checkout."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.commands import prepare

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {  # command -> the script in the checkout that wraps it
    "medseg-train": "train.py",
    "medseg-val": "val.py",
    "medseg-export": "export.py",
    "medseg-infer": "deploy/python/infer.py",
    "medseg-prepare": "tools/prepare.py",
    "medseg-evaluate": "tools/evaluate.py",
    "medseg-crossval": "tools/crossval.py",
}


def test_pyproject_lists_every_command_and_each_target_is_a_callable_its_script_wraps():
    tomllib = pytest.importorskip("tomllib")
    listed = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert set(listed) == set(COMMANDS)
    for command, target in listed.items():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), command
        script = (REPO / COMMANDS[command]).read_text(encoding="utf-8")
        assert re.search(rf"^from {re.escape(module)} import {name}$", script, re.M), command


def test_no_hand_written_sys_path_insert_is_left():
    mine = Path(__file__).resolve()
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("medseg", "tools", "deploy", "benchmarks", "tests")
        for path in (REPO / folder).rglob("*.py")
        if path != mine and "sys.path.insert" in path.read_text(encoding="utf-8")
    ]
    offenders += [
        name
        for name in ("train.py", "val.py", "export.py")
        if "sys.path.insert" in (REPO / name).read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_the_deploy_runner_command_imports_no_torch():
    code = "import sys, medseg.commands.infer; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_every_prepare_script_wraps_a_dataset_the_command_knows():
    scripts = sorted((REPO / "tools").glob("prepare_*.py"))
    assert {s.stem.removeprefix("prepare_") for s in scripts} == set(prepare.DATASETS)
    for script in scripts:
        module = prepare.DATASETS[script.stem.removeprefix("prepare_")]
        assert re.search(
            rf"^from {re.escape(module)} import main$", script.read_text(encoding="utf-8"), re.M
        )


def test_prepare_command_lists_the_datasets_and_rejects_an_unknown_one(capsys):
    assert prepare.main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in prepare.DATASETS)
    assert prepare.main(["phantm", "--help"]) == 2
    assert "did you mean 'phantom'" in capsys.readouterr().err


def test_a_wrapper_runs_the_command_from_another_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "prepare.py"), "msd", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "Medical Segmentation Decathlon" in done.stdout and "--raw_dir" in done.stdout
