"""evaluate(cfg): test a checkpoint on the test set, with a training run's metrics and figures."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import checkpoints
from mnist_cnn.callbacks.resume import GracefulInterrupt, TestInterrupted
from mnist_cnn.config import RULES
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.data.sources import REPO_ROOT
from mnist_cnn.errors import UserError
from mnist_cnn.module import ClassifierModule
from mnist_cnn.perf import keep_freed_memory, resolve_precision, set_threads
from mnist_cnn.runs import RunRecord, manifest, state_dict_sha256
from mnist_cnn.train import summary

log = logging.getLogger(__name__)
# how the checkpoint's network saw its data: taken from it, so the test batches are the same
DATA_FROM_CHECKPOINT = ("dataset", "normalize", "eval_batch_size", "val_split")


def _no_training(_params):
    raise RuntimeError("eval.py does not train")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = Path(str(cfg.ckpt_path)).expanduser().resolve()
    ckpt = checkpoints.load(ckpt_path)
    trained = checkpoints.config_of(ckpt, ckpt_path)
    threads = cfg.get("threads", "auto")
    if threads != "auto" and not (isinstance(threads, int) and threads >= 1):
        raise UserError(f"threads={threads!r} is invalid: expected auto or an integer >= 1")
    set_threads(threads)
    keep_freed_memory()
    precision, why = _precision(cfg, trained)
    cfg.trainer.precision = precision
    log.info("precision %s (%s)", precision, why)
    run_dir = Path(cfg.paths.output_dir).resolve()
    record = RunRecord(
        run_dir,
        task="eval",
        checkpoint=str(ckpt_path),
        checkpoint_sha256=hashlib.sha256(ckpt_path.read_bytes()).hexdigest(),
        seed=trained.get("seed"),
        config=OmegaConf.to_container(cfg, resolve=True),
        trained_config=trained,
        manifest=manifest(REPO_ROOT),
        precision=precision,
        precision_reason=why,
    )
    try:
        metrics = _test(cfg, ckpt, ckpt_path, trained, run_dir, record)
    except TestInterrupted as exc:
        record.update(status="interrupted", error=str(exc))
        raise
    except Exception as exc:
        record.failed(exc)
        raise
    log.info(summary(metrics))
    return metrics


def _precision(cfg: DictConfig, trained: dict[str, Any]) -> tuple[str, str]:
    """auto: the precision the checkpoint was trained and tested in, so test/acc and test/loss
    come out the same; runs from before precision=auto existed were fp32."""
    requested = cfg.trainer.precision
    ok, expected = RULES["trainer.precision"]
    if not ok(requested):
        raise UserError(f"trainer.precision={requested!r} is invalid: expected {expected}")
    if requested != "auto":
        return resolve_precision(requested)
    as_trained = (trained.get("trainer") or {}).get("precision", "32-true")
    if as_trained == "auto":  # not resolved: cannot happen for checkpoints train.py writes
        return resolve_precision("auto", cfg.trainer.get("accelerator", "auto"))
    return str(as_trained), "auto: as the checkpoint was trained"


def _test(cfg, ckpt, ckpt_path, trained, run_dir, record) -> dict[str, Any]:
    data_settings = {k: trained["data"][k] for k in DATA_FROM_CHECKPOINT if k in trained["data"]}
    datamodule = MNISTDataModule(
        data_dir=cfg.data.get("data_dir"),
        download=cfg.data.get("download", True),
        seed=trained.get("seed", 0),
        **data_settings,
    )
    datamodule.prepare_data()
    datamodule.setup("test")
    channels, height, _ = datamodule.image_shape
    net = checkpoints.build_net(ckpt, ckpt_path, in_channels=channels, image_size=height)
    module = ClassifierModule(
        net=net,
        optimizer=_no_training,
        num_classes=datamodule.num_classes,
        channels_last=trained.get("channels_last", False),
        config=trained,
    )
    # epoch is 0-based when Lightning saves (last/best are written in the epoch they end)
    module.trained_epochs = int(ckpt["epoch"]) + 1
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # Ctrl-C / SIGTERM: TestInterrupted and exit 130 / 143, not Lightning's exit 1
    callbacks.append(GracefulInterrupt(run_dir))
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    start = time.perf_counter()
    result = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    total, correct = round(result["test/total"]), round(result["test/correct"])
    record.update(
        **{key: v for cb in callbacks for key, v in getattr(cb, "run_summary", {}).items()},
        status="completed",
        **{
            "test/acc": correct / total,
            "test/loss": result["test/loss"],
            "test/correct": correct,
            "test/incorrect": total - correct,
            "test/total": total,
        },
        test_weights=ckpt_path.name,
        epochs=module.trained_epochs,
        global_step=int(ckpt["global_step"]),
        weights_sha256=state_dict_sha256(net),
        test_seconds=time.perf_counter() - start,
        train_seconds=0.0,
        run_dir=str(run_dir),
    )
    return record.data
