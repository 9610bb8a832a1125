"""Optuna searches: the search space from Hydra's override grammar, the study opened (or joined)
after every setting is checked, and what a person reads at the end (best.yaml, plots).

The sweeper plugin (hydra_plugins/mnist_cnn_optuna) drives a study through these; a trial's job
reports to it through callbacks/pruning.py. Nothing in the database changes before every check
has passed.
"""

from __future__ import annotations

import difflib
import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.errors import UserError

log = logging.getLogger(__name__)

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SPACE_ATTR = "mnist_cnn:search_space"  # the study's space, kept in the database
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Param:
    """One searched setting: its config key and Optuna distribution."""

    key: str
    distribution: Any  # optuna.distributions.BaseDistribution

    def describe(self) -> str:
        from optuna.distributions import distribution_to_json

        return distribution_to_json(self.distribution)


def parse_space(params: Mapping[str, Any] | None, config: DictConfig) -> list[Param]:
    """hydra.sweeper.params ({key: "interval(0.0001, 0.01)"}) as Optuna distributions:
    interval(a, b) (floats; ints when both ends are ints; tag(log, ...) samples on a log scale),
    range(a, b[, step]) (b excluded) and choice(...). Each key must be a setting of the config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if not params or not isinstance(params, Mapping):
        raise UserError(
            "hydra.sweeper.params is empty: name at least one setting to search, "
            "e.g. hydra.sweeper.params={optimizer.lr:'tag(log, interval(1e-4, 1e-2))'}"
        )
    from mnist_cnn.config import flatten

    if OmegaConf.is_config(params):
        params = OmegaConf.to_container(params)
    parser = OverridesParser.create()
    space = []
    for key, text in flatten(params, sep=".").items():  # {optimizer: {lr: x}} or {optimizer.lr: x}
        where = f"hydra.sweeper.params.{key}"
        _check_key(key, config, where)
        try:
            (override,) = parser.parse_overrides([f"{key}={text}"])
        except Exception as exc:  # Hydra's grammar error names the position
            raise UserError(f"{where}={text!r} cannot be parsed: {exc}") from None
        sweep = override.value()
        tags = getattr(sweep, "tags", set()) or set()
        log_scale = "log" in tags
        if isinstance(sweep, IntervalSweep):
            low, high = sweep.start, sweep.end
            if not low < high:
                raise UserError(f"{where}={text!r} is an empty range: {low} is not below {high}")
            if log_scale and low <= 0:
                raise UserError(f"{where}={text!r}: a log scale needs a start above 0")
            whole = isinstance(low, int) and isinstance(high, int) and "float" not in tags
            dist = (
                IntDistribution(low, high, log=log_scale)
                if whole
                else FloatDistribution(float(low), float(high), log=log_scale)
            )
        elif isinstance(sweep, RangeSweep):
            values = list(_range_values(sweep))
            if not values:
                raise UserError(f"{where}={text!r} is an empty range")
            dist = CategoricalDistribution(values)
        elif isinstance(sweep, ChoiceSweep):
            values = [_plain(v) for v in sweep.list]
            if not values:
                raise UserError(f"{where}={text!r} is an empty choice")
            if len(set(map(repr, values))) != len(values):
                raise UserError(f"{where}={text!r} repeats a value")
            dist = CategoricalDistribution(values)
        else:
            raise UserError(
                f"{where}={text!r} is one value, not a search range: use interval(a, b), "
                "range(a, b) or choice(a, b, ...), or set it as a plain override"
            )
        space.append(Param(key, dist))
    return space


def _range_values(sweep):
    value, step = sweep.start, sweep.step
    if not step:
        return
    while (value < sweep.stop) if step > 0 else (value > sweep.stop):
        yield value
        value += step


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def _check_key(key: str, config: DictConfig, where: str) -> None:
    """A searched key must name a setting of the config (a typo would search nothing)."""
    if OmegaConf.select(config, key, default=_MISSING) is not _MISSING:
        return
    leaves = [k for k in _keys(config) if not k.startswith("hydra.")]  # for the hint only
    close = difflib.get_close_matches(key, leaves, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(f"{where}: {key} is not a setting of the config{hint}")


_MISSING = object()


def _keys(config: DictConfig) -> list[str]:
    from mnist_cnn.config import flatten

    return list(flatten(OmegaConf.to_container(config, resolve=False)))


def space_json(space: list[Param]) -> dict[str, str]:
    return {p.key: p.describe() for p in space}


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not STUDY_NAME.match(name):
        raise UserError(
            f"hydra.sweeper.study_name={name!r}: use 1-100 letters, digits, '_', '.' or '-' "
            "(it names the trials' run directories)"
        )
    return name


def check_settings(direction: str, n_trials: Any, n_jobs: Any) -> None:
    if direction not in DIRECTIONS:
        raise UserError(f"hydra.sweeper.direction={direction!r}: use maximize or minimize")
    for name, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"hydra.sweeper.{name}={value!r}: use an integer >= 1")


def open_storage(url: str, heartbeat: int, grace: int):
    """The study database: SQLite for one machine, PostgreSQL (or any SQLAlchemy URL) for many.

    A worker's running trials beat every `heartbeat` seconds; a trial silent for `grace` seconds
    (its worker was killed) is marked failed and its parameters queued again, once.
    """
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    for attempt in range(SCHEMA_RETRIES):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except (optuna.exceptions.StorageInternalError, ValueError, ImportError) as exc:
            raise UserError(
                f"hydra.sweeper.storage={redact(url)!r} cannot be opened: {exc}"
            ) from None
        except Exception as exc:  # SQLAlchemy's own: bad URL, no server, no such database
            if _schema_race(exc) and attempt < SCHEMA_RETRIES - 1:
                # two workers creating the tables of a new database at once: one wins, the
                # other finds them a moment later
                time.sleep(0.2 + random.random())
                continue
            raise UserError(
                f"hydra.sweeper.storage={redact(url)!r} cannot be opened: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
    raise AssertionError("unreachable")


SCHEMA_RETRIES = 10


def _schema_race(exc: Exception) -> bool:
    """Optuna creates its tables when it first opens a database, without a lock.

    The loser of that race sees either a table that appeared meanwhile ("already exists") or a
    second insert of a unique row: SQLAlchemy's IntegrityError on every backend (SQLite's
    "UNIQUE constraint failed" on the schema's version row, PostgreSQL's "duplicate key" on its
    type catalogue), which Optuna passes on unwrapped.
    """
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError) or "already exists" in str(exc).lower()


def redact(url: str) -> str:
    """The URL without its password (it is printed and written to metrics.json)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(url))


