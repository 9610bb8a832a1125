"""train.run as a library call: what it records and says."""

from __future__ import annotations

import pytest

from mnist_cnn.commands import hydra_override
from mnist_cnn.errors import UserError


@pytest.mark.reliability("TRN2")
def test_an_early_stop_is_said(tiny_data_dir, tmp_path):
    from mnist_cnn.train import compose_config, run

    cfg = compose_config(
        [
            hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal", "~logger",
            "+callbacks.early._target_=lightning.pytorch.callbacks.EarlyStopping",
            "+callbacks.early.monitor=val/acc", "+callbacks.early.mode=max",
            "+callbacks.early.stopping_threshold=0.0",
        ],
        tmp_path / "run",
    )  # fmt: skip
    metrics = run(cfg)
    assert metrics["status"] == "completed"
    assert "by a callback" in metrics["stopped_early"] and metrics["epochs"] < 3


def test_the_best_checkpoint_is_named_by_the_epoch_a_person_counts(tmp_path):
    """Lightning's {epoch} is 0-based; the file says the third epoch as "03", as the progress line
    "epoch 3/3" and a pruned trial's "after epoch 3" do."""
    import torch

    from mnist_cnn.callbacks.checkpoint import BestCheckpoint

    ckpt = BestCheckpoint(dirpath=tmp_path, filename="best-epoch{epoch:02d}",
                          auto_insert_metric_name=False)  # fmt: skip
    name = ckpt.format_checkpoint_name({"epoch": torch.tensor(2), "val/acc": torch.tensor(0.9)})
    assert name == str(tmp_path / "best-epoch03.ckpt")


@pytest.mark.reliability("RD4")
def test_an_epoch_resumed_mid_way_is_timed_from_the_resume(caplog):
    """Lightning calls no on_train_epoch_start for an epoch resumed mid-way: its line once said
    the seconds since the machine booted. It is timed from the resume, and says so."""
    import logging
    from types import SimpleNamespace

    from mnist_cnn.callbacks.progress import EpochLines

    lines = EpochLines()
    trainer = SimpleNamespace(current_epoch=1, max_epochs=3, callback_metrics={})
    with caplog.at_level(logging.INFO):
        lines.on_train_start(trainer, None)  # a resume: straight into epoch 2's second half
        lines.on_train_epoch_end(trainer, None)
        lines.on_train_epoch_start(trainer, None)  # the next epoch, whole
        lines.on_train_epoch_end(trainer, None)
    resumed, whole = [r.getMessage() for r in caplog.records if "epoch 2/3" in r.getMessage()]
    assert resumed.endswith("s since the resume)") and not whole.endswith("since the resume)")
    assert float(resumed.rsplit("(", 1)[1].split()[0]) < 60  # seconds, never the uptime


def _short(tiny_data_dir, *extra: str) -> list[str]:
    return [
        hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal", "~logger",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", *extra,
    ]  # fmt: skip


# the three ways a run validates nothing, and the fix each message names
NO_VALIDATION = [
    ("data.val_split=0", "data.val_split > 0"),
    ("+trainer.limit_val_batches=0", "drop trainer.limit_val_batches"),
    # validation every 2 epochs in a run of 1: it tested the final weights, said in a log line
    ("+trainer.check_val_every_n_epoch=2", "set trainer.check_val_every_n_epoch <= 1"),
]


@pytest.mark.reliability("RA3")
@pytest.mark.parametrize("precision", ["64-true", "bf16-true", "bf16-mixed", "32-true"])
def test_every_precision_the_config_accepts_is_fed_its_dtype(tiny_data_dir, tmp_path, precision):
    """The "-true" precisions cast the weights; the images become floats after Lightning's cast,
    so they once reached the network as float32 ("Input type (float) and bias type (double)")."""
    from mnist_cnn.train import compose_config, run

    cfg = compose_config(_short(tiny_data_dir, f"trainer.precision={precision}"), tmp_path)
    metrics = run(cfg)
    assert metrics["status"] == "completed" and 0 <= metrics["test/acc"] <= 1
    assert metrics["precision"] == precision


@pytest.mark.reliability("RA3")
def test_fp16_weights_with_adam_are_refused_and_with_sgd_they_train(tiny_data_dir, tmp_path):
    from mnist_cnn.config import validate
    from mnist_cnn.train import compose_config, run

    adam = compose_config(_short(tiny_data_dir, "trainer.precision=16-true"), tmp_path / "a")
    with pytest.raises(UserError, match=r"trainer.precision=16-true with Adam: .*16-mixed"):
        validate(adam)
    sgd = compose_config(
        _short(tiny_data_dir, "trainer.precision=16-true", "optimizer=sgd"), tmp_path / "s"
    )
    validate(sgd)
    assert run(sgd)["status"] == "completed"


