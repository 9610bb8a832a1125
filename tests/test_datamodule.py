"""MNISTDataModule on generated IDX files: tensors, split, shuffling, errors."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import REAL_DATA, ROOT, write_mnist

from mnist_cnn.commands import hydra_override
from mnist_cnn.data.idx import write_idx
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.data.sources import default_data_dir
from mnist_cnn.errors import UserError


def loaded(data_dir, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(**{"data_dir": data_dir, "download": False, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def first_batch(loader):
    return next(iter(loader))


def test_split_sizes_follow_keras_validation_split(tiny_data_dir):
    dm = loaded(tiny_data_dir)
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [540, 60, 200]
    dm = loaded(tiny_data_dir, val_split=0.25)
    assert [len(dm.splits[s]) for s in ("train", "val")] == [450, 150]


def test_validation_is_the_last_fraction_whatever_the_seed(tiny_data_dir):
    a, b = loaded(tiny_data_dir, seed=1), loaded(tiny_data_dir, seed=2)
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)
    raw = torch.from_numpy(
        np.fromfile(tiny_data_dir / "MNIST/raw/train-images-idx3-ubyte", np.uint8)
    )
    last60 = raw[16:].reshape(600, 1, 28, 28)[540:]
    assert torch.equal(a.splits["val"].images, last60)


def test_batches_are_scaled_float_images_with_int64_labels(tiny_data_dir):
    dm = loaded(tiny_data_dir, batch_size=32)
    x, y = dm.on_after_batch_transfer(first_batch(dm.train_dataloader()), 0)
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() == 1.0
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))
    assert dm.image_shape == (1, 28, 28) and dm.num_classes == 10
    assert len(dm.train_dataloader()) == 17  # ceil(540 / 32): the last, partial batch is kept


def test_normalize_standardises(tiny_data_dir):
    dm = loaded(tiny_data_dir, normalize=True)
    x, _ = dm.on_after_batch_transfer(first_batch(dm.val_dataloader()), 0)
    assert x.min() == pytest.approx((0 - 0.1307) / 0.3081, abs=1e-5)


def test_a_resumed_epoch_skips_what_was_trained_even_before_set_epoch():
    from mnist_cnn.data.batches import EpochBatchSampler

    whole = EpochBatchSampler(100, 10, shuffle=True, seed=3)
    whole.set_epoch(2)
    expected = [b.tolist() for b in whole][4:]
    resumed = EpochBatchSampler(100, 10, shuffle=True, seed=3)
    resumed.resume_at(2, 4)  # loader workers draw indices before Lightning's set_epoch
    assert [b.tolist() for b in resumed] == expected
    resumed.set_epoch(3)  # later epochs are whole again
    assert len(list(resumed)) == 10


def test_shuffling_is_seeded_per_epoch(tiny_data_dir):
    def order(seed, epoch):
        loader = loaded(tiny_data_dir, seed=seed).train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat([y for _, y in loader])

    assert torch.equal(order(7, 0), order(7, 0))
    assert not torch.equal(order(7, 0), order(8, 0))
    assert not torch.equal(order(7, 0), order(7, 1))
    assert sorted(order(7, 1).tolist()) == sorted(order(7, 0).tolist())  # a permutation


def test_eval_loaders_keep_file_order(tiny_data_dir):
    dm = loaded(tiny_data_dir, eval_batch_size=64)
    labels = torch.cat([y for _, y in dm.test_dataloader()])
    assert torch.equal(labels, dm.splits["test"].labels)


def test_val_split_zero_skips_validation(tiny_data_dir):
    dm = loaded(tiny_data_dir, val_split=0.0)
    assert len(dm.splits["train"]) == 600 and dm.val_dataloader() == []


@pytest.mark.reliability("H3")
def test_val_split_leaving_no_training_sample(tmp_path):
    from helpers.data import write_mnist

    root = write_mnist(tmp_path, n_train=3, n_test=2)
    with pytest.raises(UserError, match=r"data.val_split=0.9 leaves no training sample out of 3"):
        loaded(root, val_split=0.9)


@pytest.mark.reliability("D7")
def test_missing_files_without_download_names_dir_files_and_fixes(tmp_path):
    with pytest.raises(UserError) as err:
        loaded(tmp_path / "empty")
    msg = str(err.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in msg
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in msg
    assert "data.data_dir" in msg and "MNIST_DATA_DIR" in msg and "data.download=true" in msg


@pytest.mark.reliability("D8")
def test_download_without_network_fails_fast_and_leaves_nothing(tmp_path):
    dm = MNISTDataModule(data_dir=tmp_path, download=True)
    start = time.monotonic()
    with pytest.raises(UserError, match="download failed"):
        dm.prepare_data()
    assert time.monotonic() - start < 10
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.mark.reliability("D9")
@pytest.mark.parametrize("download", [False, True])
def test_leftovers_of_an_interrupted_download_are_not_accepted(fresh_data_dir, download):
    # torchvision downloads NAME.gz next to NAME, then extracts: a kill leaves a partial .gz and/or
    # a truncated extracted file
    raw = fresh_data_dir / "MNIST" / "raw"
    images = raw / "train-images-idx3-ubyte"
    body = images.read_bytes()
    images.write_bytes(body[: len(body) // 3])
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: truncated"):
        loaded(fresh_data_dir, download=download)


@pytest.mark.reliability("D10")
def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"data.data_dir=.*/f is a file, not a directory"):
        loaded(tmp_path / "f")


def _without_root_file_access() -> None:
    """In the child before it runs train.py: drop root's power to read and search any file
    (CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, from the bounding set, so the exec'd program has
    neither), leaving it root for everything else: its Python under /root stays its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.slow
