"""The search wing's sampler: workers of one seeded study never repeat each other's draws, and a
study run by one worker is reproducible from its seed."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from mnist_cnn.search.sampler import TrialSeededSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {
    "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
    "scheduler": CategoricalDistribution(["cosine", "onecycle"]),
    "data.batch_size": CategoricalDistribution([64, 128, 256]),
}


def _seeded(seed: int) -> TrialSeededSampler:
    return TrialSeededSampler(lambda s: optuna.samplers.TPESampler(seed=s), seed)


def _workers(storage: str, make_sampler, n_workers: int = 2) -> list[dict]:
    """Each worker opens the study with its own sampler, as train.py -m does, and asks in turn."""
    studies = [
        optuna.create_study(
            study_name="s", storage=storage, sampler=make_sampler(), load_if_exists=True
        )
        for _ in range(n_workers)
    ]
    trials = [study.ask(fixed_distributions=SPACE) for study in studies for _ in range(2)]
    return [t.params for t in trials]


def test_two_workers_of_one_seeded_study_draw_different_parameters(tmp_path):
    plain = _workers(
        f"sqlite:///{tmp_path / 'plain.db'}", lambda: optuna.samplers.TPESampler(seed=7)
    )
    assert plain[0] == plain[2], "the hazard: one seed, two workers, the same first draw"
    drawn = _workers(f"sqlite:///{tmp_path / 'seeded.db'}", lambda: _seeded(7))
    lrs = [p["optimizer.lr"] for p in drawn]
    assert len(set(lrs)) == len(lrs), drawn


def test_a_seeded_study_is_reproducible_and_the_seed_matters(tmp_path):
    def one_worker(name: str, seed: int) -> list[dict]:
        study = optuna.create_study(storage=f"sqlite:///{tmp_path / name}", sampler=_seeded(seed))
        params = []
        for k in range(4):
            trial = study.ask(fixed_distributions=SPACE)
            study.tell(trial, 0.9 + 0.01 * k)
            params.append(trial.params)
        return params

    first, again, other = one_worker("a.db", 3), one_worker("b.db", 3), one_worker("c.db", 4)
    assert first == again
    assert first != other


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_every_valid_seed_gives_a_valid_sampler_seed(seed):
    sampler = _seeded(seed)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask(fixed_distributions=SPACE)
    assert 1e-4 <= trial.params["optimizer.lr"] <= 1e-2


@pytest.mark.reliability("RD5")
def test_a_trial_named_by_hand_that_no_search_is_running_is_refused(tmp_path):
    """`train.py optuna.trial=3` alone ended in optuna's ValueError, a study no storage holds in
    its KeyError "Record does not exist", both tracebacks, and an absent SQLite file was made."""
    import itertools
    import random

    from helpers.data import ROOT
    from hydra import compose, initialize_config_dir

    from mnist_cnn.config import validate
    from mnist_cnn.errors import UserError
    from mnist_cnn.search.trials import TRIAL_KEYS, trial_params

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="tiny", storage=storage)
    running = study.ask({"x": FloatDistribution(0, 1)})
    values = {"optuna.storage": storage, "optuna.study": "tiny", "optuna.trial": 0}
    rng = random.Random(3)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for size in (1, 2):  # some of the three, never all
            for keys in itertools.combinations(TRIAL_KEYS, size):
                cfg = compose("train", overrides=[f"{k}={values[k]}" for k in keys])
                with pytest.raises(UserError, match="the three name the running trial") as e:
                    validate(cfg)
                assert all(k in str(e.value) for k in TRIAL_KEYS)
        for bad in (-1, -rng.randint(2, 99), "x", 1.5, True):
            cfg = compose("train", overrides=[*(f"{k}={v}" for k, v in values.items())])
            cfg.optuna.trial = bad
            with pytest.raises(UserError, match=r"optuna.trial=.* is invalid: expected a trial"):
                validate(cfg)
        validate(compose("train", overrides=[f"{k}={v}" for k, v in values.items()]))
    assert trial_params(storage, "tiny", 0) == running.params
    with pytest.raises(UserError, match=r"^optuna.study='other': no such study in "):
        trial_params(storage, "other", 0)
    absent = tmp_path / "none.db"
    with pytest.raises(UserError, match=r"no such database file"):
        trial_params(f"sqlite:///{absent}", "tiny", 0)
    assert not absent.exists()
