"""evaluate(cfg): test a checkpoint, or an ensemble of several, on the test set, with a training
run's metrics and figures."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_cnn import REPO_ROOT, checkpoints
from mnist_cnn.callbacks.resume import GracefulInterrupt
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.errors import UserError
from mnist_cnn.members import load_all
from mnist_cnn.models.ensemble import Ensemble
from mnist_cnn.module import ClassifierModule
from mnist_cnn.outcome import recorded
from mnist_cnn.precision import resolve_precision
from mnist_cnn.runs import RunRecord, manifest, results_from_test, state_dict_sha256, summary

log = logging.getLogger(__name__)
# how the checkpoint's network saw its data: taken from it, so the test batches are the same
DATA_FROM_CHECKPOINT = ("dataset", "normalize", "eval_batch_size", "val_split", "folds", "fold")


def _no_training(_params):
    raise RuntimeError("eval.py does not train")


def evaluate(
    cfg: DictConfig,
    checkpoint: checkpoints.Checkpoint | list[checkpoints.Checkpoint] | None = None,
) -> dict[str, Any]:
    """Test a checkpoint (or, given several, their ensemble) in a run dir of its own.

    checkpoint: cfg.ckpt_path as already read (a list where it names several files)."""
    if checkpoint is None:
        checkpoint = load_all(cfg.ckpt_path)
    members = checkpoint if isinstance(checkpoint, list) else [checkpoint]
    trained = members[0].config()
    _check_members_agree(members)
    seeds = [m.config().get("seed") for m in members]
    _check_data_not_overridden(cfg, trained["data"], seeds)
    tta = bool(cfg.get("tta", False))
    precision, why = _precision(cfg, trained)
    cfg.trainer.precision = precision
    log.info("precision %s (%s)", precision, why)
    run_dir = Path(cfg.paths.output_dir).resolve()
    one = len(members) == 1
    record = RunRecord(
        run_dir,
        task="eval",
        checkpoint=str(members[0].path) if one else [str(m.path) for m in members],
        checkpoint_sha256=members[0].sha256 if one else [m.sha256 for m in members],
        seed=seeds[0] if one else seeds,
        tta=tta,
        config=OmegaConf.to_container(cfg, resolve=True),
        trained_config=trained,
        manifest=manifest(REPO_ROOT),
        precision=precision,
        precision_reason=why,
    )
    with recorded(record, evaluation=True):
        metrics = _test(cfg, members, trained, run_dir, record, tta)
    if one:
        epoch, step = metrics["epochs"], metrics["global_step"]
        weights = f"checkpoint {members[0].path} (epoch {epoch}, step {step})"
    else:
        weights = f"an ensemble of {len(members)} checkpoints (seeds {seeds})"
    if tta:
        weights += ", each digit also shifted one pixel four ways"
    log.info(summary(metrics, weights))
    return metrics


def _check_data_not_overridden(cfg: DictConfig, trained: dict[str, Any], seeds: list) -> None:
    """The command line's data settings that the checkpoint's replace, refused where they differ:
    a checkpoint trained on MNIST tested MNIST when `data.dataset=FashionMNIST` was given, and
    reported its accuracy as if it had not. The same for a seed, which a test never uses."""
    from mnist_cnn.group_checks import given_on_command_line

    given = given_on_command_line()
    differ = [
        f"data.{key}={cfg.data.get(key)} (the checkpoint's: {trained[key]})"
        for key in DATA_FROM_CHECKPOINT
        if {f"data.{key}", "data"} & given and key in trained and cfg.data.get(key) != trained[key]
    ]
    if "seed" in given and cfg.get("seed") is not None and [cfg.seed] != seeds:
        whose = "the checkpoint's" if len(seeds) == 1 else "the checkpoints'"
        differ.append(f"seed={cfg.seed} ({whose}: {', '.join(map(str, seeds))})")
    if differ:
        raise UserError(
            f"{', '.join(differ)}: eval.py tests a checkpoint on the data it was trained to read, "
            "with the batches its run tested (so test/acc and test/loss equal the run's), and a "
            "test draws nothing at random: these come from the checkpoint; drop them "
            "(data.data_dir says where the files are)"
        )


def _check_members_agree(members: list[checkpoints.Checkpoint]) -> None:
    """An ensemble's members must have seen the same test digits the same way."""
    first = members[0]
    expected = {k: first.config()["data"].get(k) for k in ("dataset", "normalize")}
    for other in members[1:]:
        got = {k: other.config()["data"].get(k) for k in expected}
        differ = [f"{k}={got[k]!r} (not {v!r})" for k, v in expected.items() if got[k] != v]
        if differ:
            raise UserError(
                f"{other.path}: trained with {', '.join(differ)} as in {first.path}; an "
                "ensemble's checkpoints must share the dataset and its normalisation: "
                "leave this one out or pick checkpoints trained alike"
            )


def _precision(cfg: DictConfig, trained: dict[str, Any]) -> tuple[str, str]:
    """auto: the precision the checkpoint was trained and tested in, so test/acc and test/loss
    come out the same; runs from before precision=auto existed were fp32."""
    requested = cfg.trainer.precision
    if requested != "auto":
        return resolve_precision(requested)
    as_trained = (trained.get("trainer") or {}).get("precision", "32-true")
    if as_trained == "auto":  # not resolved: cannot happen for checkpoints train.py writes
        return resolve_precision("auto", cfg.trainer.get("accelerator", "auto"))
    return str(as_trained), "auto: as the checkpoint was trained"


def _test(cfg, members, trained, run_dir, record, tta) -> dict[str, Any]:
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
    nets = [m.build_net(in_channels=channels, image_size=height) for m in members]
    # one network tests as itself (its outputs unchanged); several, or TTA, vote through Ensemble
    net = nets[0] if len(nets) == 1 and not tta else Ensemble(nets, tta=tta)
    ckpt = members[0]
    module = ClassifierModule(
        net=net,
        optimizer=_no_training,
        num_classes=datamodule.num_classes,
        channels_last=trained.get("channels_last", False),
        config=trained,
    )
    # epoch is 0-based when Lightning saves (last/best are written in the epoch they end)
    module.trained_epochs = int(ckpt.data["epoch"]) + 1
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # Ctrl-C / SIGTERM: InterruptedDuringTest and exit 130 / 143, not Lightning's exit 1
    interrupt = GracefulInterrupt(run_dir)
    callbacks.append(interrupt)
    logger = False
    if cfg.get("logger"):
        # the run is named by the seed the checkpoint was trained with (an ensemble: all of them)
        seed = "+".join(str(m.config().get("seed")) for m in members)
        named = {"seed": seed} if "seed" in cfg.logger else {}
        logger = instantiate(cfg.logger, **named)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    start = time.perf_counter()
    with interrupt.giving_back():
        result = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    record.update(
        **results_from_test(result, callbacks),
        status="completed",
        test_weights=ckpt.path.name if len(members) == 1 else [m.path.name for m in members],
        epochs=module.trained_epochs,
        global_step=int(ckpt.data["global_step"]),
        weights_sha256=state_dict_sha256(net),
        test_seconds=time.perf_counter() - start,
        train_seconds=0.0,
        run_dir=str(run_dir),
    )
    return record.data
