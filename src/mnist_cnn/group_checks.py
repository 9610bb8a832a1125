"""Checks of the config groups that are mappings of their own (the callbacks chosen, the
augmentation), beside config.RULES' one-value checks."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.config import _is_real

# the config groups a training run cannot do without
REQUIRED_GROUPS = ("data", "model", "optimizer", "trainer")
# a Trainer switch, and what tells the callbacks Lightning refuses beside it off (by class name)
_SWITCHED_OFF = {
    "enable_checkpointing": (lambda cls: cls.endswith("Checkpoint"), "save checkpoints"),
    "enable_progress_bar": (lambda cls: "progress" in cls.lower(), "draw a progress bar"),
}


def callback_problems(cfg: DictConfig) -> list[str]:
    """A callback setting given for a callback the chosen set does not include (`callbacks=
    minimal` then `++callbacks.filters.top_k=3`) builds a callback with no class; checkpoint
    or progress-bar callbacks in a run told to do without them."""
    callbacks = cfg.get("callbacks")
    if not isinstance(callbacks, DictConfig):
        return []
    problems = [
        f"callbacks.{name} has settings but no _target_: the callbacks chosen "
        f"(callbacks={_chosen(cfg)}) do not include it; choose a set that does (callbacks="
        f"default) or give its class (+callbacks.{name}._target_=...)"
        for name, callback in callbacks.items()
        if isinstance(callback, DictConfig) and "_target_" not in callback
    ]
    # Lightning refuses these callbacks in a Trainer told to do without what they do, with its
    # own traceback after the imports; which callbacks they are is known from their classes' names
    for flag, (is_one, what) in _SWITCHED_OFF.items():
        if OmegaConf.select(cfg, f"trainer.{flag}") is not False:
            continue
        named = [f"callbacks.{name}" for name, callback in callbacks.items()
                 if isinstance(callback, DictConfig)
                 and is_one(str(callback.get("_target_", "")).rsplit(".", 1)[-1])]  # fmt: skip
        if named:
            problems.append(
                f"trainer.{flag}=false, but the callbacks chosen (callbacks={_chosen(cfg)}) "
                f"{what} ({', '.join(named)}); drop them ({' '.join('~' + n for n in named)}) "
                "or choose callbacks=none"
            )
    return problems + _monitor_problems(callbacks)


# what a training run logs (module.py), each with the direction that is better
MONITORED = {
    "val/acc": "max", "val/loss": "min", "train/acc": "max", "train/loss": "min",
    "train/batch_loss": "min",
}  # fmt: skip


def _monitor_problems(callbacks: DictConfig) -> list[str]:
    """A checkpoint or early-stopping callback watching a metric no run logs (Lightning's
    MisconfigurationException after the first epoch), or watching one the wrong way round
    (`monitor=val/loss` under the default's mode=max kept the highest loss as the best)."""
    problems = []
    for name, callback in callbacks.items():
        if not isinstance(callback, DictConfig) or callback.get("monitor") is None:
            continue
        monitor, mode = callback.get("monitor"), callback.get("mode", "min")  # Lightning's
        if monitor not in MONITORED:
            problems.append(
                f"callbacks.{name}.monitor={monitor!r} is not a metric a training run logs; "
                f"watch one of {', '.join(MONITORED)}"
            )
        elif mode != MONITORED[monitor]:
            better = "higher" if MONITORED[monitor] == "max" else "lower"
            problems.append(
                f"callbacks.{name}.mode={mode} keeps the worst {monitor} as the best, and a "
                f"{better} {monitor} is better; set callbacks.{name}.mode={MONITORED[monitor]}"
            )
    return problems


def _chosen(cfg: DictConfig) -> str:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get("callbacks", "?"))
    return "?"


def augment_problems(cfg: DictConfig) -> list[str]:
    augment = OmegaConf.select(cfg, "data.augment")
    if augment is None:
        return []
    if not isinstance(augment, DictConfig):
        return [f"data.augment={augment!r} is invalid: expected null or a mapping"]
    checks = {
        "degrees": (lambda v: _is_real(v) and 0 <= v <= 180, "a number in [0, 180]"),
        "translate": (lambda v: _is_real(v) and 0 <= v < 0.5, "a number in [0, 0.5)"),
        "scale": (
            lambda v: len(v) == 2 and all(_is_real(x) and x > 0 for x in v) and v[0] <= v[1],
            "[low, high] with 0 < low <= high",
        ),
    }
    problems = [
        f"data.augment.{key} is not a setting: use {', '.join(checks)}"
        for key in augment
        if key not in checks
    ]
    for key, (ok, expected) in checks.items():
        value = augment.get(key)
        if value is not None and not ok(value):
            problems.append(f"data.augment.{key}={value!r} is invalid: expected {expected}")
    return problems


