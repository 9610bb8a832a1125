"""Where a training step goes, layer by layer: `python bench/step.py [--rounds N] [OVERRIDES]`.

The recipe's step (`python train.py OVERRIDES`, the seed workload without any), measured in one
process on the CPU five ways, each adding one layer to the one before; alternating, N rounds;
the median milliseconds between consecutive steps after a warm-up:

  plain      the network's step in a plain PyTorch loop: cut and scale the batch, forward and loss
             under the recipe's precision, backward, optimizer, schedule
  lightning  the same step in a bare LightningModule under a bare Trainer (no logger, callbacks,
             metrics, checkpoints)
  ours       train.py's module, data path and always-on callbacks (callbacks=none, no logger)
  +minimal   callbacks=minimal and the TensorBoard logger
  +recipe    the callbacks and logger the recipe names (the dashboards, at the defaults)

The network, optimizer, schedule, batch size, precision, layout and label smoothing come from the
composed config, built by the project's own build(); augmentation is the recipe's alone (the first
two loops leave it out, and say so). Nothing is written outside a scratch directory, which is
removed at exit.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench import cpu_kind  # noqa: E402  (bench/ is on sys.path: the script's dir)
from mnist_cnn import process  # noqa: E402


class _Batches:
    """Training batches cut from the uint8 split and scaled as the data path does, in the order
    of one seeded permutation (wrapping round): what the plain and the bare loop step over."""

    def __init__(self, datamodule, batch_size: int, count: int) -> None:
        import torch

        split = datamodule.splits["train"]
        self.images, self.labels = split.images, split.labels
        self.mean, self.std = datamodule.mean, datamodule.std
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(0))
        need = batch_size * count
        self.order = order.repeat(need // len(order) + 1)[:need].view(count, batch_size)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        from mnist_cnn.data.batches import scale_images

        for index in self.order:
            yield scale_images(self.images[index], self.mean, self.std), self.labels[index]


def _parts(cfg, scratch: Path):
    from mnist_cnn.build import build

    parts = build(cfg, scratch, None, config={})
    parts.datamodule.setup("fit")
    return parts


def _median_after_warm_up(stamps: list[float], warm_up: int) -> float:
    gaps = [b - a for a, b in zip(stamps[warm_up:], stamps[warm_up + 1 :], strict=False)]
    return statistics.median(gaps)


def plain(cfg, scratch: Path, steps: int, warm_up: int) -> float:
    import torch
    import torch.nn.functional as F

    from mnist_cnn.module import optimizer_and_schedule

    parts = _parts(cfg, scratch)
    module, net = parts.module, parts.net
    batches = _Batches(parts.datamodule, cfg.data.batch_size, warm_up + steps + 1)
    optimizer, schedule = optimizer_and_schedule(
        net.parameters(), module.optimizer_factory, module.scheduler_factory, len(batches)
    )
    bf16 = cfg.trainer.precision == "bf16-mixed"
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic))  # as the Trainer does
    net.train()
    stamps = []
    for x, y in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x.contiguous(memory_format=module.memory_format))
            loss = F.cross_entropy(logits, y, label_smoothing=module.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        stamps.append(time.perf_counter())
    return _median_after_warm_up(stamps, warm_up)


def lightning(cfg, scratch: Path, steps: int, warm_up: int) -> float:
    import lightning as L
    import torch.nn.functional as F

    from mnist_cnn.module import optimizer_and_schedule

    parts = _parts(cfg, scratch)
    module = parts.module

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = parts.net

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x.contiguous(memory_format=module.memory_format))
            return F.cross_entropy(logits, y, label_smoothing=module.label_smoothing)

        def configure_optimizers(self):
            optimizer, schedule = optimizer_and_schedule(
                self.parameters(), module.optimizer_factory, module.scheduler_factory,
                int(self.trainer.estimated_stepping_batches),
            )  # fmt: skip
            if schedule is None:
                return optimizer
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"},
            }

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_batch_end(self, *args, **kwargs) -> None:
            self.stamps.append(time.perf_counter())

    clock = Clock()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=cfg.trainer.precision, max_epochs=1,
        deterministic=cfg.trainer.deterministic, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
        num_sanity_val_steps=0, default_root_dir=str(scratch),
    )  # fmt: skip
    batches = _Batches(parts.datamodule, cfg.data.batch_size, warm_up + steps + 1)
    trainer.fit(Bare(), train_dataloaders=batches)
    return _median_after_warm_up(clock.stamps, warm_up)


def ours(cfg, steps: int) -> float:
    from mnist_cnn import probe

    return probe.measure(cfg, steps=steps)["step_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="timed steps a loop (after 10)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("overrides", nargs="*", help="train.py's key=value overrides")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 2:
        parser.error(f"--rounds {args.rounds} --steps {args.steps}: at least 1 round of 2 steps")
    process.starting_up()
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from mnist_cnn.cli import user_errors
    from mnist_cnn.config import validate
    from mnist_cnn.precision import resolve_precision
    from mnist_cnn.probe import WARMUP_STEPS
    from mnist_cnn.train import compose_config

    scratch = Path(tempfile.mkdtemp(prefix="mnist-step-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # the loops' runs, not kept
    # one process on the CPU, the epochs as given: what this script measures
    overrides = [
        *args.overrides,
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "budget_seconds=null",
    ]
    variants = {
        "ours": ["callbacks=none", "~logger"],
        "+minimal": ["callbacks=minimal"],
        "+recipe": [],
    }
    configs = {}
    for name, extra in {"base": [], **variants}.items():
        try:
            cfg = compose_config([*overrides, *extra], scratch / name)
        except HydraException as exc:
            sys.exit(f"error: bench/step.py {' '.join(args.overrides)}: {exc}")
        with user_errors():
            validate(cfg)
            with open_dict(cfg):
                cfg.trainer.precision, why = resolve_precision(cfg.trainer.precision, "cpu")
        configs[name] = cfg
    base = configs["base"]
    threads = process.configure(base.threads, 1, keep_freed=base.keep_freed_memory)
    process.started()
    logging.disable(logging.INFO)  # Lightning's and the builds' lines about every loop
    print(
        f"CPU: {cpu_kind()}; {threads} torch threads; precision {base.trainer.precision} ({why});"
        f" {args.steps} steps after {WARMUP_STEPS}, {args.rounds} rounds",
        flush=True,
    )
    if base.data.get("augment"):
        print("data.augment: the plain and the bare loop do not augment; ours do", flush=True)
    loops = {
        "plain": lambda: plain(base, scratch / "plain", args.steps, WARMUP_STEPS),
        "lightning": lambda: lightning(base, scratch / "lightning", args.steps, WARMUP_STEPS),
        **{name: (lambda c=configs[name]: ours(c, args.steps)) for name in variants},
    }
    ms: dict[str, list[float]] = {name: [] for name in loops}
    for r in range(args.rounds):  # alternating: this host's drift hits every layer alike
        for name, loop in loops.items():
            ms[name].append(loop() * 1e3)
        print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in ms.items()), flush=True)
    report(ms)
    if args.json:
        args.json.write_text(json.dumps({"ms": ms, "cpu": cpu_kind()}, indent=1))


def report(ms: dict[str, list[float]]) -> None:
    """Each layer's median step and what it adds to the layer before (the median of the rounds'
    differences, so a slow round slows both sides of its own difference)."""
    names = list(ms)
    print(f"\n{'loop':<11}{'ms a step':>10}{'range':>15}{'adds (ms)':>11}{'vs plain':>10}")
    plain_ms = statistics.median(ms[names[0]])
    for i, name in enumerate(names):
        mid = statistics.median(ms[name])
        span = f"{min(ms[name]):.2f}-{max(ms[name]):.2f}"
        adds = ""
        if i:
            added = (a - b for a, b in zip(ms[name], ms[names[i - 1]], strict=True))
            adds = f"{statistics.median(added):+.2f}"
        print(f"{name:<11}{mid:>10.2f}{span:>15}{adds:>11}{mid / plain_ms:>9.2f}x")


if __name__ == "__main__":
    main()
