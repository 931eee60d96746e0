"""The installable commands and the thin scripts that wrap them in a checkout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from medseg.commands import prepare

REPO = Path(__file__).resolve().parents[1]


def test_every_prepare_script_wraps_a_dataset_the_command_knows():
    scripts = sorted((REPO / "tools").glob("prepare_*.py"))
    assert {s.stem.removeprefix("prepare_") for s in scripts} == set(prepare.DATASETS)
    for script in scripts:
        module = prepare.DATASETS[script.stem.removeprefix("prepare_")]
        assert re.search(rf"^from {re.escape(module)} import main$", script.read_text(), re.M)


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
