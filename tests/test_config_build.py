"""The shipped configs build their components, and building errors name the key."""

import textwrap
from pathlib import Path

import pytest
import torch

from medseg.cvlibs import DATASETS, MODELS, Config, ConfigError
from medseg.models.losses import CrossEntropyLoss, DiceLoss, MixedLoss, build_losses
from medseg.optim import build_lr_scheduler, build_optimizer

REPO = Path(__file__).resolve().parents[1]
LUNG = REPO / "configs/lung_coronavirus/vnet_lung_coronavirus_128_128_128_15k.yml"
SPINE = REPO / "configs/mri_spine_seg/vnet_mri_spine_seg_512_512_12_15k.yml"
SPINE_DEEPSUP = REPO / "configs/mri_spine_seg/vnetdeepsup_mri_spine_seg_512_512_12_15k.yml"


def test_lung_chain_builds_model_loss_optimizer_scheduler():
    cfg = Config(LUNG)
    assert cfg.batch_size == 6 and cfg.iters == 15000
    assert cfg.train_dataset["dataset_root"] == "data/lung_coronavirus/lung_coronavirus_phase0"
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == "VNet" and model.num_classes == 3
    loss = build_losses(cfg.loss, ignore_index=255)
    assert loss["coef"] == [1.0]
    (mixed,) = loss["types"]
    assert isinstance(mixed, MixedLoss)
    assert [type(m) for m in mixed.losses] == [CrossEntropyLoss, DiceLoss]
    # the loss sets no ignore_index, so it takes the dataset's (MedicalSeg default 255)
    assert all(m.ignore_index == 255 for m in mixed.losses)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.learning_rate)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in model.parameters())
    scheduler = build_lr_scheduler(cfg.lr_scheduler, optimizer, cfg.iters)
    assert scheduler.optimizer is optimizer
    assert group["lr"] == pytest.approx(1e-3)
    assert scheduler.lr_at(15000) == pytest.approx(0.0)
    assert scheduler.lr_at(7500) == pytest.approx(1e-3 * 0.5**0.9)


def test_building_never_mutates_the_config():
    cfg = Config(LUNG)
    before = cfg.to_dict()
    node = cfg.optimizer
    model = MODELS.build(cfg.model)
    build_lr_scheduler(cfg.lr_scheduler, build_optimizer(node, model, 1e-3), cfg.iters)
    build_losses(cfg.loss)
    assert cfg.to_dict() == before and cfg.optimizer == node


def test_lung_with_opts():
    cfg = Config(
        LUNG,
        opts=[
            "model.elu=true",
            "model.base_channels=4",
            "optimizer={type: adamw, weight_decay: 0.01}",
            "lr_scheduler.learning_rate=0.01",
            "train_dataset.transforms.0.size=[64,64,64]",
        ],
    )
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000  # width 4 (64.5M at 16)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.learning_rate)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert cfg.train_dataset["transforms"][0]["size"] == [64, 64, 64]


def test_spine_configs_build_anisotropic_vnet_and_deep_supervision():
    model = MODELS.build(Config(SPINE, opts=["model.base_channels=4"]).model)
    out = model.eval()(torch.zeros(1, 1, 32, 32, 8))
    assert out.shape == (1, 20, 32, 32, 8)

    cfg = Config(SPINE_DEEPSUP, opts=["model.base_channels=4"])
    losses = build_losses(cfg.loss, ignore_index=255)
    assert losses["coef"] == [0.25, 0.25, 0.25, 0.25]
    outputs = MODELS.build(cfg.model).train()(torch.zeros(1, 1, 32, 32, 8))
    assert len(outputs) == 4
    from medseg.models.losses.computation import loss_computation

    labels = torch.zeros(1, 32, 32, 8, dtype=torch.long)
    total, terms = loss_computation(outputs, labels, losses)
    assert torch.isfinite(total) and set(terms) >= {"CrossEntropyLoss", "DiceLoss"}


def write(tmp_path, text):
    path = tmp_path / "c.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_unknown_type_lists_names_and_suggests(tmp_path):
    cfg = Config(write(tmp_path, "model: {type: VNett, num_classes: 2}\n"))
    with pytest.raises(ConfigError) as err:
        MODELS.build(cfg.model)
    message = str(err.value)
    assert "c.yml at key 'model.type'" in message
    assert "Did you mean 'VNet'" in message and "UNet3D" in message


