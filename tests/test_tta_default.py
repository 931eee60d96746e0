"""Mirroring at test time: on by default in val.py and export (hence the runner), off by flag."""

from __future__ import annotations

import json

from medseg.commands import val
from medseg.inference.settings import MIRROR_AXES, inference_settings


def test_default_mirroring_applies_only_where_the_config_is_silent():
    silent = {"patch_size": 8}
    assert inference_settings(silent).tta_axes == ()  # training-time evaluation
    assert inference_settings(silent, None, None, MIRROR_AXES).tta_axes == (0, 1, 2)
    explicit = {"patch_size": 8, "tta_axes": []}
    assert inference_settings(explicit, None, None, MIRROR_AXES).tta_axes == ()


def test_val_mirrors_by_default_and_not_with_no_tta(trained_run, tiny_config, tmp_path):
    args = ["--config", str(tiny_config), "--model_path", str(trained_run / "best_model")]
    for flag, expected in (([], [0, 1, 2]), (["--no_tta"], [])):
        save_dir = tmp_path / ("plain" if flag else "mirrored")
        assert val.main([*args, "--save_dir", str(save_dir), *flag]) == 0
        summary = json.loads((save_dir / "summary.json").read_text())
        assert summary["inference"]["tta_axes"] == expected
