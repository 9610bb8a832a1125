"""build(cfg): the objects one validated config names, instantiated in one place (Hydra's
instantiate happens here and nowhere below): data, network, module, callbacks, logger, trainer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import checkpoints, distributed, trainer_args
from mnist_cnn.callbacks.divergence import DivergenceGuard
from mnist_cnn.callbacks.resume import GracefulInterrupt
from mnist_cnn.errors import UserError
from mnist_cnn.module import ClassifierModule

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """What a config builds: everything fit and test need."""

    datamodule: L.LightningDataModule
    net: Any
    module: ClassifierModule
    callbacks: list
    interrupt: GracefulInterrupt
    trainer: L.Trainer


def build(
    cfg: DictConfig,
    run_dir: Path,
    resume: checkpoints.Checkpoint | None,
    config: dict[str, Any],
) -> Parts:
    """Data first (a bad or missing file stops the run before anything else exists), then the
    network (resume: its weights must fit, never a half-load), module, callbacks, trainer."""
    problems = [p for group in ("model", "optimizer", "scheduler") for p in _unknown(cfg, group)]
    if problems:
        raise UserError("; ".join(problems))
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    channels, height, _ = datamodule.image_shape

    L.seed_everything(cfg.seed, workers=True)
    net = instantiate(
        cfg.model, in_channels=channels, image_size=height, num_classes=datamodule.num_classes
    )
    if resume is not None:
        resume.weights_for(net)
    module = ClassifierModule(
        net=net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        num_classes=datamodule.num_classes,
        channels_last=cfg.get("channels_last", False),
        config=config,
        label_smoothing=cfg.get("label_smoothing", 0.0),
    )
    problems = trainer_args.validation_problems(cfg, len(datamodule.splits["val"]))
    problems += trainer_args.batch_problems(
        cfg,
        {split: len(data) for split, data in datamodule.splits.items()},
        {"train": datamodule.batch_size, "val": datamodule.eval_batch_size,
         "test": datamodule.eval_batch_size},
    )  # fmt: skip
    if problems:
        raise UserError("; ".join(problems))
    callback_cfgs = cfg.get("callbacks") or {}
    if len(datamodule.splits["val"]) == 0 and "model_checkpoint" in callback_cfgs:
        log.info("data.val_split=0: no validation set, so only last.ckpt is kept")
        callback_cfgs.model_checkpoint = None
    callbacks = [instantiate(c) for c in callback_cfgs.values() if c is not None]
    # always on, whatever callbacks= says: a signal must never lose the training done so far
    interrupt = GracefulInterrupt(run_dir / "checkpoints")
    callbacks += [interrupt, DivergenceGuard()]  # likewise: a blown-up run stops, named
    trial = OmegaConf.select(cfg, "optuna.trial")
    if trial is not None:  # a trial of an Optuna search: report val/acc, maybe be pruned
        from mnist_cnn.search.pruning import OptunaPruning
        from mnist_cnn.search.trials import job_pruner

        callbacks.append(
            OptunaPruning(cfg.optuna.storage, cfg.optuna.study, int(trial), job_pruner())
        )
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(
        cfg.trainer,
        _convert_="all",  # plain dicts and lists for Lightning (max_time={minutes: 5})
        callbacks=callbacks,
        logger=logger,
        plugins=[checkpoints.checkpoint_io(resume)],
        **distributed.trainer_overrides(cfg.trainer),
    )
    return Parts(datamodule, net, module, callbacks, interrupt, trainer)


def _unknown(cfg: DictConfig, group: str) -> list[str]:
    """Settings the chosen class does not take (`optimizer.momentum` with Adam): its constructor
    would stop with a TypeError after the run had started."""
    import inspect

    from hydra.utils import get_class

    node = cfg.get(group)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return []
    try:
        parameters = inspect.signature(get_class(node._target_)).parameters
    except Exception:
        return []  # instantiate names a target it cannot find
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    takes = [name for name in parameters if name not in ("self", "params")]
    return [
        f"{group}.{key} is not a setting of {node._target_.rsplit('.', 1)[-1]}: it takes "
        f"{', '.join(takes)}; drop it, or choose a {group} that has it ({group}=...)"
        for key in node
        if not str(key).startswith("_") and key not in parameters
    ]
