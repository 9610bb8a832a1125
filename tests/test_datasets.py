"""Datasets beside MNIST: Fashion-MNIST from Debian's package, checked as MNIST is."""

from __future__ import annotations

import gzip
import json

import pytest
from helpers.data import make_digits
from helpers.runs import run_train

from mnist_cnn.data import sources
from mnist_cnn.data.idx import write_idx
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.errors import UserError

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
