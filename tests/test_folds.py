"""K-fold cross-validation: disjoint, stratified folds that cover the training set, the same for
every run; data.folds/data.fold through the DataModule, a sweep over the folds, and compare.py."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
from helpers.data import HAS_REAL_MNIST, REAL_DATA, ROOT

from mnist_cnn.data.folds import split, stratified_folds


@pytest.mark.parametrize("seed", range(6))
def test_folds_are_disjoint_stratified_and_cover_every_sample(seed):
    """Generated: class sizes from 1 to 300 over 2-10 classes, K from 2 to 10."""
    rng = random.Random(seed)
    sizes = [rng.randint(1, 300) for _ in range(rng.randint(2, 10))]
    labels = np.concatenate([np.full(n, k) for k, n in enumerate(sizes)])
    np.random.default_rng(seed).shuffle(labels)
    k = rng.randint(2, 10)
    folds = stratified_folds(labels, k)
    every = np.concatenate(folds)
    assert len(every) == len(labels) and len(np.unique(every)) == len(labels)  # disjoint, cover
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for c, n in enumerate(sizes):  # each class within one sample of its share in every fold
        counts = [int((labels[f] == c).sum()) for f in folds]
        assert max(counts) - min(counts) <= 1 and sum(counts) == n
    assert all((a == b).all() for a, b in zip(folds, stratified_folds(labels, k), strict=True))
    train, val = split(labels, k, rng.randrange(k))
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)


@pytest.mark.skipif(not HAS_REAL_MNIST, reason=f"no MNIST files under {REAL_DATA}/MNIST/raw")
def test_five_folds_of_the_real_training_digits():
    from mnist_cnn.data.idx import read_split

    _, labels = read_split(*(REAL_DATA / "MNIST" / "raw" / f for f in
                             ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")))  # fmt: skip
    folds = stratified_folds(labels, 5)
    assert [len(f) for f in folds] == [12_000] * 5
    for f in folds:
        share = np.bincount(labels[f], minlength=10)
        assert (np.abs(share - np.bincount(labels, minlength=10) / 5) <= 1).all()


def test_the_datamodule_validates_on_its_fold_and_tests_on_the_test_set(tiny_data_dir):
    from mnist_cnn.data.mnist import MNISTDataModule

    def loaded(**kw):
        dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, **kw)
        dm.prepare_data()
        dm.setup("fit")
        return dm

    plain = loaded()
    val_sets = []
    for fold in range(3):
        dm = loaded(folds=3, fold=fold)
        assert len(dm.splits["train"]) + len(dm.splits["val"]) == 600
        assert len(dm.splits["val"]) == 200
        assert (dm.splits["test"].labels == plain.splits["test"].labels).all()  # untouched
        val_sets.append({bytes(x.numpy()) for x in dm.splits["val"].images})
    assert not (val_sets[0] & val_sets[1]) and not (val_sets[1] & val_sets[2])


@pytest.mark.parametrize(
    "overrides,named",
    [(["data.folds=1"], "data.folds=1"), (["data.folds=5", "data.fold=5"], "data.fold=5"),
     (["data.fold=2"], "data.fold=2"), (["data.folds=5", "data.fold=-1"], "data.fold=-1")],
)  # fmt: skip
def test_bad_folds_are_refused_naming_them(overrides, named):
    from hydra import compose, initialize_config_dir

    from mnist_cnn.config import validate
    from mnist_cnn.errors import UserError

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with pytest.raises(UserError, match=rf"{named}"):
        validate(cfg)


@pytest.mark.slow
def test_a_sweep_over_the_folds_is_compared_fold_by_fold(tiny_data_dir, tmp_path):
    """`-m data.folds=3 data.fold=0,1,2 seed=1,2`: one group whose replicates are folds x seeds;
    compare.py pools them, splits the variance, and chooses on validation, not on the test set."""
    sweep = tmp_path / "cv"
    args = [
        "-m",
        f"data.data_dir={tiny_data_dir}",
        "data.folds=3",
        "data.fold=0,1,2",
        "seed=1,2",
        "trainer.max_epochs=1",
        "callbacks=minimal",
        "model=mlp",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(ROOT / "compare.py"), str(sweep), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "comparison.json").read_text())
    [group] = report["groups"]
    assert group["test/acc"]["n"] == 6 and sorted(group["folds"]) == [0, 0, 1, 1, 2, 2]
    split_ = group["variance"]
    assert set(split_) == {"fold", "seed", "residual"} and abs(sum(split_.values()) - 1) < 1e-9
    assert "validation folds" in proc.stdout


@pytest.mark.reliability("H7")
def test_more_folds_than_training_samples_is_refused_naming_the_count(tiny_data_dir):
    """It was folds.py's ValueError, a traceback; the count comes from the files, so config
    validation cannot say it."""
    from mnist_cnn.data.mnist import MNISTDataModule
    from mnist_cnn.errors import UserError

    n = 600  # the tiny data's training digits
    for folds in (n + 1, 10 * n):
        dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, folds=folds, fold=0)
        with pytest.raises(UserError, match=rf"^data.folds={folds}: .* holds {n} training"):
            dm.setup("fit")
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, folds=n, fold=n - 1)
    dm.setup("fit")
    assert len(dm.splits["val"].labels) == 1 and len(dm.splits["train"].labels) == n - 1


@pytest.mark.reliability("H7")
def test_a_validation_split_beside_folds_is_refused_not_ignored(tmp_path):
    """With folds, data.fold validates: a data.val_split given beside them was silently unused."""
    from helpers.runs import run_train

    proc = run_train("data.folds=3", "data.val_split=0.2", run_dir=tmp_path / "run", timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "error: data.val_split=0.2 beside data.folds=3: with folds" in proc.stderr
