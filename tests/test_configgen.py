"""Generated configs: the CPU/GPU training plan, one file set per plan, hand edits kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.cvlibs.config_file import load_config_dict
from medseg.preprocessing.configgen import write_configs
from medseg.preprocessing.planning import (
    CPU_MAX_VOXELS,
    MIN_ITERS,
    iterations_for_budget,
    plan_spacing,
    training_plan,
)


def _write(folder: Path, patch: list[int], device: str = "cpu", iters: int = 300) -> dict:
    plan = training_plan(device)
    iters_by_model = dict.fromkeys(("vnet", "unet3d", "resencunet"), iters)
    return write_configs(folder, "liver", str(folder / "data"), 3, 1, patch, plan, iters_by_model)


def test_cpu_plan_is_narrow_with_a_small_patch_budget_and_a_time_budget():
    cpu, gpu = training_plan("cpu"), training_plan("cuda")
    assert cpu.max_patch_voxels == CPU_MAX_VOXELS < gpu.max_patch_voxels
    assert cpu.widths["vnet"]["base_channels"] < gpu.widths["vnet"]["base_channels"]
    assert cpu.budget_minutes == 5.0 and gpu.budget_minutes is None
    assert training_plan("cpu", 30).budget_minutes == 30
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        training_plan("tpu")


def test_iterations_fit_the_budget():
    assert iterations_for_budget(0.5, 5) == 600  # 300 s / 0.5 s
    assert iterations_for_budget(0.7, 5) == 420  # 428 rounded down to tens
    assert iterations_for_budget(60.0, 5) == MIN_ITERS  # never fewer than a few
    assert iterations_for_budget(0.001, 600) == 15000  # never more than the GPU schedule
    with pytest.raises(ValueError, match="positive"):
        iterations_for_budget(0.0, 5)


def test_planned_spacing_has_no_float_noise():
    # np.percentile(..., 10) of these is 5.699999999999999
    spacing = plan_spacing([[0.7, 0.7, s] for s in (6.3, 6.7, 6.5, 6.9, 5.1, 7.7)])
    assert spacing == [0.7, 0.7, 5.7]


def test_model_file_holds_the_plan_and_resolves(tmp_path):
    done = _write(tmp_path, [32, 64, 64], iters=420)
    assert [p.name for p in done] == [
        "liver_32_64_64.yml",
        "vnet_liver_32_64_64_420.yml",
        "unet3d_liver_32_64_64_420.yml",
        "resencunet_liver_32_64_64_420.yml",
    ]
    assert set(done.values()) == {"written"}
    cfg = load_config_dict(tmp_path / "vnet_liver_32_64_64_420.yml")
    assert cfg["iters"] == 420 and cfg["batch_size"] == 2
    assert cfg["model"]["base_channels"] == 8 and cfg["model"]["conv_kernel"] == 3
    assert cfg["lr_scheduler"]["power"] == 0.9 and len(cfg["loss"]["coef"]) == 4
    assert cfg["train_dataset"]["transforms"][0]["size"] == [32, 64, 64]
    assert cfg["inference"]["patch_size"] == [32, 64, 64]


def test_another_plan_never_changes_what_older_files_train(tmp_path):
    _write(tmp_path, [32, 64, 64])
    old = load_config_dict(tmp_path / "vnet_liver_32_64_64_300.yml")
    _write(tmp_path, [64, 128, 128], device="cuda", iters=15000)
    assert load_config_dict(tmp_path / "vnet_liver_32_64_64_300.yml") == old
    new = load_config_dict(tmp_path / "vnet_liver_64_128_128_15000.yml")
    assert new["train_dataset"]["transforms"][0]["size"] == [64, 128, 128]
    assert new["model"]["base_channels"] == 16


def test_a_hand_edited_file_is_kept_and_reported(tmp_path):
    _write(tmp_path, [32, 64, 64])
    dataset_file = tmp_path / "liver_32_64_64.yml"
    edited = dataset_file.read_text().replace("fg_prob: 0.33", "fg_prob: 0.9")
    dataset_file.write_text(edited)
    done = _write(tmp_path, [32, 64, 64])
    assert done[dataset_file] == "kept" and dataset_file.read_text() == edited
    assert done[tmp_path / "vnet_liver_32_64_64_300.yml"] == "unchanged"


def test_an_unedited_file_whose_generated_text_changed_is_updated(tmp_path):
    _write(tmp_path, [32, 64, 64])
    done = write_configs(
        tmp_path, "liver", str(tmp_path / "data"), 4, 1, [32, 64, 64], training_plan("cpu"),
        dict.fromkeys(("vnet", "unet3d", "resencunet"), 300),
    )  # fmt: skip
    assert done[tmp_path / "liver_32_64_64.yml"] == "updated"
    assert load_config_dict(tmp_path / "vnet_liver_32_64_64_300.yml")["model"]["num_classes"] == 4