def test_unknown_nested_type_names_the_list_item(tmp_path):
    cfg = Config(
        write(
            tmp_path,
            """
            iters: 1
            loss:
              types:
                - type: MixedLoss
                  losses: [{type: CrossEntropyLoss}, {type: DiceLos}]
                  coef: [1, 1]
            """,
        )
    )
    with pytest.raises(ConfigError, match=r"loss.types.0.losses.1.type.*Did you mean 'DiceLoss'"):
        build_losses(cfg.loss)


def test_unexpected_argument_names_it_and_the_accepted_ones(tmp_path):
    cfg = Config(
        write(tmp_path, "model: {type: UNet3D, in_channels: 1, num_classes: 2, depth: 3}\n")
    )
    with pytest.raises(ConfigError) as err:
        MODELS.build(cfg.model)
    message = str(err.value)
    assert "at key 'model.depth'" in message
    assert "UNet3D takes no argument 'depth'" in message and "num_levels" in message


def test_missing_required_argument(tmp_path):
    cfg = Config(write(tmp_path, "model: {type: UNet3D, in_channels: 1}\n"))
    with pytest.raises(ConfigError, match=r"key 'model'.*UNet3D needs argument\(s\) num_classes"):
        MODELS.build(cfg.model)


def test_constructor_value_error_is_wrapped_with_key(tmp_path):
    cfg = Config(
        write(tmp_path, "model: {type: UNet3D, in_channels: 1, num_classes: 2, norm: layer}\n")
    )
    with pytest.raises(ConfigError, match=r"at key 'model': UNet3D: .*layer"):
        MODELS.build(cfg.model)


def test_bad_optimizer_argument(tmp_path):
    cfg = Config(
        write(
            tmp_path,
            """
            model: {type: UNet3D, in_channels: 1, num_classes: 2, base_channels: 4}
            optimizer: {type: SGD, momentum: 0.9, beta: 3}
            lr_scheduler: {type: PolynomialDecay, learning_rate: 0.1, decay_steps: 10}
            """,
        )
    )
    with pytest.raises(
        ConfigError, match=r"key 'optimizer.beta'.*takes no argument 'beta'.*momentum"
    ):
        build_optimizer(cfg.optimizer, MODELS.build(cfg.model), cfg.learning_rate)


def test_scheduler_length_defaults_to_iters(tmp_path):
    cfg = Config(
        write(
            tmp_path,
            """
            iters: 40
            model: {type: UNet3D, in_channels: 1, num_classes: 2, base_channels: 4}
            optimizer: {type: adam}
            lr_scheduler: {type: PolynomialDecay, learning_rate: 0.1, power: 1.0}
            """,
        )
    )
    model = MODELS.build(cfg.model)
    optimizer = build_optimizer(cfg.optimizer, model, cfg.learning_rate)
    assert build_lr_scheduler(cfg.lr_scheduler, optimizer, cfg.iters).lr_at(20) == pytest.approx(
        0.05
    )


def test_grad_clip_norm(tmp_path):
    cfg = Config(
        write(
            tmp_path,
            """
            model: {type: UNet3D, in_channels: 1, num_classes: 2, base_channels: 4}
            optimizer: {type: sgd, grad_clip_norm: 2.5}
            lr_scheduler: {type: PolynomialDecay, learning_rate: 0.1, decay_steps: 10}
            """,
        )
    )
    assert cfg.grad_clip_norm == 2.5
    model = MODELS.build(cfg.model)
    assert isinstance(build_optimizer(cfg.optimizer, model, cfg.learning_rate), torch.optim.SGD)


def test_unknown_nested_transform_suggests_from_the_transforms(tmp_path):
    path = write(tmp_path, "train_dataset: {type: MedicalDataset, transforms: [type: RandomFlip]}")
    cfg = Config(path, opts=["train_dataset.dataset_root=/nowhere"])
    with pytest.raises(ConfigError) as err:
        DATASETS.build(cfg.train_dataset)
    message = str(err.value)
    assert "--opts 'train_dataset.dataset_root=/nowhere'" not in message  # the key is the file's
    assert "c.yml at key 'train_dataset.transforms.0.type'" in message
    assert "unknown transforms type 'RandomFlip'. Did you mean 'RandomFlip3D'?" in message
