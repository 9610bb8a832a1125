"""Every config group composes; every nonsense value is rejected naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.runs import run_train
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict

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


def test_default_config_is_the_keras_lab_with_a_cosine_decay():
    cfg = compose_train()
    assert (cfg.seed, cfg.trainer.max_epochs, cfg.data.batch_size, cfg.data.val_split) == (
        42, 3, 128, 0.1,
    )  # fmt: skip
    assert cfg.model._target_ == "mnist_cnn.models.simple_cnn.SimpleCNN"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.002
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert cfg.trainer.deterministic is True and cfg.trainer.precision == "auto"
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"
    validate(cfg)


@pytest.mark.parametrize("experiment", ["keras_lab", "lab4_vs_lab7"])
def test_the_labs_own_recipe_is_one_override_away(experiment):
    cfg = compose_train(f"experiment={experiment}")
    assert cfg.optimizer.lr == 0.001 and cfg.optimizer.eps == 1e-7  # Keras' Adam defaults
    assert cfg.get("scheduler") is None  # constant, as in the lab
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.data.val_split) == (3, 128, 0.1)


def test_the_five_minute_frontier_is_the_frontier_recipe_on_a_widened_speed_cnn():
    frontier, five = compose_train("experiment=frontier"), compose_train("experiment=frontier_5min")
    assert five.model._target_.endswith("SpeedCNN") and frontier.model._target_.endswith("DeepCNN")
    assert (five.model.conv1_channels, five.model.conv2_channels, five.model.hidden_units) == (
        32,
        64,
        256,
    )
    # five minutes of this machine: the epochs are planned from the budget (planning.py)
    assert (five.budget_seconds, frontier.budget_seconds) == (300, None)
    for cfg in (frontier, five):
        with open_dict(cfg):
            del cfg.model, cfg.budget_seconds
    assert five == frontier  # data, augmentation, optimizer, schedule, smoothing: all shared


@pytest.mark.parametrize("group,option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_train(f"{group}={option}")
    validate(cfg)


def test_exact_fp32_is_one_override_away():
    assert compose_train("trainer=fp32").trainer.precision == "32-true"
    assert compose_train("trainer=fp32", "trainer.max_epochs=5").trainer.max_epochs == 5


def test_any_trainer_argument_can_be_added():
    cfg = compose_train("+trainer.limit_train_batches=0.1", "+trainer.accumulate_grad_batches=2")
    assert cfg.trainer.limit_train_batches == 0.1 and cfg.trainer.accumulate_grad_batches == 2


@pytest.mark.reliability("C1", "C3", "H6")
def test_unknown_key_and_unknown_option_are_composition_errors():
    with pytest.raises(ConfigCompositionException, match="lerning_rate"):
        compose_train("lerning_rate=0.1")
    with pytest.raises(ConfigCompositionException, match="resnet"):
        compose_train("model=resnet")
    # H6: an unknown optimizer is a group option; Hydra lists the valid ones
    with pytest.raises(ConfigCompositionException, match=r"(?s)rmsprop.*adam\n\tadamw\n\tsgd"):
        compose_train("optimizer=rmsprop")


@pytest.mark.reliability("H6")
@pytest.mark.parametrize("dropout", [1.0, -0.1, "abc"])
def test_dropout_outside_its_range_is_rejected(dropout):
    cfg = compose_train("experiment=bn_cnn", f"model.dropout={dropout}")
    with pytest.raises(
        UserError, match=r"^model.dropout=.* is invalid: expected a number in \[0, 1\)"
    ):
        validate(cfg)


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
        ("trainer.precision=bf17", "trainer.precision"),
        ("trainer.precision=fp32", "trainer.precision"),
        ("trainer.devices=0", "trainer.devices"),
        ("trainer.devices=-3", "trainer.devices"),
        ("trainer.devices=[]", "trainer.devices"),
        ("trainer.devices=[-1]", "trainer.devices"),
        ("trainer.num_nodes=0", "trainer.num_nodes"),
        ("trainer.strategy=fsdp9", "trainer.strategy"),
    ],
)
@pytest.mark.reliability("C2", "H1", "H2", "H3", "H4", "H5")
def test_nonsense_values_are_rejected_naming_the_key(override, key):
    cfg = compose_train(override)
    with pytest.raises(UserError, match=rf"^{key}=.* is invalid: expected "):
        validate(cfg)


def test_all_problems_reported_at_once():
    cfg = compose_train("optimizer.lr=0", "seed=-5")
    with pytest.raises(UserError, match=r"seed=-5 .*; optimizer.lr=0 "):
        validate(cfg)


@pytest.mark.reliability("R6")
def test_missing_resume_checkpoint_is_an_error(tmp_path):
    cfg = compose_train()
    with open_dict(cfg):
        cfg.ckpt_path = str(tmp_path / "nope.ckpt")
    with pytest.raises(UserError, match=r"ckpt_path=.*nope.ckpt.*no such checkpoint file"):
        validate(cfg)


def test_edge_values_are_accepted():
    validate(compose_train("seed=0", "data.val_split=0.0", "optimizer.lr=1e-9"))
    validate(compose_train("seed=4294967295", "data.batch_size=1", "trainer.max_epochs=1"))


def test_one_device_is_the_default_and_several_are_accepted():
    cfg = compose_train()
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (1, 1)
    for ok in (
        "trainer.devices=[0]",
        "trainer.devices=2",
        "trainer.devices=auto",
        "trainer.devices=[0,1]",
        "trainer.num_nodes=2",
        "trainer.strategy=ddp_spawn",
    ):
        validate(compose_train(ok))  # fmt: skip


def test_eval_runs_go_under_outputs_eval(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=["ckpt_path=x.ckpt"], return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith(f"{cfg.paths.log_dir}/eval/")
    validate(cfg, ignore=("seed", "ckpt_path"), training=False)


def test_a_checkpoints_bad_value_names_the_checkpoint_not_the_command_line():

    trained = OmegaConf.create({"data": {"eval_batch_size": 0}, "seed": 3})
    with pytest.raises(UserError, match=r"^run/last.ckpt \(its hyper_parameters\): data.eval_"):
        validate(trained, source="run/last.ckpt (its hyper_parameters)")


def test_flatten_takes_any_depth():
    from mnist_cnn.config import flatten

    deep: dict = {"leaf": 1}
    for _ in range(5000):  # far past Python's recursion limit
        deep = {"a": deep}
    flat = flatten(deep)
    assert list(flat.values()) == [1] and list(flat)[0].count(".") == 5000
    assert flatten({"x": {"y": 2}, "z": [1]}, sep="/") == {"x/y": 2, "z": [1]}


@pytest.mark.reliability("VAL1")
@pytest.mark.parametrize(
    "overrides,key",
    [
        (["model.conv1_channels=0"], "model.conv1_channels"),
        (["model.dense_units=-3"], "model.dense_units"),
        (["model=mlp", "model.hidden=[128,0]"], "model.hidden"),
        (["model=deep_cnn", "model.head_channels=0"], "model.head_channels"),
        (["model=deep_cnn", "model.dropout=1"], "model.dropout"),
        (["optimizer=sgd", "optimizer.momentum=-1"], "optimizer.momentum"),
        (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum"),
        (["+optimizer.betas=[0.9,1.2]"], "optimizer.betas"),
        (["optimizer.eps=0"], "optimizer.eps"),
        (["scheduler=onecycle", "scheduler.pct_start=1"], "scheduler.pct_start"),
        (["+trainer.limit_train_batches=0"], "trainer.limit_train_batches"),
        (["+trainer.limit_test_batches=0"], "trainer.limit_test_batches"),
        (["+trainer.limit_test_batches=1.5"], "trainer.limit_test_batches"),
        (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
        (["trainer.accelerator=tpu9"], "trainer.accelerator"),
        (["callbacks.filters.top_k=0"], "callbacks.filters.top_k"),
        (
            ["callbacks.prediction_analysis.num_misclassified=-1"],
            "callbacks.prediction_analysis.num_misclassified",
        ),
    ],
)
def test_values_for_torch_and_lightning_are_checked_first(overrides, key):
    with pytest.raises(UserError, match=rf"(^|; ){key}=.* is invalid: expected "):
        validate(compose_train(*overrides))


@pytest.mark.parametrize("peak", ["0.01", "-1"])
def test_a_second_home_for_the_learning_rate_is_refused(peak):
    """One-cycle peaks at optimizer.lr; a scheduler.max_lr beside it would make one of the two
    a dead setting, so it is refused naming the key that counts."""
    with pytest.raises(UserError, match=r"scheduler.max_lr=.* is not a setting: .*optimizer.lr"):
        validate(compose_train("scheduler=onecycle", f"+scheduler.max_lr={peak}"))


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("VAL1")
def test_a_zero_channel_network_stops_before_anything_loads(tmp_path):
    proc = run_train("model.conv1_channels=0", run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "model.conv1_channels=0 is invalid" in proc.stderr


def test_the_trainer_arguments_known_are_lightnings():
    """trainer_args.TRAINER_ARGS is Lightning's Trainer signature (a Lightning upgrade that adds
    or renames one fails here, not in a user's run)."""
    import inspect

    import lightning as L

    from mnist_cnn.trainer_args import TRAINER_ARGS

    assert set(TRAINER_ARGS) == set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}


