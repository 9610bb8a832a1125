"""Preflight: the device, the scale and its launcher, and eval's one process, checked before
Lightning loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.runs import run_train
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mnist_cnn.errors import UserError


@pytest.mark.reliability("VAL2")
def test_a_gpu_that_is_not_there_is_named_before_lightning_loads(tmp_path, monkeypatch):
    from mnist_cnn.preflight import check_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for accelerator in ("gpu", "cuda"):
        with pytest.raises(UserError, match=rf"^trainer.accelerator={accelerator}: no CUDA GPU"):
            check_accelerator(OmegaConf.create({"trainer": {"accelerator": accelerator}}))
    check_accelerator(OmegaConf.create({"trainer": {"accelerator": "cpu"}}))
    if (
        not torch.cuda.is_available.__wrapped__()
        if hasattr(torch.cuda.is_available, "__wrapped__")
        else True
    ):
        pass


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("VAL2")
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_train_py_without_a_gpu_says_so_with_exit_2(tmp_path):
    proc = run_train("trainer.accelerator=gpu", run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "trainer.accelerator=gpu: no CUDA GPU is visible" in proc.stderr


CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(
    "env,overrides,ok",
    [
        ({"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "WORLD_SIZE": "4"}, ["trainer.devices=2"], 0),
        (
            {"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "4"},
            ["trainer.devices=2", "trainer.num_nodes=2"],
            1,
        ),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, ["trainer.devices=1"], 0),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, ["trainer.devices=2"], 1),
    ],
)
@pytest.mark.reliability("RE3")
def test_ranks_started_from_outside_must_match_devices_times_nodes(monkeypatch, env, overrides, ok):
    """torchrun and srun decide how many ranks there are; trainer.devices x num_nodes must say
    the same, checked before anything is written (a real torchrun pair: test_distributed)."""
    from mnist_cnn.preflight import check_scale

    for name in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = compose_train("trainer.accelerator=cpu", *overrides)
    if ok:
        check_scale(cfg)
    else:
        with pytest.raises(UserError, match=r"the launcher \(torchrun or srun\) started \d"):
            check_scale(cfg)


@pytest.mark.parametrize(
    "env,overrides",
    [
        ({}, ["trainer.devices=2"]),
        ({}, ["trainer.num_nodes=2"]),
        ({"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2"}, []),
    ],
)
def test_eval_refuses_several_processes_up_front(monkeypatch, env, overrides):
    """eval.py tests in one process: several devices, nodes, or ranks started by torchrun are
    refused before anything is read or written (its second rank once claimed the run dir)."""
    from hydra import compose, initialize_config_dir

    from mnist_cnn.preflight import check_one_process

    for name in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=["ckpt_path=x.ckpt", *overrides])
    with pytest.raises(UserError, match=r"eval.py tests in one process \(trainer.devices="):
        check_one_process(cfg)


def _links(tmp_path: Path, layout: str) -> Path:
    """A data.data_dir whose links loop or lead nowhere, built for `layout`."""
    root = tmp_path / "data"
    if layout == "data_dir is a loop":
        (tmp_path / "b").symlink_to(root)
        root.symlink_to(tmp_path / "b")
    elif layout == "raw links to itself":
        (root / "MNIST").mkdir(parents=True)
        (root / "MNIST" / "raw").symlink_to(root / "MNIST" / "raw")
    elif layout == "raw links nowhere":
        (root / "MNIST").mkdir(parents=True)
        (root / "MNIST" / "raw").symlink_to(tmp_path / "gone")
    return root


@pytest.mark.reliability("RE2")
@pytest.mark.parametrize(
    "layout", ["data_dir is a loop", "raw links to itself", "raw links nowhere"]
)
def test_data_dir_links_that_loop_or_lead_nowhere_are_named(tmp_path, layout):
    from mnist_cnn.preflight import check_data_links

    root = _links(tmp_path, layout)
    cfg = compose_train(f"data.data_dir={root}")
    expected = "does not exist" if "nowhere" in layout else "is a symbolic link loop"
    with pytest.raises(UserError, match=rf"data.data_dir={root}: .* {expected}; point"):
        check_data_links(cfg)


@pytest.mark.reliability("RE2")
@pytest.mark.slow  # a train.py subprocess (it stops before the heavy imports)
def test_train_py_names_a_data_dir_link_loop_with_exit_2(tmp_path):
    root = _links(tmp_path, "raw links to itself")
    proc = run_train(f"data.data_dir={root}", run_dir=tmp_path / "run", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "MNIST/raw is a symbolic link loop" in proc.stderr


# Trainer arguments a test reads (trainer.test), each beside TRAINING_ONLY's: every argument of
# Lightning's Trainer is in one list or the other
READ_BY_A_TEST = (
    "accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks",
    "fast_dev_run", "limit_test_batches", "limit_predict_batches", "enable_checkpointing",
    "enable_progress_bar", "enable_model_summary", "deterministic", "benchmark",
    "inference_mode", "use_distributed_sampler", "profiler", "plugins", "barebones",
    "default_root_dir", "enable_autolog_hparams", "model_registry",
)  # fmt: skip


@pytest.mark.reliability("VAL5")
def test_eval_refuses_each_training_setting_and_keeps_the_tests_own():
    """`eval.py trainer.max_epochs=5` and the like were accepted and unused."""
    import inspect
    import random

    import lightning.pytorch as pl

    from mnist_cnn.preflight import TRAINING_ONLY, check_no_training_settings

    trainer_args = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    training = {key.removeprefix("trainer.") for key in TRAINING_ONLY if key.startswith("trainer.")}
    assert training | set(READ_BY_A_TEST) == trainer_args and not training & set(READ_BY_A_TEST)
    rng = random.Random(5)
    for key in TRAINING_ONLY:
        value = rng.choice([1, 2, 7, 0.5])
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            base = compose("eval", overrides=["ckpt_path=x.ckpt"])
            plus = "" if OmegaConf.select(base, key) is not None or key == "data.augment" else "+"
            cfg = compose("eval", overrides=["ckpt_path=x.ckpt", f"{plus}{key}={value}"])
        with pytest.raises(UserError, match=rf"^{key}={value}: eval.py tests a checkpoint and "):
            check_no_training_settings(cfg, {key})
    # several at once: each named; the test's own settings and ckpt_path pass
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=["ckpt_path=x.ckpt", "trainer.max_epochs=9"])
    given = {"trainer.max_epochs", "data.batch_size", "ckpt_path", "trainer.precision"}
    with pytest.raises(UserError, match=r"^data.batch_size=128, trainer.max_epochs=9: "):
        check_no_training_settings(cfg, given)
    kept = {"ckpt_path", "tta", "threads", "data.data_dir", "data.num_workers", "callbacks"}
    check_no_training_settings(cfg, kept | {f"trainer.{name}" for name in READ_BY_A_TEST})


@pytest.mark.reliability("VAL5")
def test_eval_refuses_callbacks_that_act_only_while_a_run_trains():
    """`eval.py callbacks=[evaluate,ema]` tested the checkpoint's weights as they were: the
    average, if its run averaged, and never an average of its own."""
    import lightning.pytorch.callbacks as lc

    from mnist_cnn.callbacks.kinds import TRAINING_ONLY
    from mnist_cnn.preflight import check_no_training_settings

    def composed(*overrides):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("eval", overrides=["ckpt_path=x.ckpt", *overrides])

    refused = composed("callbacks=[evaluate,ema]")
    with pytest.raises(UserError, match=r"^callbacks.ema \(EMAWeightAveraging\): eval.py tests"):
        check_no_training_settings(refused, {"callbacks"})
    for name in sorted(TRAINING_ONLY):
        assert isinstance(getattr(lc, name), type), name  # a class Lightning has
        cfg = composed(f"+callbacks.x._target_=lightning.pytorch.callbacks.{name}")
        with pytest.raises(UserError, match=rf"^callbacks.x \({name}\): "):
            check_no_training_settings(cfg, set())
    # callbacks that may act in a test, and the test's dashboards, are the test's own
    for name in ("LambdaCallback", "BatchSizeFinder", "Timer", "ModelCheckpoint"):
        check_no_training_settings(
            composed(f"+callbacks.x._target_=lightning.pytorch.callbacks.{name}"), set()
        )
    check_no_training_settings(composed(), set())