def existing_study(storage, name: str):
    """The study of that name in the storage, or None (read only: nothing is created)."""
    import optuna

    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name == name:
            return summary
    return None


def check_joinable(summary, direction: str, space: dict[str, str]) -> None:
    """Joining a study: the same direction and the same search space, or a one-line refusal."""
    have = summary.direction.name.lower()
    if have != direction:
        raise UserError(
            f"hydra.sweeper.study_name={summary.study_name!r} exists and is to {have}, not to "
            f"{direction}: use another study_name, or direction={have}"
        )
    stored = summary.user_attrs.get(SPACE_ATTR)
    if stored is not None and stored != space:
        differ = sorted(k for k in set(stored) | set(space) if stored.get(k) != space.get(k))
        raise UserError(
            f"hydra.sweeper.study_name={summary.study_name!r} exists with another search space "
            f"(differs in {', '.join(differ)}): every worker of a study searches the same "
            "space; use another study_name"
        )


def trial_params(storage: str, study_name: str, number: int) -> dict[str, Any]:
    """The settings the study sampled for trial `number` (what metrics.json records)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number:
            return dict(trial.params)
    raise UserError(f"optuna.trial={number}: no such trial in study {study_name!r}")


# the sweeper's pruner settings, as JSON, for the ranks a trial's job starts (their own Hydra
# config is a plain run's, without the sweeper)
PRUNER_ENV = "MNIST_CNN_TRIAL_PRUNER"


def pruner_for_ranks() -> str:
    """The pruner settings of the search this job is a trial of, for PRUNER_ENV."""
    import json

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    spec = HydraConfig.get().sweeper.get("pruner")
    return json.dumps(OmegaConf.to_container(spec, resolve=True) if spec is not None else None)


def job_pruner():
    """The search's pruner, built in the trial's own process (any launcher, any machine) from
    the sweeper settings its job carries; None outside a search or without pruning."""
    import json
    import os

    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    if PRUNER_ENV in os.environ:  # a rank of a trial's DDP run: its launching job passed it
        spec = json.loads(os.environ[PRUNER_ENV])
    elif HydraConfig.initialized():
        spec = HydraConfig.get().sweeper.get("pruner")
    else:
        return None
    if spec is None:
        return None
    try:
        return instantiate(spec)
    except Exception as exc:
        raise UserError(f"hydra.sweeper.pruner cannot be built: {exc}".splitlines()[0]) from None


def best_summary(study, sweep_dir: Path) -> dict[str, Any] | None:
    """best.yaml's content: the best trial's value, parameters and run directory, and counts."""
    from optuna.trial import TrialState

    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = study.best_trial
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "objective": "val/acc",
        "best_value": best.value,
        "best_trial": best.number,
        "best_params": dict(best.params),
        "best_run_dir": best.user_attrs.get("run_dir"),
        "trials": {k: v for k, v in counts.items() if v},
        "written_by": str(sweep_dir),
    }


def write_results(study, sweep_dir: Path) -> dict[str, Any] | None:
    """best.yaml and Optuna's plots (optimisation history, parameter importances, slices) in
    the sweep directory; returns best.yaml's content (None: no trial completed)."""
    from mnist_cnn.runs import write_text_atomic

    summary = best_summary(study, sweep_dir)
    if summary is None:
        return None
    write_text_atomic(sweep_dir / "best.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
    _plots(study, sweep_dir)
    return summary


def _plots(study, sweep_dir: Path) -> None:
    # Optuna draws through pyplot, which picks a non-interactive backend on a machine without a
    # display; each figure is closed once saved, so none stays in pyplot's registry
    import warnings

    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    plots = {
        "optuna_history.png": ovm.plot_optimization_history,
        "optuna_importances.png": ovm.plot_param_importances,
        "optuna_slice.png": ovm.plot_slice,
    }
    # matplotlib's notes on categorical axes and Optuna's "experimental" notices say nothing
    # a reader of the search can act on
    category = logging.getLogger("matplotlib.category")
    level = category.level
    category.setLevel(logging.WARNING)
    try:
        for name, plot in plots.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    warnings.simplefilter("ignore", UserWarning)
                    ax = plot(study)
            except (ValueError, RuntimeError, ImportError) as exc:  # e.g. one finished trial
                log.info("%s not drawn: %s", name, exc)
                continue
            _save(ax, sweep_dir / name, plt)
    finally:
        category.setLevel(level)


def _save(ax, path: Path, plt) -> None:
    """Optuna returns one Axes, or an array of them (a slice plot of several settings)."""
    first = ax.flat[0] if hasattr(ax, "flat") else ax
    first.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(first.figure)
