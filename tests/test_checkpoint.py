"""Checkpoint folders: nothing unpickled, old formats still load, no folder ever vanishes."""

import os
import random

import numpy as np
import pytest
import torch

from medseg.engine import checkpoint
from medseg.engine.checkpoint import (
    earlier_checkpoints,
    load_train_state,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    write_folder_atomic,
)


class Payload:
    """Pickles as a call of `os.system`: what a crafted train_state.pth would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def real_state():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = {"iter": 4, "samples": 8, "optimizer": optimizer.state_dict(), "rng": rng_states()}
    return model, state


def test_a_pickle_payload_in_train_state_is_refused_not_run(tmp_path):
    model, state = real_state()
    save_checkpoint(tmp_path / "iter_4", model, state)
    marker = tmp_path / "executed"
    state["best"] = Payload(marker)  # hidden inside an otherwise valid state
    torch.save(state, tmp_path / "iter_4" / "train_state.pth")
    with pytest.raises(ValueError, match=r"train_state\.pth: refused.*posix\.system"):
        load_train_state(tmp_path / "iter_4")
    assert not marker.exists()


def test_a_payload_instead_of_the_weights_is_refused(tmp_path):
    model, state = real_state()
    save_checkpoint(tmp_path / "iter_4", model, state)
    marker = tmp_path / "executed"
    torch.save(Payload(marker), tmp_path / "iter_4" / "model.pth")
    with pytest.raises(ValueError, match=r"model\.pth: refused"):
        load_train_state(tmp_path / "iter_4")
    assert not marker.exists()


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    model, state = real_state()
    save_checkpoint(tmp_path / "iter_4", model, state)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    _, loaded = load_train_state(tmp_path / "iter_4")
    restore_rng_states(loaded["rng"])
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_a_checkpoint_of_an_earlier_version_still_resumes(tmp_path):
    """Earlier versions saved NumPy's RNG state as an ndarray tuple."""
    model, state = real_state()
    np.random.seed(5)
    state["rng"]["numpy"] = np.random.get_state()
    expected = np.random.rand()
    save_checkpoint(tmp_path / "iter_4", model, state)
    np.random.seed(0)
    _, loaded = load_train_state(tmp_path / "iter_4")
    restore_rng_states(loaded["rng"])
    assert np.random.rand() == expected


@pytest.mark.parametrize("name", ["model.pth", "train_state.pth"])
def test_a_truncated_file_is_named(tmp_path, name):
    model, state = real_state()
    save_checkpoint(tmp_path / "iter_4", model, state)
    path = tmp_path / "iter_4" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{name}: cannot be read.*truncated"):
        load_train_state(tmp_path / "iter_4")


def test_text_files_are_written_inside_the_temporary_folder(tmp_path, monkeypatch):
    folder = tmp_path / "best_model"
    write_folder_atomic(folder, {"model.pth": {"w": torch.zeros(1)}, "config.yaml": "old: 1\n"})
    real_save = torch.save

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt  # killed after the weights, before config.yaml

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_folder_atomic(folder, {"model.pth": {"w": torch.ones(1)}, "config.yaml": "new: 1\n"})
    assert (folder / "config.yaml").read_text() == "old: 1\n"
    assert torch.equal(torch.load(folder / "model.pth")["w"], torch.zeros(1))


def test_the_old_folder_stays_visible_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    folder = tmp_path / "best_model"
    write_folder_atomic(folder, {"config.yaml": "old\n"})
    seen = []
    real_rmtree = checkpoint.shutil.rmtree

    def look_then_remove(path, *args, **kwargs):
        seen.append((folder / "config.yaml").read_text())  # after the swap, before cleanup
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint.shutil, "rmtree", look_then_remove)
    write_folder_atomic(folder, {"config.yaml": "new\n"})
    assert seen == ["new\n"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]


def test_a_kill_between_two_renames_is_recovered(tmp_path, monkeypatch):
    """Where the folders cannot be swapped in one step, the `.old` copy is put back."""
    model, state = real_state()
    folder = tmp_path / "iter_4"
    save_checkpoint(folder, model, state)
    monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)
    real_replace = os.replace
    calls = []

    def replace_once(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after `folder -> .old`, before `tmp -> folder`
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace_once)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, model, {**state, "iter": 5})
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    assert not folder.exists()
    _, loaded = load_train_state(folder)
    assert loaded["iter"] == 4 and folder.is_dir()


def test_earlier_checkpoints_are_found_in_order(tmp_path):
    for n in (12, 4, 8, 16):
        (tmp_path / f"iter_{n}").mkdir()
    (tmp_path / ".iter_20.tmp").mkdir()
    (tmp_path / "iter_x").mkdir()
    assert [p.name for p in earlier_checkpoints(tmp_path, 12)] == ["iter_4", "iter_8", "iter_12"]


def test_a_full_disk_while_saving_names_the_folder_and_keeps_the_old_one(tmp_path, monkeypatch):
    folder = tmp_path / "best_model"
    write_folder_atomic(folder, {"config.yaml": "old\n"})

    def disk_full(obj, path):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match=rf"cannot write {folder} \(.*file write failed\); is"):
        write_folder_atomic(folder, {"model.pth": {}, "config.yaml": "new\n"})
    assert (folder / "config.yaml").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]
