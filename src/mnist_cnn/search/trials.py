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


def trial_params(storage: str, study_name: str, number: int) -> dict[str, Any]:
    """The settings the study sampled for trial `number` (what metrics.json records); a trial
    that has finished is refused (a run could never report to it)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
