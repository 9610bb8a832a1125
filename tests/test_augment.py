"""Per-digit random affine augmentation: seeded by step, identity at zero, training batches only."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from mnist_cnn.data.augment import RandomAffineBatch
from mnist_cnn.data.mnist import MNISTDataModule


def test_augmentation_is_seeded_by_step_and_identity_at_zero():
    x = torch.rand(6, 1, 28, 28)
    aug = RandomAffineBatch(degrees=15, translate=0.1, scale=(0.9, 1.1), seed=3)
    assert torch.equal(aug(x, step=7), aug(x, step=7))
    assert not torch.equal(aug(x, step=7), aug(x, step=8))
    same = x[:1].expand(2, -1, -1, -1)
    first, second = aug(same, step=7)
    assert not torch.equal(first, second)  # each digit of a batch gets its own transform
    still = RandomAffineBatch(degrees=0, translate=0, scale=(1, 1))
    torch.testing.assert_close(still(x, 0), x, atol=1e-5, rtol=0)


def test_augmentation_only_touches_training_batches(tiny_data_dir):
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, augment={"degrees": 20}, seed=1)
    dm.prepare_data()
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    dm.trainer = SimpleNamespace(training=False, global_step=0)
    plain = dm.on_after_batch_transfer(batch, 0)[0]
    dm.trainer = SimpleNamespace(training=True, global_step=0)
    augmented = dm.on_after_batch_transfer(batch, 0)[0]
    assert torch.equal(plain, batch[0].float() / 255) and not torch.equal(plain, augmented)
