"""OptunaSweeper: one study in a database, shared by every worker that names it; trials run
through whichever Hydra launcher is chosen (basic, joblib, SLURM via submitit).

A worker asks the study for at most n_jobs trials at a time, launches them, and tells the study
each outcome: the returned val/acc, pruned (the job's pruner stopped it), or failed. It stops
when the study holds n_trials completed, pruned, failed or running trials. A trial whose worker
was killed stops beating; after grace_seconds any worker marks it failed and queues its
parameters again (counted once, as the trial that reruns them).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.mnist_cnn_optuna.budget import budget_lock
from hydra_plugins.mnist_cnn_optuna.heartbeat import Heartbeat, fail_and_requeue
from hydra_plugins.mnist_cnn_optuna.told import RUN_FAILED, stopped_in, tell
from hydra_plugins.mnist_cnn_optuna.values import build_object, override_for
from mnist_cnn import sweep_workers
from mnist_cnn.commands import hydra_override
from mnist_cnn.errors import Stopped, UserError

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str,
        storage: str | None,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        params: Any,
        heartbeat_seconds: int,
        grace_seconds: int,
    ) -> None:
        self.study_name = study_name
        self.storage_url = storage
        self.direction = direction
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.params = params
        self.heartbeat, self.grace = heartbeat_seconds, grace_seconds
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        try:
            study, space, fixed = self._open(arguments)
        except UserError as exc:  # nothing started, nothing in the database changed
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code)
        from mnist_cnn.search.results import write_results

        sweep_dir = Path(self.config.hydra.sweep.dir)
        self._run(study, space, fixed, sweep_dir)
        best = write_results(study, sweep_dir)
        if best is None:
            print(f"Study {study.study_name}: no trial completed", flush=True)
            return
        print(
            f"Study {study.study_name}: best val/acc {best['best_value']:.4f} in trial "
            f"{best['best_trial']} {best['best_params']}\n  run directory: "
            f"{best['best_run_dir']}\n  {sweep_dir / 'best.yaml'}, optuna_*.png",
            flush=True,
        )

    # -- the checks, then the study -------------------------------------------------------------
    def _open(self, arguments: list[str]):
        import optuna

        from mnist_cnn.search import space as search_space
        from mnist_cnn.search import storage as study_storage

        search_space.check_study_name(self.study_name)
        search_space.check_settings(self.direction, self.n_trials, self.n_jobs)
        space = search_space.parse_space(self.params, self.config)
        fixed = self._fixed(arguments, {p.key for p in space})
        sampler = self._sampler()
        pruner = build_object(self.pruner_cfg, "hydra.sweeper.pruner")
        url = self.storage_url
        if url is None:
            sweep_dir = Path(self.config.hydra.sweep.dir)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{sweep_dir.resolve() / 'optuna.db'}"
        self.url = url
        storage = study_storage.open_storage(url, self.heartbeat, self.grace)
        self.storage = storage
        described = search_space.space_json(space)
        existing = study_storage.existing_study(storage, self.study_name)
        if existing is not None:
            study_storage.check_joinable(existing, self.direction, described)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no per-trial lines: ours say more
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        if study_storage.SPACE_ATTR not in study.user_attrs:
            study.set_user_attr(study_storage.SPACE_ATTR, described)
        done = len(study.get_trials(deepcopy=False))
        log.info(
            "Optuna study %s (%s), %s: %d trial(s) so far, %d in all",
            self.study_name, self.direction, study_storage.redact(url), done, self.n_trials,
        )  # fmt: skip
        return study, space, fixed

    def _sampler(self):
        """The configured sampler; a seeded one draws by trial number (search/sampler.py: why)."""
        sampler = build_object(self.sampler_cfg, "hydra.sweeper.sampler")
        raw = OmegaConf.select(self.config, "hydra.sweeper.sampler")
        seed = raw.get("seed") if OmegaConf.is_dict(raw) and "_target_" in raw else None
        if seed is None:
            return sampler
        from hydra.utils import instantiate

        from mnist_cnn.search.sampler import TrialSeededSampler

        return TrialSeededSampler(lambda s: instantiate(raw, seed=s), int(seed))

    @staticmethod
    def _fixed(arguments: list[str], searched: set[str]) -> list[str]:
        """The command line's overrides: the same in every trial; a sweep there is refused."""
        parser = OverridesParser.create()
        for override in parser.parse_overrides(arguments):
            key = override.get_key_element().lstrip("+~")
            if override.is_sweep_override():
                raise UserError(
                    f"{override.input_line}: a sweep on the command line of an Optuna search; "
                    f"search it through hydra.sweeper.params.{key} instead"
                )
            if key in searched:
                raise UserError(
                    f"{override.input_line}: {key} is searched (hydra.sweeper.params.{key}); "
                    "drop it from the command line or from the search space"
                )
        return list(arguments)

    # -- the trials ----------------------------------------------------------------------------
    def _run(self, study, space, fixed: list[str], sweep_dir: Path) -> None:
        import optuna
        from optuna.trial import TrialState

        distributions = {p.key: p.distribution for p in space}
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        waiting_for: set[int] = set()
        while True:
            with warnings.catch_warnings():  # "experimental since v2.9": stable for years
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # killed workers' trials, queued again
            with budget_lock(self.url, self.study_name):  # count and ask as one step across workers
                taken = len(study.get_trials(deepcopy=False, states=counted)) + len(
                    [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                     if t.user_attrs.get(RUN_FAILED)]
                )  # fmt: skip
                batch = min(self.n_jobs, self.n_trials - taken)
                if batch > 0:
                    with warnings.catch_warnings():  # "heartbeats are meant for optimize": we
                        warnings.simplefilter("ignore", UserWarning)  # beat ourselves
                        trials = [study.ask(fixed_distributions=distributions)
                                  for _ in range(batch)]  # fmt: skip
            if batch <= 0:
                # none of this worker's trials is running now: the running ones are another
                # worker's, alive or killed; wait until they end or their grace runs out
                running = {
                    t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                }
                if not running:
                    return
                if running - waiting_for:
                    self._say_waiting(study, sorted(running))
                waiting_for |= running
                time.sleep(self.heartbeat)
                continue
            jobs = [self._overrides(t, fixed, sweep_dir) for t in trials]
            with Heartbeat(self.storage, study, trials, self.heartbeat):
                try:
                    returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
                except BaseException:  # a signal or a launcher failure: not left RUNNING
                    for trial in trials:
                        fail_and_requeue(study, trial)
                    raise
            self.job_idx += batch
            tell(study, trials, returns)
            if (signum := sweep_workers.stop_requested()) is not None:
                raise Stopped(signum, stopped_in(trials, returns, self.url, self.study_name))

    def _say_waiting(self, study, numbers: list[int]) -> None:
        listed = ", ".join(map(str, numbers))
        print(
            f"Study {study.study_name}: the trials left to run are running elsewhere (trial "
            f"{listed}); waiting: a live worker finishes them, and a killed worker's trial is "
            f"failed {self.grace} s after its last heartbeat (hydra.sweeper.grace_seconds) and "
            "run again here",
            flush=True,
        )

    def _overrides(self, trial, fixed: list[str], sweep_dir: Path) -> list[str]:
        subdir = f"{self.study_name}-trial-{trial.number:03d}"
        trial.set_user_attr("run_dir", str((sweep_dir / subdir).resolve()))
        sampled = [override_for(key, value) for key, value in trial.params.items()]
        return [
            *fixed,
            *sampled,
            hydra_override("optuna.storage", self.url),
            hydra_override("optuna.study", self.study_name),
            f"optuna.trial={trial.number}",
            f"hydra.sweep.subdir={subdir}",
        ]
