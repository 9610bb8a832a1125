"""run(cfg): compose the objects a config names, fit, test on the 10,000 test digits, record."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import checkpoints
from mnist_cnn.callbacks.resume import GracefulInterrupt, TestInterrupted, TrainingInterrupted
from mnist_cnn.checkpoint_io import AtomicCheckpointIO
from mnist_cnn.config import validate
from mnist_cnn.data.sources import REPO_ROOT
from mnist_cnn.errors import TrainingDiverged
from mnist_cnn.module import ClassifierModule
from mnist_cnn.perf import keep_freed_memory, resolve_precision, set_threads
from mnist_cnn.runs import RunRecord, manifest, state_dict_sha256

log = logging.getLogger(__name__)

# Lightning gives its "lightning" logger a console handler of its own; under Hydra the root logger
# already prints to the console and to <run>/train.log, so every line would appear twice.
if logging.getLogger().handlers:
    logging.getLogger("lightning").handlers.clear()


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if value is not None else None


def compose_config(overrides: list[str], run_dir: str | os.PathLike) -> DictConfig:
    """The config `python train.py OVERRIDES` builds, writing into run_dir (notebooks, tests)."""
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("PROJECT_ROOT", str(REPO_ROOT))
    run_dir = Path(run_dir).resolve()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"])
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def run(cfg: DictConfig, parallel_jobs: int = 1) -> dict[str, Any]:
    """Train and test one configuration; returns what metrics.json holds.

    parallel_jobs: how many runs share this machine (threads=auto divides the cores among them).
    """
    validate(cfg)
    set_threads(cfg.get("threads", "auto"), parallel_jobs)
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()
    # the resolved value goes into the config the checkpoint, hparams and metrics.json carry
    requested = cfg.trainer.precision
    precision, why = resolve_precision(requested, cfg.trainer.get("accelerator", "auto"))
    cfg.trainer.precision = precision
    log.info("precision %s (%s)", precision, why)
    run_dir = Path(cfg.paths.output_dir).resolve()
    config = OmegaConf.to_container(cfg, resolve=True)
    record = RunRecord(
        run_dir,
        seed=cfg.seed,
        config=config,
        manifest=manifest(REPO_ROOT),
        precision_requested=requested,
        precision_reason=why,
    )
    try:
        metrics = _fit_and_test(cfg, config, run_dir, record)
    except TrainingDiverged as exc:
        last = run_dir / "checkpoints" / "last.ckpt"
        lr = OmegaConf.select(cfg, "optimizer.lr")
        message = (
            f"{exc}; last good checkpoint: {last if last.is_file() else 'none (first epoch)'}; "
            f"try a lower learning rate (optimizer.lr={lr} now, e.g. optimizer.lr={lr / 10:g})"
        )
        record.update(status="diverged", error=message, epoch=exc.epoch, global_step=exc.step)
        raise TrainingDiverged(message, exc.epoch, exc.step) from None
    except TrainingInterrupted as exc:
        record.update(
            status="interrupted",
            error=str(exc),
            resume_checkpoint=str(exc.checkpoint),
            resume_command=resume_command(exc.checkpoint),
        )
        raise
    except TestInterrupted as exc:
        record.update(
            status="interrupted",
            error=f"{exc}; training had completed",
            eval_command=eval_command(exc.checkpoint),
        )
        raise
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into sys.exit(1)
        record.update(status="interrupted")
        raise
    except Exception as exc:
        record.failed(exc)
        raise
    log.info(summary(metrics))
    return metrics


def _fit_and_test(
    cfg: DictConfig, config: dict[str, Any], run_dir: Path, record: RunRecord
) -> dict[str, Any]:
    start = time.perf_counter()
    # refused (pickle payload, corrupt, not ours) with a clear message before any work
    resume_from = checkpoints.load(cfg.ckpt_path) if cfg.ckpt_path is not None else None
    # Data first: a bad or missing file should stop the run before any model or trainer exists.
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    channels, height, _ = datamodule.image_shape

    L.seed_everything(cfg.seed, workers=True)
    net = instantiate(
        cfg.model, in_channels=channels, image_size=height, num_classes=datamodule.num_classes
    )
    if resume_from is not None:  # another architecture: name the keys, never a half-load
        checkpoints.check_weights(net, resume_from["state_dict"], cfg.ckpt_path)
    module = ClassifierModule(
        net=net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        num_classes=datamodule.num_classes,
        channels_last=cfg.get("channels_last", False),
        config=config,
    )
    callback_cfgs = cfg.get("callbacks") or {}
    if len(datamodule.splits["val"]) == 0 and "model_checkpoint" in callback_cfgs:
        log.info("data.val_split=0: no validation set, so only last.ckpt is kept")
        callback_cfgs.model_checkpoint = None
    callbacks = [instantiate(c) for c in callback_cfgs.values() if c is not None]
    # always on, whatever callbacks= says: a signal must never lose the training done so far
    interrupt = GracefulInterrupt(run_dir / "checkpoints")
    callbacks.append(interrupt)
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()]
    )

    num_params = sum(p.numel() for p in net.parameters())
    setup_seconds = time.perf_counter() - start
    record.update(num_params=num_params, precision=str(trainer.precision))
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    if interrupt.received is not None:  # the signal came after the last training batch
        last = _checkpoint_paths(trainer)[1]
        raise TrainingInterrupted(interrupt.received, Path(last or interrupt.path))
    train_seconds = time.perf_counter() - start
    fit_metrics = dict(trainer.callback_metrics)

    best, last = _checkpoint_paths(trainer)
    test_ckpt = "best" if cfg.test_ckpt == "best" and best else None
    if cfg.test_ckpt == "best" and not best:
        log.warning("test_ckpt=best but no best checkpoint was saved: testing the final weights")
    start = time.perf_counter()
    try:
        test_metrics = trainer.test(
            module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False, weights_only=True
        )[0]
    except TestInterrupted as exc:
        tested = best if test_ckpt else last  # "" when callbacks= kept no checkpoint
        exc.checkpoint = Path(tested) if tested else None
        raise
    test_seconds = time.perf_counter() - start

    total = round(test_metrics["test/total"])  # what was tested (limit_test_batches may cut)
    correct = round(test_metrics["test/correct"])
    dashboards = _callback_summaries(callbacks)
    if "test/misclassified" in dashboards and dashboards["test/misclassified"] != total - correct:
        raise RuntimeError("confusion matrix and test/acc disagree: a bug, please report it")
    record.update(
        **dashboards,
        status="completed",
        **{
            "test/acc": correct / total,  # exact, where torchmetrics' value is float32
            "test/loss": test_metrics["test/loss"],
            "test/correct": correct,
            "test/incorrect": total - correct,
            "test/total": total,
            "val/acc": _metric(fit_metrics, "val/acc"),
            "val/loss": _metric(fit_metrics, "val/loss"),
            "train/acc": _metric(fit_metrics, "train/acc"),
            "train/loss": _metric(fit_metrics, "train/loss"),
        },
        test_weights="best" if test_ckpt else "final",
        epochs=trainer.current_epoch,
        global_step=trainer.global_step,
        weights_sha256=state_dict_sha256(net),  # the tested weights: equal hash, equal bits
        setup_seconds=setup_seconds,  # data read + validated, objects built
        train_seconds=train_seconds,
        test_seconds=test_seconds,
        device=str(module.device),
        checkpoints={
            "last": _relative(last, run_dir),
            "best": _relative(best, run_dir),
        },
        run_dir=str(run_dir),
    )
    return record.data


def _checkpoint_paths(trainer: L.Trainer) -> tuple[str, str]:
    """(best by the monitored metric, latest) checkpoint paths; "" where none was kept."""
    best = last = ""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is None:
            last = callback.best_model_path  # without a monitor, "best" is the newest
        else:
            best = callback.best_model_path
    return best, last


def _callback_summaries(callbacks: list) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for callback in callbacks:
        summary.update(getattr(callback, "run_summary", {}))
    return summary


def _relative(path: str, root: Path) -> str | None:
    if not path:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


def resume_command(checkpoint: Path) -> str:
    """The command that continues this run: the same overrides plus ckpt_path."""
    import shlex

    from hydra.core.hydra_config import HydraConfig

    overrides = []
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("ckpt_path=")]
    return shlex.join(["python", "train.py", *overrides, f"ckpt_path={checkpoint}"])


def eval_command(checkpoint: Path | None) -> str | None:
    """The command that tests a checkpoint on its own (None when there is no checkpoint)."""
    import shlex

    return shlex.join(["python", "eval.py", f"ckpt_path={checkpoint}"]) if checkpoint else None


def summary(m: dict[str, Any]) -> str:
    """The lines a person reads at the end of a run."""
    trained = (
        f"{m['test_weights']} weights, {m['epochs']} epochs in {m['train_seconds']:.1f} s"
        if m.get("task") != "eval"
        else f"checkpoint {m['checkpoint']} (epoch {m['epochs']}, step {m['global_step']})"
    )
    return (
        f"Test accuracy {100 * m['test/acc']:.2f}% ({m['test/correct']:,} of {m['test/total']:,} "
        f"correct, {m['test/incorrect']:,} wrong), test loss {m['test/loss']:.4f}, {trained}\n"
        f"Run directory: {m['run_dir']}\n"
        f"View it: tensorboard --logdir {m['run_dir']}"
    )
