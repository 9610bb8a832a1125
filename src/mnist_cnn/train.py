"""run(cfg): compose the objects a config names, fit, test on the 10,000 test digits, record.

Nothing here changes the process (threads, allocator, warnings, logging): the entry point
(mnist_cnn.cli.train) does that, so a notebook or a test can call run() as it is.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import REPO_ROOT, checkpoints, planning
from mnist_cnn.build import Parts, build
from mnist_cnn.callbacks.resume import InterruptedDuringTest
from mnist_cnn.errors import Pruned
from mnist_cnn.outcome import recorded
from mnist_cnn.precision import resolve_precision
from mnist_cnn.runs import (
    RunRecord,
    manifest,
    results_from_test,
    state_dict_sha256,
    summary,
)

log = logging.getLogger(__name__)


def compose_config(overrides: list[str], run_dir: str | os.PathLike) -> DictConfig:
    """The config `python train.py OVERRIDES` builds, writing into run_dir (notebooks, tests)."""
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("PROJECT_ROOT", str(REPO_ROOT))
    run_dir = Path(run_dir).resolve()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"])
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def run(cfg: DictConfig, resume: checkpoints.Checkpoint | None = None) -> dict[str, Any]:
    """Train and test one validated configuration; returns what metrics.json holds.

    resume: cfg.ckpt_path as already read by the caller (read here when not given).
    """
    if cfg.ckpt_path is not None and resume is None:
        from mnist_cnn.preflight import read_resume

        resume = read_resume(cfg)
    # the resolved value goes into the config the checkpoint, hparams and metrics.json carry
    requested = cfg.trainer.precision
    precision, why = resolve_precision(requested, cfg.trainer.get("accelerator", "auto"))
    cfg.trainer.precision = precision
    log.info("precision %s (%s)", precision, why)
    # a budget fixes the epochs now, before the config is recorded and the schedule is built
    planned = planning.apply(cfg, resume.config() if resume is not None else None)
    run_dir = Path(cfg.paths.output_dir).resolve()
    record = RunRecord(
        run_dir,
        seed=cfg.seed,
        config=OmegaConf.to_container(cfg, resolve=True),
        manifest=manifest(REPO_ROOT),
        precision_requested=requested,
        precision_reason=why,
    )
    if planned is not None:
        record.update(plan=planned)
    trial: dict[str, Any] = {}
    if OmegaConf.select(cfg, "optuna.trial") is not None:  # a trial of an Optuna search
        from mnist_cnn.search.trials import trial_record

        trial = trial_record(cfg)
    if trial:
        record.update(optuna=trial)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        with recorded(record, trial, last, OmegaConf.select(cfg, "optimizer.lr")):
            metrics = _fit_and_test(cfg, run_dir, record, resume)
    except Pruned as exc:
        log.info("trial %s %s", trial.get("trial"), exc)
        raise
    if trial:
        record.update(optuna={**trial, "state": "complete"})
    trained = f"{metrics['test_weights']} weights, {_epochs(metrics['epochs'])}"
    if metrics.get("stopped_early"):
        trained += f" ({metrics['stopped_early']})"
    if metrics.get("world_size", 1) > 1:
        trained += f", {metrics['world_size']} processes"
    over = planning.overrun(planned, metrics["train_seconds"])
    if over is not None and record.writes:
        excess = metrics["train_seconds"] - planned["budget_seconds"]
        record.update(plan={**planned, "over_budget_seconds": excess})
        log.warning(over)
    if record.writes:  # one summary, from rank 0
        log.info(summary(metrics, f"{trained} in {metrics['train_seconds']:.1f} s"))
    return metrics


def _fit_and_test(
    cfg: DictConfig, run_dir: Path, record: RunRecord, resume: checkpoints.Checkpoint | None
) -> dict[str, Any]:
    start = time.perf_counter()
    parts = build(cfg, run_dir, resume, config=record.data["config"])
    record.update(
        num_params=sum(p.numel() for p in parts.net.parameters()),
        world_size=parts.trainer.world_size,  # processes; data.batch_size is their global batch
        precision=str(parts.trainer.precision),
        setup_seconds=time.perf_counter() - start,  # data read + validated, objects built
    )
    start = time.perf_counter()
    fit(parts, resume)
    train_seconds = time.perf_counter() - start
    stopped = stopped_early(parts.trainer, cfg)
    if stopped:
        record.update(stopped_early=stopped)
    fit_metrics = {k: float(v) for k, v in parts.trainer.callback_metrics.items()}
    best, last = checkpoint_paths(parts.trainer)
    start = time.perf_counter()
    tested, test_metrics = test(parts, cfg.test_ckpt, best, last)
    record.update(
        **results_from_test(test_metrics, parts.callbacks),
        status="completed",
        **{k: fit_metrics.get(k) for k in ("val/acc", "val/loss", "train/acc", "train/loss")},
        test_weights=tested,
        epochs=parts.trainer.current_epoch,
        global_step=parts.trainer.global_step,
        weights_sha256=state_dict_sha256(parts.net),  # the tested weights: equal hash, equal bits
        train_seconds=train_seconds,
        test_seconds=time.perf_counter() - start,
        device=str(parts.module.device),
        checkpoints={"last": _relative(last, run_dir), "best": _relative(best, run_dir)},
        run_dir=str(run_dir),
    )
    return record.data


def fit(parts: Parts, resume: checkpoints.Checkpoint | None) -> None:
    """Train; a signal after the last training batch still stops with a checkpoint to resume."""
    ckpt_path = str(resume.path) if resume is not None else None
    with parts.interrupt.giving_back():
        parts.trainer.fit(
            parts.module, datamodule=parts.datamodule, ckpt_path=ckpt_path, weights_only=True
        )
    received = parts.interrupt.agreed_after_fit(parts.trainer)
    if received is not None:
        last = checkpoint_paths(parts.trainer)[1]
        raise parts.interrupt.interrupted(Path(last or parts.interrupt.path))


def test(parts: Parts, test_ckpt: str, best: str, last: str) -> tuple[str, dict[str, float]]:
    """Test the final weights, or the best checkpoint's (test_ckpt=best); returns which, and the
    test stage's metrics."""
    use_best = test_ckpt == "best" and bool(best)
    if test_ckpt == "best" and not best:
        log.warning("test_ckpt=best but no best checkpoint was saved: testing the final weights")
    if use_best:
        # loaded here, not by Lightning's ckpt_path: Lightning hands the file to each callback,
        # and weight averaging's puts back the step's weights saved beside the average that
        # validation chose and the file holds as its weights
        parts.net.load_state_dict(checkpoints.load(best).weights_for(parts.net))
    try:
        with parts.interrupt.giving_back():
            metrics = parts.trainer.test(
                parts.module, datamodule=parts.datamodule, verbose=False, weights_only=True
            )[0]
    except InterruptedDuringTest as exc:
        tested = best if use_best else last  # "" when callbacks= kept no checkpoint
        exc.checkpoint = Path(tested) if tested else None
        raise
    return ("best" if use_best else "final"), metrics


def stopped_early(trainer: L.Trainer, cfg: DictConfig) -> str | None:
    """Why fit ended before the steps it planned (None when it did not): trainer.max_time, or a
    callback such as early stopping. max_steps is a plan, not an early stop."""
    planned = int(trainer.estimated_stepping_batches)
    if trainer.global_step >= planned:
        return None
    done = f"stopped after {trainer.global_step:,} of {planned:,} steps"
    if OmegaConf.select(cfg, "trainer.max_time") is not None:
        return f"{done} by trainer.max_time"
    return f"{done} by a callback (e.g. early stopping)"


def checkpoint_paths(trainer: L.Trainer) -> tuple[str, str]:
    """(best by the monitored metric, latest) checkpoint paths; "" where none was kept."""
    best = last = ""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is None:
            last = callback.best_model_path  # without a monitor, "best" is the newest
        else:
            best = callback.best_model_path
    return best, last


def _relative(path: str, root: Path) -> str | None:
    if not path:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"