HOSTILE_TRAINER = {
    "check_val_every_n_epoch": [0, -1, 1.5, "x"],
    "accumulate_grad_batches": [0, -2, 0.5, True],
    "gradient_clip_val": [-1, -0.5, float("nan"), "big"],
    "gradient_clip_algorithm": ["l2", 1],
    "val_check_interval": [0, 0.0, -1, 1.5, "half"],
    "max_steps": [-2, 0.5],
    "min_epochs": [-1, 1.5],
    "min_steps": [-1],
    "num_sanity_val_steps": [-2, 0.5],
    "reload_dataloaders_every_n_epochs": [-1, 0.5],
    "deterministic": ["yes", 2],
    "detect_anomaly": ["no", 0, None],
    "max_time": [0.0, [], "5 minutes", "00:00:00:00", {"minutes": -1}, {"hours": "x"}],
    "limit_predict_batches": [[0], -1, 1.5],
    "profiler": [float("inf"), "fast"],
    "model_registry": [0.5, ""],
    "barebones": [True],
    "sync_batchnorm": [None],
}


@pytest.mark.reliability("RA1")
@pytest.mark.parametrize(
    "name,value", [(n, v) for n, values in HOSTILE_TRAINER.items() for v in values]
)
def test_every_trainer_argument_a_user_passes_is_checked(name, value):
    """Values Lightning would divide by (zero intervals), or accept and then ignore (a negative
    clip value), are refused naming the setting, before anything runs."""
    rendered = (
        f"'{value}'" if isinstance(value, str)
        else "null" if value is None
        else "{" + ",".join(f"{k}:{v}" for k, v in value.items()) + "}" if isinstance(value, dict)
        else str(value).lower()
    )  # fmt: skip
    with pytest.raises(UserError, match=rf"trainer\.{name}=.* is invalid: expected "):
        validate(compose_train(f"++trainer.{name}={rendered}"))


