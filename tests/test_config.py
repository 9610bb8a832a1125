"""Every config group composes; every nonsense value is rejected naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import open_dict

from mnist_cnn.config import validate
from mnist_cnn.errors import UserError

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = {
    group.name: sorted(p.stem for p in group.glob("*.yaml"))
    for group in CONF.iterdir()
    if group.is_dir() and group.name != "hydra"
}


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_default_config_is_the_seed_lab():
    cfg = compose_train()
    assert (cfg.seed, cfg.trainer.max_epochs, cfg.data.batch_size, cfg.data.val_split) == (
        42, 3, 128, 0.1,
    )  # fmt: skip
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.001
    assert cfg.trainer.deterministic is True
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"
    validate(cfg)


@pytest.mark.parametrize("group,option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_train(f"{group}={option}")
    validate(cfg)


def test_any_trainer_argument_can_be_added():
    cfg = compose_train("+trainer.limit_train_batches=0.1", "+trainer.devices=1")
    assert cfg.trainer.limit_train_batches == 0.1 and cfg.trainer.devices == 1


def test_unknown_key_and_unknown_option_are_composition_errors():
    with pytest.raises(ConfigCompositionException, match="lerning_rate"):
        compose_train("lerning_rate=0.1")
    with pytest.raises(ConfigCompositionException, match="resnet"):
        compose_train("model=resnet")


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-0.1", "optimizer.lr"),
        ("optimizer.lr=nan", "optimizer.lr"),
        ("optimizer.lr=inf", "optimizer.lr"),
        ("optimizer.lr=abc", "optimizer.lr"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.batch_size=1.5", "data.batch_size"),
        ("data.num_workers=-1", "data.num_workers"),
        ("data.val_split=1.0", "data.val_split"),
        ("data.val_split=-0.1", "data.val_split"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("trainer.max_epochs=-1", "trainer.max_epochs"),
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("seed=-1", "seed"),
        ("seed=4294967296", "seed"),
        ("seed=1.5", "seed"),
        ("seed=true", "seed"),
        ("test_ckpt=worst", "test_ckpt"),
        ("data.download=maybe", "data.download"),
        ("model.init=he", "model.init"),
        ("threads=0", "threads"),
        ("channels_last=1", "channels_last"),
    ],
)
def test_nonsense_values_are_rejected_naming_the_key(override, key):
    cfg = compose_train(override)
    with pytest.raises(UserError, match=rf"^{key}=.* is invalid: expected "):
        validate(cfg)


def test_all_problems_reported_at_once():
    cfg = compose_train("optimizer.lr=0", "seed=-5")
    with pytest.raises(UserError, match=r"seed=-5 .*; optimizer.lr=0 "):
        validate(cfg)


def test_missing_resume_checkpoint_is_an_error(tmp_path):
    cfg = compose_train()
    with open_dict(cfg):
        cfg.ckpt_path = str(tmp_path / "nope.ckpt")
    with pytest.raises(UserError, match=r"ckpt_path=.*nope.ckpt.*no such checkpoint file"):
        validate(cfg)


def test_edge_values_are_accepted():
    validate(compose_train("seed=0", "data.val_split=0.0", "optimizer.lr=1e-9"))
    validate(compose_train("seed=4294967295", "data.batch_size=1", "trainer.max_epochs=1"))
