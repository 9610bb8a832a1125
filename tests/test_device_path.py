"""The device-resident data path: batches cut where the model is, with no DataLoader, the same
batches as the DataLoader path, and no host read of a device tensor in a training step (each
would wait for a GPU) except where a value is logged or checked."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mnist_cnn.commands import hydra_override
from mnist_cnn.data.batches import DeviceBatches, EpochBatchSampler, InMemoryBatches
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.errors import EXIT_CODES, TrainingDiverged
from mnist_cnn.train import compose_config, run

sys.path.insert(0, str(Path(__file__).parent))
from helpers.device_probe import CountHostReads  # noqa: E402


def _data(n: int = 203) -> InMemoryBatches:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    return InMemoryBatches(images, torch.randint(0, 10, (n,), generator=g))


def _epochs(loader, sampler: EpochBatchSampler, epochs=(0, 1)) -> list[list[torch.Tensor]]:
    out = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        out.append([torch.cat([x.flatten(1).float(), y[:, None].float()], 1) for x, y in loader])
    return out


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2), (2, 3)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_device_batches_are_the_dataloaders_batches(rank, world, shuffle):
    data = _data()

    def sampler():
        return EpochBatchSampler(len(data), 16, shuffle=shuffle, seed=7, rank=rank, world=world)

    a, b = sampler(), sampler()
    ours = DeviceBatches(data, a, "cpu")
    theirs = DataLoader(data, sampler=b, batch_size=None)
    assert len(ours) == len(theirs)
    mine, reference = _epochs(ours, a), _epochs(theirs, b)
    assert [len(e) for e in mine] == [len(e) for e in reference] and len(mine[0]) > 2
    for x, y in zip(sum(mine, []), sum(reference, []), strict=True):
        assert torch.equal(x, y)
    if shuffle:
        assert not torch.equal(mine[0][0], mine[1][0])  # a new order each epoch
    # Lightning calls set_epoch through .sampler; an unshuffled loader is sequential to it
    assert hasattr(ours, "sampler") == shuffle


def test_a_resumed_epoch_skips_the_batches_already_trained():
    data = _data()
    whole = EpochBatchSampler(len(data), 16, shuffle=True, seed=3)
    resumed = EpochBatchSampler(len(data), 16, shuffle=True, seed=3)
    resumed.resume_at(1, 5)
    full = _epochs(DeviceBatches(data, whole, "cpu"), whole, epochs=(1,))[0]
    rest = _epochs(DeviceBatches(data, resumed, "cpu"), resumed, epochs=(1,))[0]
    assert len(rest) == len(full) - 5
    assert all(torch.equal(x, y) for x, y in zip(rest, full[5:], strict=True))


def test_no_dataloader_unless_workers_are_asked_for(tiny_data_dir):
    def loaders(**kwargs):
        dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, **kwargs)
        dm.prepare_data()
        dm.setup("fit")
        return dm.train_dataloader(), dm.test_dataloader()

    assert all(isinstance(x, DeviceBatches) for x in loaders())
    assert all(isinstance(x, DataLoader) for x in loaders(num_workers=1))


def _run(tiny_data_dir, tmp_path, *extra):
    overrides = [hydra_override("data.data_dir", str(tiny_data_dir)), "trainer.max_epochs=2",
                 "data.batch_size=16", "callbacks=minimal", *extra]  # fmt: skip
    return run(compose_config(overrides, tmp_path / "run"))


def test_a_training_step_reads_nothing_back_but_what_it_logs(tiny_data_dir, tmp_path):
    _run(
        tiny_data_dir, tmp_path, "trainer.log_every_n_steps=10",
        "+callbacks.probe._target_=helpers.device_probe.CountHostReads",
        "data.augment={degrees: 10, translate: 0.1, scale: [0.9, 1.1]}",
        "+callbacks.curves._target_=mnist_cnn.callbacks.curves.LearningCurves",
    )  # fmt: skip
    counts = CountHostReads.last.counts
    assert len(counts) > 50  # 34 steps an epoch, two epochs, less each epoch's first
    last_of_epoch = {33, 67}  # where the divergence flag is read, before the epoch's checkpoint
    reading = {step for step, n in counts.items() if n}
    # Lightning hands the logger its values at global step multiples of 10, the curves read
    # theirs at the step after: nothing else reads a tensor back
    assert reading <= {s for s in counts if (s + 1) % 10 in (0, 1)} | last_of_epoch, counts
    assert {10, 20} <= reading  # the probe sees the reads there are


@pytest.mark.parametrize("ends", ["completed", "diverged"])
def test_a_run_in_process_gives_the_signals_back_however_it_ends(tiny_data_dir, tmp_path, ends):
    """A notebook calls run() in its kernel: a run that failed must not leave its Ctrl-C handler
    behind, or the next cell's first interrupt would only set a flag of the finished run."""
    mine = signal.signal(signal.SIGINT, signal.default_int_handler)  # what a kernel has
    before = {s: signal.getsignal(s) for s in EXIT_CODES}
    try:
        blow_up = [
            "+callbacks.boom._target_=helpers.device_probe.BlowUpAt",
            "+callbacks.boom.step=5",
        ]
        with pytest.raises(TrainingDiverged) if ends == "diverged" else contextlib.nullcontext():
            _run(tiny_data_dir, tmp_path, *(blow_up if ends == "diverged" else []))
        assert {s: signal.getsignal(s) for s in EXIT_CODES} == before
        with pytest.raises(KeyboardInterrupt):  # the kernel's interrupt interrupts, at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    finally:
        signal.signal(signal.SIGINT, mine)


@pytest.mark.parametrize("check_every,found", [(None, ""), (4, " (found 2 steps later")])
def test_a_divergence_names_the_step_it_began(tiny_data_dir, tmp_path, check_every, found):
    # every step on a CPU (the loss is on the host already); every few where reading it waits
    extra = [f"+callbacks.boom.check_every={check_every}"] if check_every else []
    with pytest.raises(TrainingDiverged, match=rf"at epoch 1, step 5{'' if found else ';'}") as e:
        _run(tiny_data_dir, tmp_path, "+callbacks.boom._target_=helpers.device_probe.BlowUpAt",
             "+callbacks.boom.step=5", *extra)  # fmt: skip
    assert found in str(e.value)
