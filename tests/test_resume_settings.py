"""A resume continues the run its checkpoint stopped: settings that would change that run are
refused up front, naming each (resumable.py), and the best checkpoint so far carries into the
resumed run's own dir (callbacks/checkpoint.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.runs import SIGNAL_ENV, digests, record, run_train, signal_at
from omegaconf import OmegaConf

from mnist_cnn.commands import hydra_override
from mnist_cnn.errors import UserError
from mnist_cnn.resumable import check_resumable
from mnist_cnn.train import compose_config

# a cross-validated run of the stronger recipe: AdamW on a one-cycle schedule, 10 epochs
BASE = ["experiment=bn_cnn", "data.folds=5", "data.fold=1"]


def _stored(overrides: list[str], tmp_path: Path) -> dict:
    """The config a checkpoint of `python train.py OVERRIDES` carries (resolved, as saved)."""
    cfg = compose_config(overrides, tmp_path / "stored")
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.reliability("R8")
@pytest.mark.parametrize(
    "change,said",
    [
        ("data.fold=2", "data.fold: 1 in the checkpoint, 2 now (use data.fold=1)"),
        ("data.folds=null", "data.folds: 5 in the checkpoint, null now (use data.folds=5)"),
        ("data.batch_size=64", "data.batch_size: 128 in the checkpoint, 64 now"),
        ("seed=7", "seed: 42 in the checkpoint, 7 now (use seed=42)"),
        ("optimizer.lr=0.02", "optimizer.lr: 0.01 in the checkpoint, 0.02 now (use optimizer.lr="),
        ("scheduler.pct_start=0.4", "scheduler.pct_start: 0.25 in the checkpoint, 0.4 now"),
        ("trainer.max_epochs=12", "trainer.max_epochs: 10 in the checkpoint, 12 now"),
        ("data.normalize=true", "data.normalize: false in the checkpoint, true now"),
        ("trainer.devices=2", "trainer.devices: 1 in the checkpoint, 2 now"),
        ("+trainer.limit_train_batches=0.5", "trainer.limit_train_batches: 1.0 in the checkpoint"),
        ("+trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches: 1 in the"),
        ("data.dataset=FashionMNIST", "data.dataset: MNIST in the checkpoint, FashionMNIST now"),
        ("budget_seconds=600", "budget_seconds: null in the checkpoint, 600 now"),
        ("data.augment=null", "data.augment: {degrees:10,translate:0.08,scale:[0.9,1.1]} in the"),
        ("data.augment.degrees=20", "data.augment: {degrees:10,translate:0.08,scale:[0.9,1.1]}"),
        ("label_smoothing=0.1", "label_smoothing: 0.0 in the checkpoint, 0.1 now"),
        ("model.dropout=0.1", "model.dropout: 0.3 in the checkpoint, 0.1 now"),
        ("+trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val: null in the checkpoint"),
        ("+trainer.overfit_batches=2", "trainer.overfit_batches: 0.0 in the checkpoint, 2 now"),
        ("test_ckpt=best callbacks.model_checkpoint.monitor=val/loss",
         "callbacks.model_checkpoint.monitor: val/acc in the checkpoint, val/loss now"),
        ("callbacks=[default,ema]",
         "callbacks.ema: none in the checkpoint, EMAWeightAveraging(decay=0.99) now (use ~"),
    ],
)  # fmt: skip
def test_a_resume_that_would_not_continue_its_run_is_refused_naming_each_setting(
    tmp_path, change, said
):
    stored = _stored(BASE, tmp_path)
    cfg = compose_config([*BASE, *change.split()], tmp_path / "now")
    message = _refusal(stored, cfg)
    assert said in message, message
    assert message.count(" in the checkpoint, ") == 1, message  # seed: not data.seed besides
    _the_advice_resumes(stored, [*BASE, *change.split()], message, tmp_path)


def _refusal(stored: dict, cfg) -> str:
    with pytest.raises(UserError) as refused:
        check_resumable(stored, cfg, "x.ckpt")
    message = str(refused.value)
    assert message.startswith("ckpt_path=x.ckpt: a resume continues the checkpoint's run")
    assert "drop ckpt_path to start a new run" in message
    return message


def _the_advice_resumes(stored: dict, overrides: list[str], message: str, tmp_path) -> None:
    """The overrides each `(use ...)` gives, appended to the command line, are accepted (those a
    `(drop X and use ...)` names dropped first)."""
    advice = re.findall(r"\((?:drop (\S+) and )?use (\S+?)\)(?=[;)])", message)
    assert advice, message
    dropped = {drop for drop, _ in advice}
    advised = [o for o in overrides if o not in dropped] + [use for _, use in advice]
    check_resumable(stored, compose_config(advised, tmp_path / "advised"), "x.ckpt")


@pytest.mark.reliability("R8")
@pytest.mark.parametrize(
    "stored_overrides,now,said",
    [
        (["~scheduler"], [], "scheduler: none in the checkpoint, CosineAnnealingLR now (use ~sch"),
        ([], ["~scheduler"], "CosineAnnealingLR in the checkpoint, none now (drop ~scheduler and"),
        ([], ["optimizer=sgd"], "optimizer: Adam in the checkpoint, SGD now (use optimizer=adam)"),
    ],
)
def test_another_choice_is_refused_with_the_override_that_resumes(
    tmp_path, stored_overrides, now, said
):
    """The advice for a checkpoint without a schedule was `scheduler=null`, which the command
    line refuses (row C4)."""
    stored = _stored(stored_overrides, tmp_path)
    message = _refusal(stored, compose_config(now, tmp_path / "now"))
    assert said in message, message
    _the_advice_resumes(stored, now, message, tmp_path)


@pytest.mark.reliability("R8")
def test_weight_averaging_dropped_or_set_otherwise_on_a_resume_is_refused(tmp_path):
    """Without the callback, Lightning would load the average the checkpoint holds as its
    weights and train on from it: another run, silently."""
    stored = _stored([*BASE, "callbacks=[default,ema]"], tmp_path)
    for now, said in (
        (BASE, "callbacks.ema: EMAWeightAveraging(decay=0.99) in the checkpoint, none now (use "
               "+callbacks.ema={_target_:lightning.pytorch.callbacks.EMAWeightAveraging,"),
        ([*BASE, "callbacks=[default,ema]", "callbacks.ema.decay=0.9"],
         "EMAWeightAveraging(decay=0.99) in the checkpoint, EMAWeightAveraging(decay=0.9) now"),
    ):  # fmt: skip
        message = _refusal(stored, compose_config(now, tmp_path / "now"))
        assert said in message, message
        _the_advice_resumes(stored, now, message, tmp_path)
    # the dashboards beside it may change
    now = compose_config([*BASE, "callbacks=[minimal,ema]"], tmp_path / "now")
    check_resumable(stored, now, "x.ckpt")


@pytest.mark.reliability("R8")
@pytest.mark.parametrize(
    "given", ["+trainer.limit_train_batches=0.5", "+trainer.gradient_clip_val=1.0"]
)
def test_a_setting_given_only_in_the_checkpoint_is_named_with_its_plus(tmp_path, given):
    stored = _stored([*BASE, given], tmp_path)
    message = _refusal(stored, compose_config(BASE, tmp_path / "now"))
    assert f"(use {given})" in message, message
    _the_advice_resumes(stored, BASE, message, tmp_path)


@pytest.mark.reliability("R8")
@pytest.mark.parametrize(
    "stored_overrides,now_overrides",
    [
        # what a run applies as it is: precision, dashboards, threads, loaders, validation
        (BASE, [*BASE, "trainer.precision=32-true", "callbacks=minimal", "threads=1",
                "data.num_workers=2", "data.eval_batch_size=512", "model.init=torch",
                "optimizer.foreach=false", "+trainer.limit_val_batches=0.5", "channels_last=false",
                "+trainer.check_val_every_n_epoch=2", "test_ckpt=best"]),
        # val_split is unused beside folds
        (BASE, [*BASE, "data.val_split=0.3"]),
        # no schedule: a resume may train longer
        (["~scheduler"], ["~scheduler", "trainer.max_epochs=9"]),
        # a budget's plan and fastest_of's choice come from the checkpoint (planning.apply)
        (["budget_seconds=60", "trainer.max_epochs=7"], ["budget_seconds=60"]),
        (["experiment=speedrun", "model.conv1_channels=16", "+trainer.limit_train_batches=0.75"],
         ["experiment=speedrun"]),
    ],
)  # fmt: skip
def test_a_resume_may_change_what_does_not_change_the_run(
    tmp_path, stored_overrides, now_overrides
):
    stored = _stored(stored_overrides, tmp_path)
    check_resumable(stored, compose_config(now_overrides, tmp_path / "now"), "x.ckpt")


def test_an_older_checkpoint_without_a_setting_is_not_refused_for_it(tmp_path):
    stored = _stored(BASE, tmp_path)
    for group, key in (("data", "folds"), ("data", "fold"), ("scheduler", "pct_start")):
        del stored[group][key]
    now = compose_config(["experiment=bn_cnn"], tmp_path / "now")
    check_resumable(stored, now, "x.ckpt")


@pytest.mark.reliability("R9")
@pytest.mark.slow
def test_the_best_checkpoint_so_far_carries_into_the_resumed_run(tiny_data_dir, tmp_path):
    """test_ckpt=best, the best epoch before the stop: the resumed run tests that epoch's weights,
    as the run unbroken does (the first epoch after the resume became the best)."""
    common = [
        hydra_override("data.data_dir", str(tiny_data_dir)), "trainer.max_epochs=5",
        "test_ckpt=best", "callbacks=minimal", "~scheduler", "optimizer.lr=0.02",
    ]  # fmt: skip
    full = run_train(*common, run_dir=tmp_path / "full")
    assert full.returncode == 0, full.stderr[-2000:]
    stopped = run_train(*common, *signal_at(17), run_dir=tmp_path / "stopped", env=SIGNAL_ENV)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    whole = record(tmp_path / "full")
    best_epoch = int(whole["checkpoints"]["best"].removesuffix(".ckpt")[-2:])
    assert best_epoch < 4, f"the test needs a best epoch before the stop (epoch 4): {whole}"
    before = digests(tmp_path / "stopped")
    ckpt = tmp_path / "stopped" / "checkpoints" / "interrupted.ckpt"
    resumed = run_train(*common, hydra_override("ckpt_path", str(ckpt)), run_dir=tmp_path / "res")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = record(tmp_path / "res")
    assert again["checkpoints"]["best"] == whole["checkpoints"]["best"]
    assert again["weights_sha256"] == whole["weights_sha256"]
    assert again["test/acc"] == whole["test/acc"] and again["test/loss"] == whole["test/loss"]
    assert (tmp_path / "res" / whole["checkpoints"]["best"]).is_file()
    assert digests(tmp_path / "stopped") == before
    assert "dirpath has changed" not in resumed.stderr
    # compare.py counts the resumed run once with its unbroken twin, and checks their bits
    from mnist_cnn.compare import compare

    result = compare([str(tmp_path / "full"), str(tmp_path / "res")])
    assert [len(g["runs"]) for g in result["groups"]] == [1]
    (check,) = result["reproducibility"]
    assert check["bit_identical"] and check["runs"] == [str(tmp_path / n) for n in ("full", "res")]