@pytest.mark.reliability("RA4")
@pytest.mark.parametrize("no_validation,fix", NO_VALIDATION)
@pytest.mark.parametrize("monitor", ["val/acc", "val/loss"])
def test_a_callback_watching_validation_in_a_run_without_it_is_named(
    tiny_data_dir, tmp_path, no_validation, fix, monitor
):
    """It was Lightning's raw RuntimeError at the end of the first epoch."""
    from mnist_cnn.train import compose_config, run

    cfg = compose_config(
        _short(tiny_data_dir, no_validation,
               "+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping",
               f"+callbacks.stop.monitor={monitor}"),
        tmp_path,
    )  # fmt: skip
    with pytest.raises(UserError, match=rf"callbacks.stop.monitor={monitor} but .*{fix}"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()  # refused before training


@pytest.mark.reliability("RA4")
@pytest.mark.parametrize("no_validation,fix", NO_VALIDATION)
def test_the_best_epoch_asked_of_a_run_without_validation_is_named(
    tiny_data_dir, tmp_path, no_validation, fix
):
    """test_ckpt=best with nothing validated, or no callback keeping the best: the run trained
    and tested its final weights, with a warning."""
    from mnist_cnn.config import validate
    from mnist_cnn.train import compose_config, run

    cfg = compose_config(_short(tiny_data_dir, no_validation, "test_ckpt=best"), tmp_path)
    with pytest.raises(UserError, match=rf"^test_ckpt=best tests the best val/acc epoch, .*{fix}"):
        run(cfg)
    assert not (tmp_path / "checkpoints").exists()  # refused before training
    for dropped in ("callbacks=none", "~callbacks.model_checkpoint"):
        cfg = compose_config([*_short(tiny_data_dir, "test_ckpt=best"), dropped], tmp_path)
        with pytest.raises(UserError, match=r"^test_ckpt=best .* keep none; keep callbacks.mo"):
            validate(cfg)
    validate(
        compose_config([*_short(tiny_data_dir, "test_ckpt=best"), "callbacks=minimal"], tmp_path)
    )


@pytest.mark.reliability("RA5")
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_fraction_of_batches_that_rounds_to_none_is_named(tiny_data_dir, tmp_path, split):
    """tiny data: 540 train, 60 val, 200 test digits; one batch each at these sizes. Generated:
    every fraction in (0, 1) of one batch rounds to no batch (Lightning's
    MisconfigurationException, raised after the run had started)."""
    import random

    from mnist_cnn.train import compose_config, run

    fraction = round(random.Random(split).uniform(0.01, 0.99), 3)
    overrides = _short(tiny_data_dir, "data.batch_size=1024", "data.eval_batch_size=1024")
    overrides = [o for o in overrides if "limit_train" not in o]
    cfg = compose_config([*overrides, f"+trainer.limit_{split}_batches={fraction}"], tmp_path)
    with pytest.raises(UserError, match=rf"limit_{split}_batches={fraction} of the {split} "
                       r"split's 1 batch is no batch at all: use a number of batches"):  # fmt: skip
        run(cfg)


@pytest.mark.reliability("RA5")
def test_overfit_batches_that_round_to_no_batch_are_named(tiny_data_dir, tmp_path):
    """Lightning sets limit_train_batches and limit_val_batches to overfit_batches: a fraction
    of the validation split's one batch was its MisconfigurationException naming
    limit_val_batches, a setting the user never gave. Generated fractions of (0, 1)."""
    import random

    from mnist_cnn.train import compose_config, run

    fraction = round(random.Random(7).uniform(0.01, 0.99), 3)
    overrides = [o for o in _short(tiny_data_dir) if "limit_train" not in o]
    cfg = compose_config([*overrides, f"+trainer.overfit_batches={fraction}"], tmp_path)
    with pytest.raises(UserError, match=rf"trainer.overfit_batches={fraction} of the val split's "
                       r"1 batch is no batch at all: use a number of batches"):  # fmt: skip
        run(cfg)


@pytest.mark.reliability("RA1")
@pytest.mark.parametrize(
    "overrides,named",
    [(["++optimizer.momentum=0.9"], "optimizer.momentum is not a setting of Adam"),
     (["optimizer=sgd", "++optimizer.betas=[0.9,0.99]"], "optimizer.betas is not a setting of SGD"),
     (["++model.depth=3"], "model.depth is not a setting of SimpleCNN"),
     (["scheduler=onecycle", "++scheduler.warmup=5"],
      "scheduler.warmup is not a setting of OneCycleLR")],
)  # fmt: skip
def test_a_setting_the_chosen_class_does_not_take_is_named(
    tiny_data_dir, tmp_path, overrides, named
):
    """It was the class's TypeError traceback after the run had started."""
    from mnist_cnn.train import compose_config, run

    cfg = compose_config(_short(tiny_data_dir, *overrides), tmp_path)
    with pytest.raises(UserError, match=rf"{named}: it takes .*; drop it, or choose"):
        run(cfg)


def test_the_data_files_are_checked_once_a_run_and_again_by_the_next(tiny_data_dir, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    """build, fit and test each ask the datamodule to prepare its data; the files are found and
    hashed once a run (they were hashed three times), and every new run checks them again."""
    from mnist_cnn.data import sources
    from mnist_cnn.train import compose_config, run

    checked = []
    real = sources.check_identity
    monkeypatch.setattr(sources, "check_identity", lambda *a: checked.append(a) or real(*a))
    overrides = [hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal",
                 "~logger", "trainer.max_epochs=1"]  # fmt: skip
    for n in (1, 2):
        metrics = run(compose_config(overrides, tmp_path / f"run{n}"))
        assert metrics["status"] == "completed" and "test/acc" in metrics
        assert len(checked) == n, f"run {n}: the files were checked {len(checked)} times in all"


def test_a_failed_check_is_not_remembered(tmp_path):
    """The datamodule remembers only a check that passed: asked again, it looks again."""
    from mnist_cnn.data.mnist import MNISTDataModule

    dm = MNISTDataModule(data_dir=tmp_path, download=False)
    for _ in range(2):
        with pytest.raises(UserError, match="data.download=false"):
            dm.prepare_data()
