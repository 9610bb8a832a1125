"""The Projector's files, written without SummaryWriter.add_embedding: the same layout, the same
sprite pixels, the same float32 features read back by TensorBoard's own projector plugin, and
earlier embeddings of the run kept. The dashboards' tests read a whole run's Projector over
TensorBoard's HTTP API and in a browser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins import projector
from tensorboard.plugins.projector.projector_plugin import _read_tensor_tsv_file
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard._embedding import make_sprite

from mnist_cnn.callbacks.projector import sprite_grid, write_embedding


def _config(log_dir) -> projector.ProjectorConfig:
    config = projector.ProjectorConfig()
    text_format.Parse((log_dir / "projector_config.pbtxt").read_text(), config)
    return config


@pytest.mark.parametrize(("n", "channels"), [(1, 1), (7, 3), (150, 1), (1000, 1)])
def test_the_sprite_is_add_embeddings_pixel_for_pixel(tmp_path, n, channels):
    images = torch.rand(n, channels, 28, 28, generator=torch.Generator().manual_seed(n))
    images[0] = 1.0  # the top of the range, where truncation and rounding would differ
    make_sprite(images, str(tmp_path))
    theirs = np.asarray(Image.open(tmp_path / "sprite.png"))
    ours = sprite_grid(images)
    assert np.array_equal(ours, theirs[..., 0] if channels == 1 else theirs)


def test_a_sprite_of_other_channels_is_refused_by_name():
    with pytest.raises(ValueError, match=r"1 or 3 channels, got 2 \(shape \(4, 2, 5, 5\)\)"):
        sprite_grid(torch.zeros(4, 2, 5, 5))


def test_the_files_read_back_as_written_and_earlier_embeddings_stay(tmp_path):
    gen = torch.Generator().manual_seed(0)
    # features as a network makes them: tiny, huge, negative, zeros, values needing 9 digits
    features = torch.randn(40, 16, generator=gen) * torch.logspace(-30, 30, 16)
    features[0] = 0.0
    features = features.numpy().astype(np.float32)
    rows = [[str(i % 10), str((i * 3) % 10), "right" if i % 3 else "wrong"] for i in range(40)]
    images = torch.rand(40, 1, 28, 28, generator=gen)
    # an embedding written by add_embedding first (a run tested before): it stays listed
    writer = SummaryWriter(str(tmp_path))
    writer.add_embedding(torch.zeros(3, 2), global_step=5, tag="older")
    writer.close()
    write_embedding(tmp_path, "test_digits", 1266, features, ["a", "b", "c"], rows, images)
    write_embedding(tmp_path, "test_digits", 1266, features, ["a", "b", "c"], rows, images)
    write_embedding(tmp_path, "test_digits", 2532, features[:5], ["a", "b", "c"], rows[:5],
                    images[:5])  # fmt: skip
    config = _config(tmp_path)
    names = [e.tensor_name for e in config.embeddings]
    assert names == ["older:00005", "test_digits:01266", "test_digits:02532"]  # one of each
    entry = config.embeddings[1]
    assert entry.tensor_path == "01266/test_digits/tensors.tsv"
    assert list(entry.sprite.single_image_dim) == [28, 28]
    back = _read_tensor_tsv_file(str(tmp_path / entry.tensor_path))
    assert back.dtype == np.float32 and np.array_equal(back, features)
    header, *lines = (tmp_path / entry.metadata_path).read_text().splitlines()
    assert header == "a\tb\tc" and [line.split("\t") for line in lines] == rows
    sprite = np.asarray(Image.open(tmp_path / entry.sprite.image_path))
    assert np.array_equal(sprite, sprite_grid(images))


def test_a_damaged_config_is_set_aside_not_overwritten(tmp_path, caplog):
    rng = np.random.default_rng(7)
    features, images = np.ones((3, 4), np.float32), torch.zeros(3, 1, 5, 5)
    rows = [["1", "1", "right"]] * 3
    damaged = []
    for attempt in range(2):  # damaged twice: each damaged file is kept
        junk = rng.integers(0, 256, 300, dtype=np.uint8).tobytes() + b"embeddings {"
        (tmp_path / "projector_config.pbtxt").write_bytes(junk)
        damaged.append(junk)
        with caplog.at_level("WARNING"):
            write_embedding(tmp_path, "t", attempt, features, ["a", "b", "c"], rows, images)
    assert (tmp_path / "projector_config.pbtxt.unreadable").read_bytes() == damaged[0]
    assert (tmp_path / "projector_config.pbtxt.unreadable-2").read_bytes() == damaged[1]
    assert caplog.text.count("could not be read") == 2 and "kept as projector_config" in caplog.text
    assert [e.tensor_name for e in _config(tmp_path).embeddings] == ["t:00001"]


def test_a_full_disk_is_an_error_naming_the_file_and_the_config_stays(tmp_path):
    """Files may not grow past 64 KiB (RLIMIT_FSIZE, in a child): the feature matrix cannot be
    written; the error names it, and the config listing the run's earlier embedding is intact."""
    import subprocess
    import sys

    write_embedding(tmp_path, "small", 1, np.ones((2, 2), np.float32), ["a"], [["x"], ["y"]],
                    torch.zeros(2, 1, 4, 4))  # fmt: skip
    before = (tmp_path / "projector_config.pbtxt").read_bytes()
    code = (
        "import resource, signal, sys, numpy as np, torch\n"
        "from pathlib import Path\n"
        "from mnist_cnn.callbacks.projector import write_embedding\n"
        "from mnist_cnn.errors import UserError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "try:\n"
        f"    write_embedding(Path({str(tmp_path)!r}), 'big', 2, np.random.rand(2000, 128),"
        " ['a'], [['x']] * 2000, torch.zeros(2000, 1, 28, 28))\n"
        "except UserError as exc:\n"
        "    sys.exit(f'error: {exc}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "00002/big/tensors.tsv: cannot write" in proc.stderr
    assert (tmp_path / "projector_config.pbtxt").read_bytes() == before
    assert not list((tmp_path / "00002" / "big").glob(".*"))  # no half-written file left
