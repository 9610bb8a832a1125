"""Stop cleanly on Ctrl-C / SIGTERM and resume bit-exactly.

Lightning turns Ctrl-C into sys.exit(1) wherever it lands (possibly mid optimizer step) and stops on
SIGTERM only at the end of an epoch; neither saves a checkpoint. Here a signal only sets a flag:
the current batch finishes, a checkpoint is written, and fit stops. Lightning does not keep RNG
state in checkpoints, so torch's global generator (dropout) is stored with every checkpoint, and
a mid-epoch resume tells the sampler how many batches of the epoch were already trained on.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mnist_cnn.errors import EXIT_CODES, InterruptedDuringTest, TrainingInterrupted
from mnist_cnn.stop_signals import handler_for


class GracefulInterrupt(L.Callback):
    """In fit: finish the batch, save, stop. In test: stop at once (a partial test is worth
    nothing), with the same exit codes, instead of Lightning's sys.exit(1)."""

    def __init__(self, dirpath: str | Path, filename: str = "interrupted.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.received: int | None = None
        self._stage = "fit"
        self._new_epoch = False
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stage == "test":
            raise InterruptedDuringTest(signum)  # not a KeyboardInterrupt: Lightning would exit(1)
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        self.received = signum

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage in ("fit", "test"):
            self._stage = stage
            for signum in EXIT_CODES:
                handler = handler_for(signum, self._on_signal)
                self._previous[signum] = signal.signal(signum, handler)

    def _own_the_signals(self) -> None:
        """Lightning registers its own SIGTERM handler after setup: in DDP it makes each rank
        raise at its own step (the others then fail mid-all-reduce). Ours, alone, stops every
        rank at the same step with a checkpoint."""
        for signum in EXIT_CODES:
            signal.signal(signum, handler_for(signum, self._on_signal))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._own_the_signals()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._own_the_signals()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._give_back_the_signals()

    @contextlib.contextmanager
    def giving_back(self) -> Iterator[None]:
        """Around trainer.fit or trainer.test. After an error Lightning calls no teardown hook,
        and its own teardown puts back the handlers it found (ours), so a failed run would leave
        them behind: in a notebook the next cell's first Ctrl-C would only set a flag here. A
        stop in progress keeps them until its process leaves (its checkpoint and record are
        still being written; a second Ctrl-C still means "do not wait")."""
        try:
            yield
        except BaseException as exc:
            if self.received is None and not isinstance(exc, InterruptedDuringTest):
                self._give_back_the_signals()
            raise

    def _give_back_the_signals(self) -> None:
        while self._previous:
            signum, handler = self._previous.popitem()
            signal.signal(signum, handler)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.world_size > 1:
            # every rank acts on the agreed signal only, never on its own: a signal that lands
            # during the all-reduce stays in self.received and is agreed on at the next step
            agreed = _agreed(trainer, self.received) if _agree_now(trainer) else None
            if agreed is None:
                return
            self.received = agreed
        if self.received is not None:
            trainer.save_checkpoint(
                self.path, weights_only=False
            )  # Lightning writes a temp file, then renames it
            raise self.interrupted(self.path)

    def agreed_after_fit(self, trainer: L.Trainer) -> int | None:
        """The signal any rank received after its last training step (None: none did)."""
        if trainer.world_size > 1:
            self.received = _agreed(trainer, self.received)
        return self.received

    def interrupted(self, checkpoint: Path) -> TrainingInterrupted:
        """What the signal received means, saved to `checkpoint`."""
        from mnist_cnn.distributed import launcher_gone

        why = " (the launcher of the ranks died; each rank saved and stopped)"
        return TrainingInterrupted(self.received, checkpoint, why if launcher_gone() else "")

    def state_dict(self) -> dict[str, Any]:
        return {"torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "torch_rng" in state_dict:
            torch.set_rng_state(state_dict["torch_rng"])

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "resume_at"):
            return
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        epochs = loop.get("epoch_progress", {}).get("current", {})
        batches = loop.get("epoch_loop.batch_progress", {}).get("current", {})
        epoch = checkpoint.get("epoch", 0)
        if epochs.get("processed", 0) < epochs.get("ready", 0):  # saved inside an epoch
            datamodule.resume_at(epoch, batches.get("processed", 0))
        else:  # saved at an epoch's end: the next one starts from its first batch
            datamodule.resume_at(epoch + 1, 0)
            self._new_epoch = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # an epoch-end checkpoint holds that epoch's running train metrics (saved before
        # Lightning resets them): the resumed run's first epoch must not add to them
        if self._new_epoch and hasattr(pl_module, "reset_train_metrics"):
            pl_module.reset_train_metrics()
        self._new_epoch = False


def _agree_now(trainer: L.Trainer) -> bool:
    """Every step on a CPU; on an accelerator reading the agreed flag waits for the device, so
    every log_every_n_steps steps (the same steps on every rank: they share global_step)."""
    if trainer.strategy.root_device.type == "cpu":
        return True
    return trainer.global_step % max(1, trainer.log_every_n_steps) == 0


def _agreed(trainer: L.Trainer, received: int | None) -> int | None:
    """The signal any rank has received, on every rank (one tiny all-reduce a step): a signal
    reaches the ranks at different steps, and they must save the checkpoint together."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return received
    flag = torch.tensor([received or 0], device=trainer.strategy.root_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None
