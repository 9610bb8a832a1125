"""Fashion-MNIST from Debian's copy, augmentation, schedules and the stronger CNN."""

from __future__ import annotations

import functools
import gzip
import json
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from helpers.data import make_digits
from helpers.runs import quiet_trainer, run_train

from mnist_cnn.data import sources
from mnist_cnn.data.augment import RandomAffineBatch
from mnist_cnn.data.idx import write_idx
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.errors import UserError
from mnist_cnn.models.bn_cnn import BatchNormCNN
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.module import ClassifierModule

DEBIAN = sources.SYSTEM_COPIES["FashionMNIST"]
HAS_DEBIAN_FASHION = (DEBIAN / "train-images-idx3-ubyte.gz").is_file()


@pytest.fixture
def fake_debian(tmp_path, monkeypatch):
    """A gzipped copy like Debian's, of small generated files (their sizes made canonical)."""
    system = tmp_path / "system"
    system.mkdir()
    sizes = {}
    for prefix, n in (("train", 100), ("t10k", 40)):
        images, labels = make_digits(n, 0)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            write_idx(tmp_path / name, array)
            raw = (tmp_path / name).read_bytes()
            (system / f"{name}.gz").write_bytes(gzip.compress(raw))
            sizes[name] = len(raw)
    monkeypatch.setitem(sources.SYSTEM_COPIES, "FashionMNIST", system)
    monkeypatch.setattr(sources, "SIZES", sizes)
    return system


def test_fashion_mnist_comes_from_the_system_copy_with_its_class_names(fake_debian, tmp_path):
    dm = MNISTDataModule(data_dir=tmp_path / "data", dataset="FashionMNIST", download=False)
    dm.prepare_data()
    dm.setup()
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [90, 10, 40]
    assert dm.class_names[:2] == ["T-shirt/top", "Trouser"] and dm.num_classes == 10
    assert dm.image_shape == (1, 28, 28)


def test_a_system_copy_of_the_wrong_size_is_refused(fake_debian, tmp_path, monkeypatch):
    monkeypatch.setitem(sources.SIZES, "t10k-labels-idx1-ubyte", 999)
    dm = MNISTDataModule(data_dir=tmp_path / "data", dataset="FashionMNIST", download=False)
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz: decompresses to 48 bytes"):
        dm.prepare_data()
    assert not (tmp_path / "data" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()


def test_a_corrupt_system_copy_is_refused(fake_debian, tmp_path):
    gz = fake_debian / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:20])
    dm = MNISTDataModule(data_dir=tmp_path / "data", dataset="FashionMNIST", download=False)
    with pytest.raises(UserError, match="train-labels-idx1-ubyte.gz: cannot decompress"):
        dm.prepare_data()


def test_missing_fashion_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sources.SYSTEM_COPIES, "FashionMNIST", tmp_path / "none")
    dm = MNISTDataModule(data_dir=tmp_path / "data", dataset="FashionMNIST", download=False)
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        dm.prepare_data()


@pytest.mark.skipif(not HAS_DEBIAN_FASHION, reason="apt-get install dataset-fashion-mnist")
@pytest.mark.slow
def test_train_py_on_real_fashion_mnist(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(
        "data=fashion_mnist",
        f"data.data_dir={tmp_path / 'data'}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=40",
        run_dir=run_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["test/total"] == 10_000 and m["test/acc"] > 0.5
    assert m["class_counts"]["test"] == [1000] * 10  # Fashion-MNIST's balanced test set
    assert m["test/per_class"][0]["class"] == "T-shirt/top"
    assert (run_dir / "figures" / "confusion_counts.png").is_file()


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


class _LearningRates(L.Callback):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def _schedule(tiny_data_dir, tmp_path, lr: float, scheduler) -> list[float]:
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)
    factory = None if scheduler is None else functools.partial(scheduler)
    module = ClassifierModule(
        SimpleCNN(), functools.partial(torch.optim.AdamW, lr=lr), scheduler=factory
    )
    rates = _LearningRates()
    trainer = quiet_trainer(tmp_path / f"{lr}", max_epochs=2, callbacks=[rates])
    trainer.fit(module, datamodule=dm)
    if scheduler is not None:
        assert trainer.lr_scheduler_configs[0].interval == "step"
    assert len(rates.seen) == 2 * 9 == trainer.global_step  # ceil(540 / 64) per epoch
    return rates.seen


@pytest.mark.parametrize(
    "scheduler",
    [None, torch.optim.lr_scheduler.CosineAnnealingLR, torch.optim.lr_scheduler.OneCycleLR],
    ids=["constant", "cosine", "onecycle"],
)
def test_the_learning_rate_has_one_home_under_every_schedule(tiny_data_dir, tmp_path, scheduler):
    """optimizer.lr is the peak of every schedule, spanning the whole run: two learning rates
    give two schedules (one-cycle's own max_lr once overwrote the optimizer's lr)."""
    low, high = (_schedule(tiny_data_dir, tmp_path, lr, scheduler) for lr in (1e-3, 5e-3))
    # the peak within one step of the schedule (one-cycle may fall between two batches)
    assert max(low) == pytest.approx(1e-3, rel=0.02) and max(high) == pytest.approx(5e-3, rel=0.02)
    assert [h / lo for h, lo in zip(high, low, strict=True)] == pytest.approx([5.0] * len(low))
    if scheduler is not None:  # the schedule moves and ends near zero, at the run's last step
        assert len(set(low)) > 2 and low[-1] < 0.1 * max(low)


def test_batchnorm_cnn_shapes_and_parameters():
    net = BatchNormCNN()
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) == 431_594
    assert isinstance(net.conv1[1], torch.nn.BatchNorm2d) and net.conv1[0].bias is None
