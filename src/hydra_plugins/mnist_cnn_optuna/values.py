"""A trial's sampled values as Hydra overrides, and the sampler or pruner a config names."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from mnist_cnn.commands import hydra_override
from mnist_cnn.errors import UserError


def override_for(key: str, value: Any) -> str:
    """A sampled value as the override a trial's job is launched with."""
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"{key}={value!r}"
    if value is None:
        return f"{key}=null"
    return hydra_override(key, str(value))


def build_object(cfg: Any, where: str):
    """A sampler or pruner; Hydra has already built it when the config names a `_target_`."""
    if cfg is None or not (OmegaConf.is_config(cfg) or isinstance(cfg, dict)):
        return cfg
    from hydra.utils import instantiate

    try:
        return instantiate(cfg)
    except Exception as exc:
        raise UserError(f"{where} cannot be built: {exc}".splitlines()[0]) from None
