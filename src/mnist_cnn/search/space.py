"""The search space from Hydra's override grammar, and the search's settings, checked before a
study is opened or joined (nothing in the database changes before every check has passed)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_cnn.errors import UserError

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
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
