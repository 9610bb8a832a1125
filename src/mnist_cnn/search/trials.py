"""What a trial's own job needs from its study: its sampled settings, and the pruner that may
stop it (built in the trial's process, or handed to the ranks of its DDP run)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.errors import UserError


def going_on(storage: str, study_name: str) -> str:
    """How a search stopped in a trial goes on: the trial is not resumed, the study is."""
    from mnist_cnn.search.storage import redact

    return (
        "its parameters are queued again in the study: to go on, start a worker with the same "
        f"storage and study (hydra.sweeper.storage={redact(storage)}, study {study_name!r}; "
        "docs/search.md, Resume)"
    )


TRIAL_KEYS = ("optuna.storage", "optuna.study", "optuna.trial")


def trial_problems(cfg: DictConfig) -> list[str]:
    """optuna.* name the running trial a job of a search reports to; the sweeper sets all three.
    Given by hand, one or two of them ended in optuna's ValueError traceback."""
    given = {key: OmegaConf.select(cfg, key, default=None) for key in TRIAL_KEYS}
    missing = [key for key, value in given.items() if value is None]
    if not missing or len(missing) == len(TRIAL_KEYS):
        return []
    shown = ", ".join(f"{key}={value}" for key, value in given.items() if value is not None)
    return [
        f"{shown} without {' and '.join(missing)}: the three name the running trial of a search "
        "that a job reports to, set by the Optuna sweeper (hparams_search=...); give all three "
        "(a trial's record has them) or drop them"
    ]


def trial_params(storage: str, study_name: str, number: int) -> dict[str, Any]:
    """The settings the study sampled for trial `number` (what metrics.json records); a trial
    that has finished is refused (a run could never report to it)."""
    import optuna

    from mnist_cnn.search.storage import redact

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if _absent_sqlite_file(storage):  # Optuna would make an empty database there
        raise UserError(
            f"optuna.storage={redact(storage)}: no such database file; optuna.* name the running "
            "trial of a search a job reports to, as the Optuna sweeper sets them: give its "
            "storage (hydra.sweeper.storage), or drop them"
        )
    if study_name not in optuna.get_all_study_names(storage=storage):
        raise UserError(
            f"optuna.study={study_name!r}: no such study in optuna.storage={redact(storage)}; "
            "optuna.* name the running trial of a search a job reports to, as the Optuna "
            "sweeper sets them: give its study's name (hydra.sweeper.study_name), or drop them"
        )
    study = optuna.load_study(study_name=study_name, storage=storage)
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number and trial.state.is_finished():
            raise UserError(
                f"optuna.trial={number} of study {study_name!r} has finished "
                f"({trial.state.name}), so no run can report to it (a resume of a stopped "
                f"trial's checkpoint?); {going_on(storage, study_name)}"
            )
        if trial.number == number:
            return dict(trial.params)
    raise UserError(f"optuna.trial={number}: no such trial in study {study_name!r}")


def _absent_sqlite_file(url: str) -> bool:
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:
        return False  # Optuna names a URL it cannot use
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return False
    from pathlib import Path

    return not Path(database.removeprefix("file:")).exists()


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


def trial_record(cfg: DictConfig) -> dict[str, Any]:
    """Which Optuna trial this run is, with its sampled settings ({} outside a search)."""
    number = OmegaConf.select(cfg, "optuna.trial")
    if number is None:
        return {}
    from mnist_cnn.search.storage import redact

    return {
        "study": cfg.optuna.study,
        "trial": int(number),
        "storage": redact(cfg.optuna.storage),
        "params": trial_params(cfg.optuna.storage, cfg.optuna.study, int(number)),
        "state": "running",
    }