@pytest.mark.reliability("RA1")
def test_a_trainer_argument_lightning_does_not_have_is_named():
    with pytest.raises(UserError, match=r"trainer.max_epoch is not an argument of Lightning"):
        validate(compose_train("+trainer.max_epoch=3"))
    good = {"gradient_clip_val": "0.5", "accumulate_grad_batches": "2",
            "val_check_interval": "0.25", "check_val_every_n_epoch": "2"}  # fmt: skip
    for name, value in good.items():
        validate(compose_train(f"++trainer.{name}={value}"))


@pytest.mark.reliability("RA1")
@pytest.mark.parametrize("name", ["logger", "callbacks", "plugins", "default_root_dir"])
def test_trainer_arguments_the_project_passes_itself_point_to_their_setting(name):
    """They were ignored (Hydra's instantiate lets the project's keyword win) or clashed."""
    with pytest.raises(UserError, match=rf"trainer.{name} is not set here: "):
        validate(compose_train(f"++trainer.{name}=null"))
    validate(compose_train())  # the config's own default_root_dir (the run dir) is fine


@pytest.mark.reliability("RA1")
def test_a_callback_setting_for_a_callback_not_chosen_is_named():
    """It built a callback with no class: OmegaConf's 'Missing key on_exception' traceback."""
    with pytest.raises(UserError, match=r"callbacks.filters has settings but no _target_"):
        validate(compose_train("callbacks=minimal", "++callbacks.filters.top_k=3"))
    validate(compose_train("callbacks=default", "callbacks.filters.top_k=3"))


@pytest.mark.parametrize("chosen", ["default", "minimal", "none", "[minimal,ema]"])
@pytest.mark.parametrize("flag", ["true", "false", "null"])
@pytest.mark.parametrize(
    "switch,is_one",
    [
        ("enable_checkpointing", lambda target: target.endswith("Checkpoint")),
        ("enable_progress_bar", lambda target: "progress" in target),
    ],
)
def test_callbacks_in_a_run_told_to_do_without_them_are_refused_naming_the_fix(
    chosen, flag, switch, is_one
):
    """Lightning refuses the two together after its imports, with a traceback and exit 1; here
    the settings check names the callbacks and how to drop them, and the run that follows the
    advice composes and validates."""
    overrides = [f"callbacks={chosen}", f"++trainer.{switch}={flag}"]
    cfg = compose_train(*overrides)
    named = [name for name, c in (cfg.callbacks or {}).items()
             if is_one(str(c.get("_target_", "")))]  # fmt: skip
    if flag != "false" or not named:
        validate(cfg)
        return
    with pytest.raises(UserError, match=rf"trainer.{switch}=false, but") as info:
        validate(cfg)
    advice = str(info.value).split("drop them (")[1].split(")")[0].split()
    assert sorted(advice) == sorted(f"~callbacks.{name}" for name in named)
    validate(compose_train(*overrides, *advice))  # the advice works


