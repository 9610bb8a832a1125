"""Every check of a run's inputs that needs more than the config's values, in one place, before
Lightning loads (a typo answers in seconds): the device, the scale and its launcher, the data
files, the checkpoint to resume from, eval's one process and the settings it would not use.
Value checks: config.validate."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_cnn.errors import UserError


def check_accelerator(cfg: DictConfig) -> None:
    """trainer.accelerator names a device this process can use (imports torch, not Lightning)."""
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator not in ("gpu", "cuda", "mps"):
        return
    import torch

    if accelerator == "mps":
        available, what = torch.backends.mps.is_available(), "no Apple GPU (MPS)"
    else:
        available, what = torch.cuda.is_available(), "no CUDA GPU"
    if not available:
        raise UserError(
            f"trainer.accelerator={accelerator}: {what} is visible to this process; use "
            "trainer.accelerator=auto (a GPU where there is one, else the CPU) or cpu"
        )


def check_scale(cfg: DictConfig) -> None:
    """trainer.devices and num_nodes this machine and launcher can give (imports torch only)."""
    from mnist_cnn import distributed

    trainer = cfg.get("trainer") or {}
    devices, nodes = trainer.get("devices", 1), int(trainer.get("num_nodes", 1) or 1)
    accelerator = trainer.get("accelerator", "auto")
    count = distributed.devices_count(devices)
    world = distributed.world_size_from_launcher()
    if world is not None and count is not None and world != count * nodes:
        raise UserError(
            f"trainer.devices={devices} x trainer.num_nodes={nodes} = {count * nodes} ranks, but "
            f"the launcher (torchrun or srun) started {world}; give trainer.devices=<ranks per "
            "node> and trainer.num_nodes=<nodes> as the launcher has them (torchrun: "
            "--nproc-per-node and --nnodes; srun: --ntasks-per-node and --nodes)"
        )
    if nodes > 1 and not distributed.started_from_outside():
        raise UserError(
            f"trainer.num_nodes={nodes}: the ranks of the other nodes are started by a launcher "
            f"on each node: torchrun --nnodes={nodes} --nproc-per-node=<devices> ... train.py, or "
            "srun under SLURM (docs/scaling.md); on one machine use trainer.devices=N"
        )
    if accelerator in ("cpu",) or count is None:
        if isinstance(devices, (list, ListConfig)) and accelerator == "cpu":
            raise UserError(
                f"trainer.devices={list(devices)}: device indices name GPUs; on the CPU give a "
                "number of processes, e.g. trainer.devices=2"
            )
        return
    import torch

    gpus = torch.cuda.device_count()
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    if wants_gpu and count > gpus:
        raise UserError(
            f"trainer.devices={devices}: {count} GPUs asked, {gpus} visible to this process; "
            f"use trainer.devices={max(gpus, 1)} or fewer"
            + ("" if gpus else ", or trainer.accelerator=cpu for CPU processes")
        )
    if not wants_gpu and isinstance(devices, (list, ListConfig)):
        raise UserError(
            f"trainer.devices={list(devices)}: device indices name GPUs and none is visible; "
            "on the CPU give a number of processes, e.g. trainer.devices=2"
        )


def check_data_links(cfg) -> None:
    """data.data_dir, and its <dataset>/raw below, are not links that loop or lead nowhere (a
    loop ended in Hydra's "Error in call to target", a self-link in "download failed: File
    exists")."""
    data = cfg.get("data")
    root = data.get("data_dir") if data is not None else None
    if not root:
        return
    top = Path(str(root)).expanduser()
    fix = "point data.data_dir at a directory (or remove the link)"
    for path in (
        top,
        top / data.get("dataset", "MNIST"),
        top / data.get("dataset", "MNIST") / "raw",
    ):
        try:
            path.resolve()
        except (RuntimeError, OSError):  # Python raises RuntimeError on a symlink loop
            raise UserError(
                f"data.data_dir={root}: {path} is a symbolic link loop; {fix}"
            ) from None
        if path.is_symlink() and not path.exists():
            raise UserError(
                f"data.data_dir={root}: {path} is a link to {path.readlink()}, which does not "
                f"exist; {fix}"
            )


def check_inputs(cfg):
    """The files a run needs, checked before Lightning loads (seconds, not fifteen): the data files
    when they cannot be fetched, the device, and the checkpoint to resume from, returned as read
    (once)."""
    from mnist_cnn.data import sources  # NumPy only

    check_accelerator(cfg)
    check_scale(cfg)
    check_data_links(cfg)
    data = cfg.get("data")
    if data is not None and not data.get("download", True):
        dataset = data.get("dataset", "MNIST")
        root = data.get("data_dir")
        data_dir = Path(root).expanduser().resolve() if root else sources.default_data_dir(dataset)
        raw_dir = data_dir / dataset / "raw"
        absent = sources.missing(raw_dir)
        if absent and not sources.has_system_copy(dataset):
            why = "data.download=false"
            raise UserError(sources.missing_message(dataset, raw_dir, absent, why))
    if cfg.get("ckpt_path") is None:
        return None
    return read_resume(cfg)


def read_resume(cfg):
    """cfg.ckpt_path read, and refused where the resume would not continue its run or would
    train nothing."""
    from mnist_cnn import checkpoints  # torch, not Lightning
    from mnist_cnn.resumable import check_resumable

    resume = checkpoints.load(cfg.ckpt_path)
    check_resumable(resume.config(), cfg, str(resume.path))
    _check_something_to_train(resume, cfg)
    return resume


def _check_something_to_train(resume, cfg) -> None:
    """The final checkpoint of a run whose record says completed, resumed for no more epochs
    or steps: it trained nothing and recorded the same run again, in a dir of its own. (A run
    stopped between its fit and its test resumes from that file to test: its record says
    interrupted.)"""
    from mnist_cnn.outcome import completed_record

    if resume.path.parent.name != "checkpoints":  # not in a run's <run>/checkpoints/
        return
    record = completed_record(resume.path.parent.parent)
    step = resume.data.get("global_step")
    if record is None or step is None or record.get("global_step") != step:
        return
    if record.get("stopped_early"):  # by a time limit or a callback: theirs to say
        return
    # a budget's or fastest_of's resume keeps the plan its checkpoint holds (planning.apply)
    planned = cfg.get("budget_seconds") is not None or cfg.get("fastest_of") is not None
    length = OmegaConf.create(resume.config()) if planned else cfg
    epochs = OmegaConf.select(length, "trainer.max_epochs", default=None)
    steps = OmegaConf.select(length, "trainer.max_steps", default=-1)
    more_epochs = epochs is None or epochs == -1 or epochs > record.get("epochs", 0)
    if more_epochs and (steps is None or steps == -1 or steps > step):
        return
    raise UserError(
        f"ckpt_path={resume.path}: the final checkpoint of a completed run "
        f"({record.get('run_dir', resume.path.parent.parent)}, epoch {record.get('epochs')}, "
        f"step {step}): resumed with trainer.max_epochs={epochs} it has nothing left to train, "
        "and would record the same run again in a dir of its own; its test numbers are in that "
        f"run's metrics.json, and eval.py ckpt_path={resume.path} tests it again; to train "
        "longer, give a larger trainer.max_epochs (a resume keeps a schedule's length: a new "
        "run, or ~scheduler)"
    )


def check_one_process(cfg) -> None:
    """eval.py tests in one process: refused up front for several devices, nodes or ranks
    (each rank would claim the same run dir, and the result is the same numbers)."""
    from mnist_cnn import distributed
    from mnist_cnn.errors import UserError

    trainer = cfg.get("trainer") or {}
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    count = distributed.devices_count(devices)
    if (count or 1) > 1 or (nodes or 1) != 1 or distributed.started_from_outside():
        asked = f"trainer.devices={devices}, trainer.num_nodes={nodes}"
        if distributed.started_from_outside():
            asked += f", started as rank {distributed.rank()} by torchrun or srun"
        raise UserError(
            f"eval.py tests in one process ({asked}): the 10,000 test digits take seconds, "
            "and one process gives the numbers a DDP run reports; drop trainer.devices and "
            "num_nodes and run eval.py alone (not under torchrun or srun)"
        )


# what a test never reads: settings of training alone (the checkpoint's weights are what it tests)
TRAINING_ONLY = ("data.batch_size", "data.augment", "data.seed") + tuple(
    f"trainer.{name}"
    for name in (
        "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "limit_train_batches",
        "limit_val_batches", "overfit_batches", "val_check_interval", "check_val_every_n_epoch",
        "num_sanity_val_steps", "accumulate_grad_batches", "gradient_clip_val",
        "gradient_clip_algorithm", "reload_dataloaders_every_n_epochs", "sync_batchnorm",
        "detect_anomaly", "log_every_n_steps",
    )
)  # fmt: skip


def check_no_training_settings(cfg, given: set[str]) -> None:
    """eval.py refuses the command line's training settings (`given`: the keys it set), which
    it accepted and left unused, as if a test had run that long or on those batches."""
    from mnist_cnn.callbacks.kinds import acts_in_training_only

    unused = [f"{key}={OmegaConf.select(cfg, key)}" for key in TRAINING_ONLY if key in given]
    callbacks = cfg.get("callbacks") or {}
    unused += [
        f"callbacks.{name} ({callback._target_.rsplit('.', 1)[-1]})"
        for name, callback in callbacks.items()
        if isinstance(callback, DictConfig) and acts_in_training_only(callback.get("_target_"))
    ]
    if unused:
        raise UserError(
            f"{', '.join(unused)}: eval.py tests a checkpoint and trains nothing, so these "
            "training settings would change nothing (a checkpoint of a run that averaged its "
            "weights holds the average); drop them (the test's own: trainer.limit_test_batches, "
            "trainer.precision, data.num_workers, callbacks=evaluate)"
        )
