import textwrap
from pathlib import Path

import pytest
import yaml

from medseg.cvlibs import Config, ConfigError
from medseg.cvlibs.config_file import apply_opts, load_config_dict, merge

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_merge_rules():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": [1, 2, 3], "c": 1}
    override = {"a": {"y": [9]}, "b": [4], "d": {"_inherited_": False, "k": 1}}
    merged = merge(base, override)
    assert merged == {"a": {"x": 1, "y": [9]}, "b": [4], "c": 1, "d": {"k": 1}}
    # inputs untouched
    assert base["a"]["y"] == [1, 2]


def test_inherited_false_replaces_base_dict():
    merged = merge(
        {"model": {"type": "VNet", "elu": True}},
        {"model": {"_inherited_": False, "type": "UNet3D"}},
    )
    assert merged == {"model": {"type": "UNet3D"}}


def test_base_chain_string_and_list(tmp_path):
    write(tmp_path / "g.yml", "data_root: /data\nshared: {a: 1, b: 1}\n")
    write(tmp_path / "x.yml", "shared: {b: 2}\nfrom_x: true\n")
    write(tmp_path / "sub/d.yml", "_base_: ['../g.yml', '../x.yml']\nshared: {c: 3}\n")
    write(tmp_path / "sub/m.yml", "_base_: d.yml\nmodel: {type: VNet}\n")
    cfg = load_config_dict(tmp_path / "sub/m.yml")
    assert cfg["shared"] == {"a": 1, "b": 2, "c": 3}
    assert cfg["from_x"] is True and cfg["model"] == {"type": "VNet"}
    assert "_base_" not in cfg


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yml", "_base_: b.yml\n")
    write(tmp_path / "b.yml", "_base_: a.yml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config_dict(tmp_path / "a.yml")


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yml"):
        Config(tmp_path / "nope.yml")
    write(tmp_path / "a.yml", "_base_: gone.yml\n")
    with pytest.raises(ConfigError, match=r"gone.yml \(listed in _base_ of .*a.yml\)"):
        Config(tmp_path / "a.yml")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yml", "iters: 10\nmodel:\n  type: VNet\n   elu: [\n")
    with pytest.raises(ConfigError) as err:
        Config(path)
    assert str(path) in str(err.value) and "line 4" in str(err.value)


def test_opts_values_indices_and_errors(tmp_path):
    cfg = {
        "train_dataset": {"transforms": [{"type": "RandomCrop3D", "size": 8}]},
        "model": {"type": "VNet"},
    }
    apply_opts(
        cfg,
        ["train_dataset.transforms.0.size=[64,64,64]", "model.pretrained=null", "model.elu=true"],
    )
    assert cfg["train_dataset"]["transforms"][0]["size"] == [64, 64, 64]
    assert cfg["model"]["pretrained"] is None and cfg["model"]["elu"] is True
    with pytest.raises(ConfigError, match=r"--opts 'train_dataset.transforms.3.size=1'.*range"):
        apply_opts(cfg, ["train_dataset.transforms.3.size=1"])
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        apply_opts(cfg, ["model.elu"])


def test_data_root_prefixes_relative_dataset_paths(tmp_path):
    path = write(
        tmp_path / "c.yml",
        """
        data_root: /mnt/data
        train_dataset: {type: MedicalDataset, dataset_root: phantom/pre, result_dir: phantom/out}
        val_dataset: {type: MedicalDataset, dataset_root: /abs/pre}
        """,
    )
    cfg = Config(path)
    assert cfg.train_dataset["dataset_root"] == "/mnt/data/phantom/pre"
    assert cfg.train_dataset["result_dir"] == "/mnt/data/phantom/out"
    assert cfg.val_dataset["dataset_root"] == "/abs/pre"
    # a dumped config loads to the same paths (data_root is applied once)
    cfg.dump(tmp_path / "resolved.yml")
    again = Config(tmp_path / "resolved.yml")
    assert again.to_dict() == cfg.to_dict()


def test_flag_overrides_and_schedule_length(tmp_path):
    path = write(
        tmp_path / "c.yml",
        "iters: 100\nbatch_size: 2\n"
        "lr_scheduler: {type: PolynomialDecay, learning_rate: 0.1, decay_steps: 100}\n",
    )
    cfg = Config(path, iters=10, batch_size=4, learning_rate=0.5)
    assert (cfg.iters, cfg.batch_size, cfg.learning_rate) == (10, 4, 0.5)
    assert cfg.lr_scheduler["decay_steps"] == 10


def test_missing_and_bad_required_keys(tmp_path):
    path = write(tmp_path / "c.yml", "batch_size: two\n")
    cfg = Config(path)
    with pytest.raises(ConfigError, match=r"c.yml at key 'iters': missing required key"):
        cfg.iters
    with pytest.raises(
        ConfigError, match=r"at key 'batch_size': expected a positive integer, got 'two'"
    ):
        cfg.batch_size
    with pytest.raises(ConfigError, match=r"at key 'model': missing required key"):
        cfg.model


def test_unknown_top_level_key_in_a_file_names_the_file(tmp_path):
    write(tmp_path / "base.yml", "iters: 10\nbatch_szie: 4\n")
    path = write(tmp_path / "c.yml", "_base_: base.yml\nbatch_size: 2\n")
    with pytest.raises(ConfigError) as err:
        Config(path)
    message = str(err.value)
    assert f"in {tmp_path / 'base.yml'} at key 'batch_szie'" in message
    assert "unknown top-level key; did you mean 'batch_size'?" in message
    with pytest.raises(ConfigError, match=r"in .*c\.yml at key 'modle'.*did you mean 'model'"):
        Config(write(tmp_path / "c.yml", "modle: {type: VNet}\n"))


def test_unknown_top_level_key_in_opts_names_the_opts(tmp_path):
    path = write(tmp_path / "c.yml", "iters: 10\n")
    with pytest.raises(
        ConfigError, match=r"in --opts 'batch_szie=4' at key 'batch_szie'.*'batch_size'"
    ):
        Config(path, opts=["batch_szie=4"])
    # a known key the file does not set is accepted from --opts
    cfg = Config(path, opts=["inference.tta_axes=[0]", "inference.patch_size=8"])
    assert cfg.inference.tta_axes == (0,) and cfg.inference.patch_size == (8, 8, 8)


def test_every_shipped_config_loads():
    configs = sorted((REPO / "configs").rglob("*.yml"))
    assert len(configs) > 10
    for path in configs:
        Config(path)


def test_wrong_typed_value_names_key_and_source(tmp_path):
    path = write(
        tmp_path / "c.yml",
        "iters: 10\nbatch_size: 2\nlr_scheduler: {type: PolynomialDecay, learning_rate: 0.1}\n",
    )
    with pytest.raises(ConfigError) as err:
        Config(path, opts=["lr_scheduler.learning_rate=fast"]).learning_rate
    message = str(err.value)
    assert "--opts 'lr_scheduler.learning_rate=fast'" in message
    assert "at key 'lr_scheduler.learning_rate': expected a positive number, got 'fast'" in message
    with pytest.raises(ConfigError, match=r"--opts 'iters=many' at key 'iters': expected a posi"):
        Config(path, opts=["iters=many"]).iters
    with pytest.raises(ConfigError, match=r"in .*c\.yml at key 'lr_scheduler.learning_rate'"):
        Config(write(tmp_path / "c.yml", "lr_scheduler: {learning_rate: fast}\n")).learning_rate
    with pytest.raises(ConfigError, match=r"--opts 'learning_rate=fast'.*unknown top-level key"):
        Config(path, opts=["learning_rate=fast"])


def test_dump_writes_resolved_yaml(tmp_path):
    write(tmp_path / "base.yml", "iters: 5\nmodel: {type: VNet, elu: true}\n")
    path = write(tmp_path / "c.yml", "_base_: base.yml\nmodel: {elu: false}\n")
    cfg = Config(path, opts=["iters=7"])
    cfg.dump(tmp_path / "out" / "config.yaml")
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text()) == {
        "iters": 7,
        "model": {"type": "VNet", "elu": False},
    }


def test_inference_window_defaults_to_the_training_patch(tmp_path):
    path = write(
        tmp_path / "c.yml",
        """
        train_dataset:
          type: MedicalDataset
          transforms: [{type: RandomFlip3D}, {type: RandomCrop3D, size: [16, 24, 32]}]
        inference: {overlap: 0.25}
        """,
    )
    settings = Config(path).inference
    assert settings.patch_size == (16, 24, 32) and settings.overlap == 0.25
    assert Config(path, opts=["inference.patch_size=8"]).inference.patch_size == (8, 8, 8)
    with pytest.raises(ConfigError, match=r"--opts 'inference.batch_size=0'.*positive integer"):
        Config(path, opts=["inference.batch_size=0"]).inference