@pytest.mark.reliability("C4")
@pytest.mark.parametrize("group", ["data", "model", "optimizer", "trainer"])
def test_a_group_every_training_run_needs_removed_is_named(group):
    """`~model` composes (Hydra deletes the group); the run then stopped in a KeyError of its
    build, after its run dir was made. Optional groups may go: `~scheduler`, `~logger`."""
    with pytest.raises(UserError, match=rf"^{group}: removed \(~{group}\), and a training run"):
        validate(compose_train(f"~{group}"))
    # task_name is a name a user may give a run: it turned these checks off (a traceback)
    with pytest.raises(UserError, match=rf"^{group}: removed \(~{group}\), and a training run"):
        validate(compose_train(f"~{group}", "task_name=mine"))
    with pytest.raises(UserError, match=r"test_ckpt=best tests the checkpoint best by the metric"):
        validate(compose_train("test_ckpt=best", "callbacks=none", "task_name=mine"))
    validate(compose_train("~scheduler", "~logger", "~callbacks"))


@pytest.mark.reliability("C5")
@pytest.mark.parametrize("callback", ["model_checkpoint", "early"])
def test_a_watched_metric_that_no_run_logs_or_watched_the_wrong_way_is_named(callback):
    """`monitor=val/loss` under the default's mode=max kept the highest loss as the best, and
    `mode=min` the lowest accuracy; a name no run logs (`val_acc`) was Lightning's
    MisconfigurationException after the first epoch."""
    import random

    from mnist_cnn.group_checks import MONITORED

    key = f"callbacks.{callback}"
    added = [f"+{key}._target_=lightning.pytorch.callbacks.EarlyStopping"] * (callback == "early")
    rng = random.Random(5)
    for monitor, better in MONITORED.items():
        worse = {"max": "min", "min": "max"}[better]
        wrong = compose_train(*added, f"++{key}.monitor={monitor}", f"++{key}.mode={worse}")
        with pytest.raises(UserError) as refused:
            validate(wrong)
        fix = f"{key}.mode={better}"
        assert f"{key}.mode={worse} keeps the worst {monitor} as the best" in str(refused.value)
        assert f"set {fix}" in str(refused.value)
        validate(compose_train(*added, f"++{key}.monitor={monitor}", f"++{fix}"))
    letters = "abcdefghijklmnopqrstuvwxyz/_"
    for monitor in ["val_acc", "Val/acc", "test/acc", "val/accuracy"] + [
        "".join(rng.choice(letters) for _ in range(rng.randint(1, 12))) for _ in range(5)
    ]:
        if monitor in MONITORED or monitor.strip("/_") != monitor:
            continue
        unknown = compose_train(*added, f"++{key}.monitor={monitor}", f"++{key}.mode=max")
        with pytest.raises(UserError, match=rf"{key}.monitor='{monitor}' is not a metric a "):
            validate(unknown)


@pytest.mark.reliability("C5")
def test_the_best_checkpoint_by_another_metric_may_be_tested():
    validate(compose_train("test_ckpt=best", "callbacks.model_checkpoint.monitor=val/loss",
                           "callbacks.model_checkpoint.mode=min"))  # fmt: skip


@pytest.mark.reliability("RA4")
@pytest.mark.parametrize(
    "told,said",
    [
        ("callbacks.model_checkpoint.save_top_k=0", "callbacks.model_checkpoint.save_top_k=0"),
        ("+callbacks.model_checkpoint.every_n_epochs=5", "checkpoint.every_n_epochs=5 (of 3 "),
        ("+callbacks.model_checkpoint.every_n_epochs=0", "checkpoint.every_n_epochs=0 (of 3 "),
    ],
)
def test_the_best_epoch_asked_of_a_callback_told_to_keep_none_is_named(told, said):
    """The run trained, logged a line and tested its final weights."""
    with pytest.raises(UserError) as refused:
        validate(compose_train("test_ckpt=best", told))
    assert said in str(refused.value) and "keeps none; drop it, or test_ckpt=final" in str(
        refused.value
    )
    validate(compose_train("test_ckpt=final", told))
    validate(compose_train("test_ckpt=best", told, "trainer.max_epochs=5") if "=5" in told else
             compose_train("test_ckpt=best"))  # fmt: skip