def run_problems(cfg: DictConfig) -> list[str]:
    """What a training run asked for needs: the groups every run needs, removed (`~model`; the
    run stopped in a KeyError of its build, after its run dir was made), a callback keeping
    the best checkpoint where test_ckpt=best (it tested the final weights, warned), and the
    search's trial where optuna.* name one."""
    problems = [
        f"{group}: removed (~{group}), and a training run needs one; choose one of "
        f"conf/{group}/ ({group}=NAME) or drop ~{group}"
        for group in REQUIRED_GROUPS
        if cfg.get(group) is None
    ]
    watching = {
        name: callback
        for name, callback in (cfg.get("callbacks") or {}).items()
        if isinstance(callback, DictConfig) and callback.get("monitor") is not None
        and str(callback.get("_target_", "")).endswith("Checkpoint")
    }  # fmt: skip
    if cfg.get("test_ckpt") == "best" and not watching:
        problems.append(
            "test_ckpt=best tests the checkpoint best by the metric its callback watches (val/acc "
            f"in callbacks=default and minimal), and the callbacks chosen (callbacks="
            f"{_chosen(cfg)}) keep none; keep callbacks.model_checkpoint, or test_ckpt=final"
        )
    elif cfg.get("test_ckpt") == "best":
        problems += _keeping_none(watching, OmegaConf.select(cfg, "trainer.max_epochs"))
    from mnist_cnn.search.trials import trial_problems  # optuna.* given by hand

    return problems + trial_problems(cfg)


def _keeping_none(watching: dict[str, DictConfig], epochs: Any) -> list[str]:
    """Checkpoint callbacks told to keep no file in this run, where test_ckpt=best needs one (it
    tested the final weights, said in a log line)."""
    kept = []
    for name, callback in watching.items():
        every = callback.get("every_n_epochs")
        if callback.get("save_top_k", 1) == 0:
            kept.append(f"callbacks.{name}.save_top_k=0")
        elif every == 0 or (isinstance(every, int) and isinstance(epochs, int) and every > epochs):
            kept.append(f"callbacks.{name}.every_n_epochs={every} (of {epochs} epochs)")
    if len(kept) < len(watching):
        return []
    return [
        f"test_ckpt=best tests the best checkpoint, and {', '.join(kept)} keeps none; drop it, "
        "or test_ckpt=final"
    ]


def fold_problems(cfg: DictConfig) -> list[str]:
    """data.fold names one of data.folds; without folds it must stay 0 (it would be ignored)."""
    folds = OmegaConf.select(cfg, "data.folds")
    fold = OmegaConf.select(cfg, "data.fold")
    if not isinstance(fold, int) or isinstance(fold, bool) or fold < 0:
        return []  # config.RULES names it
    if folds is None and fold != 0:
        return [f"data.fold={fold} without data.folds: give data.folds=K (e.g. 5) to "
                "cross-validate, or drop data.fold"]  # fmt: skip
    if isinstance(folds, int) and folds >= 2 and fold >= folds:
        return [f"data.fold={fold} is not a fold of data.folds={folds}: use 0 to {folds - 1}"]
    if folds is not None and "data.val_split" in given_on_command_line():
        return [f"data.val_split={OmegaConf.select(cfg, 'data.val_split')} beside data.folds="
                f"{folds}: with folds, fold data.fold validates and val_split is unused; drop "
                "one"]  # fmt: skip
    return []


def plan_problems(cfg: DictConfig, source: str | None = None) -> list[str]:
    """budget_seconds and fastest_of plan before the run. A budget plans in every rank of a
    several-process run, the ranks taking rank 0's measurement (planning.py); fastest_of
    measures candidates one process at a time (fastest.py). The two answer opposite questions
    (the most in a time, the least time to a target): one at a time."""
    budget = OmegaConf.select(cfg, "budget_seconds")
    candidates = OmegaConf.select(cfg, "fastest_of")
    if budget is None and candidates is None:
        return []
    from mnist_cnn import fastest

    found = fastest.problems(cfg, source)
    if budget is not None and candidates is not None:
        found.append(
            f"budget_seconds={budget} and fastest_of are both set: a budget plans the most "
            "training in a time, fastest_of the least time to the recipe's target; drop one "
            "(budget_seconds=null or fastest_of=null)"
        )
    lengths = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time")
    for length in sorted(set(lengths) & given_on_command_line()) if budget is not None else ():
        found.append(
            f"budget_seconds={budget} plans the run's length (trainer.max_epochs), and the "
            f"command line gives {length}={OmegaConf.select(cfg, length)} too; drop one "
            f"(budget_seconds=null trains to your {length.split('.')[1]})"
        )
    world = _world(cfg)
    if candidates is not None and world > 1:
        found.append(
            f"fastest_of chooses in one process, and this run has {world} (trainer.devices x "
            "trainer.num_nodes); choose with one process (trainer.devices=1) and train the "
            "ranks with the settings it chose (metrics.json plan.reproduce)"
        )
    return found


def _world(cfg: DictConfig) -> int:
    """trainer.devices x trainer.num_nodes, where both are what they should be (their own checks
    say the rest)."""
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    nodes = OmegaConf.select(cfg, "trainer.num_nodes", default=1)
    count = devices if isinstance(devices, int) else 1 if devices == "auto" else len(devices)
    return count * (nodes if isinstance(nodes, int) and nodes > 0 else 1)


def given_on_command_line() -> set[str]:
    """The keys this job's command line sets (a sweep job's own values included); empty outside
    a Hydra run (run() called from Python)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task}
