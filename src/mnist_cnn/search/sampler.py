"""A seeded sampler whose draws depend on the trial's number, not on the worker that asks.

Every worker of a study builds its sampler from the same config, so one `seed` there gave each
worker the same random stream: two workers started together drew identical parameters. Here the
sampler is rebuilt before each trial from (seed, trial number): the trial numbers the database
hands out are unique, so workers never repeat each other's draws, and a study run by one worker
is reproducible from its seed. Samplers such as TPE keep no state between trials beyond their
random stream (the history lives in the study), so rebuilding them changes nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int) -> int:
    """A seed for trial `number` of a study seeded with `seed`, well apart from its neighbours."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Delegates to `build(trial_seed(seed, trial.number))`, built anew before each trial."""

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self._build, self._seed = build, seed
        self._inner = build(seed)  # until the first trial: never sampled from

    @property
    def inner(self) -> BaseSampler:
        return self._inner

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner = self._build(trial_seed(self._seed, trial.number))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