@pytest.mark.reliability("D10")
def test_an_unreadable_data_file_stops_train_py_naming_it_and_why(tmp_path):
    """Mode 000 on one data file. Root reads any file, so where the suite runs as root (as CI
    does) train.py runs without root's file access, meeting the file as a user's own run would:
    exit 2, the file and the reason in one line, and the run dir's record says the same."""
    data = write_mnist(tmp_path / "data")
    target = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    target.chmod(0)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), hydra_override("data.data_dir", str(data)),
         "callbacks=minimal", "model=mlp", hydra_override("hydra.run.dir", str(tmp_path / "run"))],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        preexec_fn=_without_root_file_access if os.geteuid() == 0 else None,
    )  # fmt: skip
    said = f"{target}: cannot read (Permission denied); check its permissions"
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert said in proc.stderr and "Traceback" not in proc.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and said in record["error"]


@pytest.mark.reliability("D9")
def test_corrupt_file_stops_setup_with_its_name(fresh_data_dir):
    labels = fresh_data_dir / "MNIST/raw/t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte: truncated"):
        loaded(fresh_data_dir)


def test_canonical_size_with_other_content_warns(fresh_data_dir, caplog):
    # same byte count as the real t10k labels file, different bytes: warn, do not fail
    write_idx(fresh_data_dir / "MNIST/raw/t10k-labels-idx1-ubyte", np.zeros(10000, np.uint8))
    write_idx(
        fresh_data_dir / "MNIST/raw/t10k-images-idx3-ubyte", np.zeros((10000, 28, 28), np.uint8)
    )
    with caplog.at_level(logging.WARNING):
        loaded(fresh_data_dir)
    assert "t10k-labels-idx1-ubyte: md5 differs from the canonical" in caplog.text


def test_default_data_dir_prefers_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path.resolve()
    monkeypatch.delenv("MNIST_DATA_DIR")
    assert default_data_dir().name in ("data",)


@pytest.mark.reliability("DAT1")
@pytest.mark.parametrize("system", ["/dev", "/proc/self", "/sys", "/run"])
def test_a_dataset_is_never_created_in_a_system_directory(system):
    from mnist_cnn.data.mnist import MNISTDataModule

    datamodule = MNISTDataModule(data_dir=system, download=True)
    with pytest.raises(UserError, match=r"^data.data_dir=\S+: /\w+ is a system directory"):
        datamodule.prepare_data()
    assert not Path(system, "MNIST").exists()


@pytest.mark.reliability("DAT2")
@pytest.mark.parametrize("download", [False, True])
def test_gzipped_files_are_named_and_the_advice_fits_the_setting(tmp_path, download):
    import gzip

    from mnist_cnn.data.mnist import MNISTDataModule

    data = write_mnist(tmp_path / "data")
    raw = data / "MNIST" / "raw"
    for path in list(raw.iterdir()):
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(path.read_bytes())
        path.unlink()
    with pytest.raises(UserError) as info:
        MNISTDataModule(data_dir=data, download=download).prepare_data()
    message = str(info.value)
    assert (
        "Found compressed copies of train-images-idx3-ubyte" in message and "gunzip -k" in message
    )
    assert ("set data.download=true" in message) == (not download)


def _roles(tmp: Path, dataset: str, mapping: dict[str, str]) -> Path:
    """data_dir/<dataset>/raw whose files link to the real MNIST files named by mapping."""
    raw = tmp / dataset / "raw"
    raw.mkdir(parents=True)
    for name, real in mapping.items():
        (raw / name).symlink_to(REAL_DATA / "MNIST" / "raw" / real)
    return tmp


ALL_FOUR = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]  # fmt: skip


@pytest.mark.reliability("RB1")
@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason="no real MNIST files")
@pytest.mark.parametrize("seed", range(3))
def test_a_real_file_in_another_role_is_named_by_what_it_holds(tmp_path, seed):
    """Generated: two of the four real files trade places, each keeping the right format
    (the test images are valid images). They used to be trained on without a word."""
    import random

    kind = random.Random(seed).choice(["images", "labels"])
    train, test = (f for f in ALL_FOUR if kind in f)
    swapped = random.Random(seed).choice([{train: test}, {test: train}, {train: test, test: train}])
    first = next(name for name in ALL_FOUR if name in swapped)
    held = "test" if first.startswith("train") else "training"
    with pytest.raises(UserError, match=rf"{first} holds MNIST's {held} {kind} \(identified by "):
        loaded(_roles(tmp_path, "MNIST", {name: name for name in ALL_FOUR} | swapped))


@pytest.mark.reliability("RB1")
@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason="no real MNIST files")
def test_mnist_files_under_another_datasets_name_are_refused(tmp_path):
    data_dir = _roles(tmp_path, "FashionMNIST", {name: name for name in ALL_FOUR})
    with pytest.raises(UserError, match=r"holds MNIST's training images .* not the "
                       r"FashionMNIST's training images .*data.dataset=MNIST"):  # fmt: skip
        loaded(data_dir, dataset="FashionMNIST")
    assert len(loaded(_roles(tmp_path / "ok", "MNIST", {n: n for n in ALL_FOUR})).splits["test"])
