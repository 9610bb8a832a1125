"""`hydra/sweeper: optuna`: the settings of mnist_cnn's Optuna sweeper, with their defaults."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.mnist_cnn_optuna.optuna_sweeper.OptunaSweeper"
    # trials' run dirs are <sweep dir>/<study_name>-trial-<number>
    study_name: str = "search"
    # SQLAlchemy URL of the study's database, shared by every worker given the same URL:
    # sqlite:///study.db (one machine), postgresql+psycopg://user:pw@host/db (many).
    # null: sqlite in the sweep directory (this worker alone; resumable through its path)
    storage: str | None = None
    direction: str = "maximize"  # train.py returns val/acc
    # trials in the whole study (finished or running, over all workers), not per worker
    n_trials: int = 12
    n_jobs: int = 1  # trials this worker hands its launcher at once
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None}
    )
    # null: no pruning; e.g. {_target_: optuna.pruners.MedianPruner, n_warmup_steps: 1}
    pruner: Any = None
    # searched settings: key -> interval(a, b), tag(log, interval(a, b)), range(a, b), choice(...)
    # nested ({optimizer: {lr: ...}}) or dotted ({optimizer.lr: ...}) keys; on the command line:
    # +hydra.sweeper.params.optimizer.lr='interval(0.001, 0.01)'
    params: Any = field(default_factory=dict)
    # a worker's running trials beat this often; silent for grace_seconds (the worker was
    # killed), a trial is marked failed and its parameters run again, once
    heartbeat_seconds: int = 10
    grace_seconds: int = 60


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="mnist_cnn"
)
