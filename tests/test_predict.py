"""predict: MNIST-style preprocessing of images in the wild, and the files it must refuse."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import HAS_REAL_MNIST, REAL_DATA, ROOT, make_digits
from helpers.runs import run_script_reader_gone, start_script
from PIL import Image, ImageDraw

from mnist_cnn import images
from mnist_cnn.cli.predict import main
from mnist_cnn.errors import UserError
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.predict import newest_checkpoint

# its module-scoped fixture is built once: the whole file runs on one xdist worker
pytestmark = pytest.mark.xdist_group("predict")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A checkpoint laid out as train.py writes it (untrained weights: predictions are stable)."""
    torch.manual_seed(0)
    net = SimpleCNN()
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {
                "num_classes": 10,
                "model": {"_target_": "mnist_cnn.models.simple_cnn.SimpleCNN"},
                "data": {"dataset": "MNIST", "normalize": False},
            },
            "epoch": 0,
            "global_step": 0,
        },
        path,
    )
    return path


def seven(width: int = 100, height: int = 60) -> Image.Image:
    """Dark ink on white paper, off-centre, as a photo or scan would be."""
    image = Image.new("L", (width, height), 255)
    ImageDraw.Draw(image).line([(30, 8), (58, 8), (44, 52)], fill=0, width=6)
    return image


def predict_json(capsys, *args: str) -> list[dict]:
    main([*args, "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.reliability("P3")
def test_any_size_becomes_a_centred_20x20_digit(tmp_path):
    seven().save(tmp_path / "seven.png")
    digit = images.to_mnist(images.load_grey(tmp_path / "seven.png"))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit > 0.1 * 255)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in (19, 20, 21)  # the long side fills the 20 box
    assert digit[[0, -1]].max() == 0 and digit[:, [0, -1]].max() == 0  # black border
    ys, xs = np.indices(digit.shape)
    mass = digit.astype(float)
    centre = ((ys * mass).sum() / mass.sum(), (xs * mass).sum() / mass.sum())
    assert abs(centre[0] - 13.5) <= 1 and abs(centre[1] - 13.5) <= 1


@pytest.mark.reliability("P4", "P6")
def test_colour_modes_depth_and_exif_give_the_same_digit(tmp_path, ckpt, capsys):
    base = seven()
    variants = {
        "grey.png": base,
        "rgb.png": base.convert("RGB"),
        "palette.png": base.convert("P"),
        "cmyk.tif": base.convert("RGB").convert("CMYK"),
        "light_on_dark.png": Image.eval(base, lambda v: 255 - v),  # polarity detected
    }
    for name, image in variants.items():
        image.save(tmp_path / name)
    rgba = Image.new("RGBA", base.size, (0, 0, 0, 0))  # ink on a transparent sheet
    rgba.putalpha(Image.eval(base, lambda v: 255 - v))
    rgba.save(tmp_path / "rgba.png")
    Image.fromarray(np.asarray(base, np.uint16) * 257).save(tmp_path / "deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the pixels are stored turned
    base.rotate(90, expand=True).save(tmp_path / "exif.png", exif=exif)

    reference = images.to_mnist(images.load_grey(tmp_path / "grey.png"))
    for path in sorted(tmp_path.iterdir()):
        digit = images.to_mnist(images.load_grey(path))
        assert np.abs(digit.astype(int) - reference).max() <= 1, path.name
    results = predict_json(capsys, str(tmp_path), "--ckpt", str(ckpt))
    assert len(results) == 8
    assert {r["digit"] for r in results} == {results[0]["digit"]}
    first = results[0]
    assert set(first) >= {"path", "digit", "confidence", "top3"} and len(first["top3"]) == 3
    assert first["top3"][0]["confidence"] == first["confidence"]
    assert first["confidence"] >= first["top3"][1]["confidence"] >= first["top3"][2]["confidence"]


def test_a_28x28_test_digit_saved_as_png_is_what_the_model_saw(tmp_path, ckpt, capsys):
    digits, _ = make_digits(5, seed=3)
    for i, d in enumerate(digits):
        Image.fromarray(d).save(tmp_path / f"{i}.png")
        assert (images.to_mnist(images.load_grey(tmp_path / f"{i}.png")) == d).all()
    net = SimpleCNN()
    net.load_state_dict(
        {k[4:]: v for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items()}
    )
    expected = net(torch.from_numpy(digits).float()[:, None] / 255).argmax(1).tolist()
    results = predict_json(
        capsys, *(str(tmp_path / f"{i}.png") for i in range(5)), "--ckpt", str(ckpt)
    )
    assert [r["digit"] for r in results] == expected


@pytest.mark.real_data
@pytest.mark.skipif(not HAS_REAL_MNIST, reason=f"no MNIST files under {REAL_DATA}/MNIST/raw")
def test_real_mnist_test_digits_round_trip_through_png(tmp_path):
    from mnist_cnn.data.idx import read_split

    raw = REAL_DATA / "MNIST" / "raw"
    test_images, _ = read_split(raw / "t10k-images-idx3-ubyte", raw / "t10k-labels-idx1-ubyte")
    for i in range(0, 10_000, 50):  # 200 digits across the test set
        Image.fromarray(test_images[i]).save(tmp_path / "d.png")
        assert (images.to_mnist(images.load_grey(tmp_path / "d.png")) == test_images[i]).all(), i


@pytest.mark.reliability("P6")
def test_multi_frame_images_use_the_first_frame_with_a_warning(tmp_path, caplog):
    frames = [seven(), Image.new("L", (100, 60), 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert images.to_mnist(images.load_grey(tmp_path / "anim.gif")).max() > 0
    assert "2 frames; using the first" in caplog.text


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels, with 1 KB of pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(1024))
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.mark.reliability("P5")
@pytest.mark.parametrize("size", [30000, 6000])
def test_huge_images_are_refused_from_their_header(tmp_path, size):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(size, size))
    with pytest.raises(UserError, match=f"{path}: .*pixel"):
        images.load_grey(path)


@pytest.mark.reliability("P1", "P2")
def test_bad_files_are_named_and_nothing_blocks(tmp_path):
    good = tmp_path / "good.png"
    seven().save(good)
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    (tmp_path / "empty.png").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo.png")  # opening it would wait forever for a writer
    (tmp_path / "blank.png").write_bytes(b"")
    Image.new("L", (30, 30), 255).save(tmp_path / "blank.png")
    cases = {
        "text.png": "not an image",
        "cut.png": "truncated",
        "empty.png": "empty file",
        "fifo.png": "not a regular file",
        "blank.png": "no digit found",
        "missing.png": "no such file",
    }
    for name, reason in cases.items():
        with pytest.raises(UserError) as info:
            images.to_mnist(images.load_grey(tmp_path / name), source=str(tmp_path / name))
        assert str(tmp_path / name) in str(info.value) and reason in str(info.value), name
    with pytest.raises(UserError, match="not a regular file"):
        images.load_grey(Path("/dev/zero"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match="no image files"):
        images.image_files([tmp_path / "nothing"])


def test_good_images_are_still_reported_when_others_fail(tmp_path, ckpt, capsys):
    seven().save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "good.png"), str(tmp_path / "bad.png"), "--ckpt", str(ckpt)])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert "good.png" in out and f"{tmp_path / 'bad.png'}: not an image" in err


def test_save_inputs_writes_the_28x28_the_model_saw(tmp_path, ckpt, capsys):
    seven().save(tmp_path / "seven.png")
    main(
        [str(tmp_path / "seven.png"), "--ckpt", str(ckpt), "--save-inputs", str(tmp_path / "seen")]
    )
    saved = np.asarray(Image.open(tmp_path / "seen" / "0000_seven.png"))
    assert (saved == images.to_mnist(images.load_grey(tmp_path / "seven.png"))).all()


def test_default_checkpoint_is_the_newest_completed_run(tmp_path):
    for name, status, mtime in (
        ("old", "completed", 100),
        ("new", "completed", 200),
        ("broken", "failed", 300),
    ):
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        metrics = run / "metrics.json"
        metrics.write_text(
            json.dumps({"status": status, "checkpoints": {"last": "checkpoints/last.ckpt"}})
        )
        os.utime(metrics, (mtime, mtime))
    assert newest_checkpoint(tmp_path)[0] == tmp_path / "new" / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="no completed training run"):
        newest_checkpoint(tmp_path / "broken")


@pytest.mark.parametrize(
    "trainer",
    [
        {"fast_dev_run": True},
        {"limit_train_batches": 0.1},
        {"limit_test_batches": 5},
        {"overfit_batches": 3},
    ],
)
def test_the_default_checkpoint_is_never_a_debug_run(tmp_path, trainer):
    for name, settings, mtime in (("full", {"max_epochs": 3}, 100), ("smoke", trainer, 200)):
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        metrics = run / "metrics.json"
        metrics.write_text(
            json.dumps(
                {
                    "status": "completed",
                    "checkpoints": {"last": "checkpoints/last.ckpt"},
                    "config": {"trainer": settings},
                    "test/acc": 0.99 if name == "full" else 0.5,
                }
            )
        )
        os.utime(metrics, (mtime, mtime))
    path, acc = newest_checkpoint(tmp_path)
    assert path == tmp_path / "full" / "checkpoints" / "last.ckpt" and acc == 0.99


@pytest.mark.parametrize("tested", ["final", "best"])
def test_the_default_checkpoint_is_the_one_its_run_tested(tmp_path, tested):
    """A test_ckpt=best run reported the best epoch's accuracy, and predict took its last.ckpt
    while quoting that accuracy. Where the tested file is gone, the other is untested."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    saved = {"last": "checkpoints/last.ckpt", "best": "checkpoints/best-epoch02.ckpt"}
    for name in saved.values():
        (run / name).write_bytes(b"x")
    record = {"status": "completed", "checkpoints": saved, "test_weights": tested, "test/acc": 0.9}
    (run / "metrics.json").write_text(json.dumps(record))
    name = "last" if tested == "final" else "best"
    assert newest_checkpoint(tmp_path) == (run / saved[name], 0.9)
    (run / saved[name]).unlink()
    other = "best" if name == "last" else "last"
    assert newest_checkpoint(tmp_path) == (run / saved[other], None)


def test_metrics_files_of_another_shape_are_skipped(tmp_path):
    """Valid JSON that is not a run record, at any depth, never stops the search."""
    rng = np.random.default_rng(0)
    hostile = [
        "[]",
        "null",
        '"completed"',
        json.dumps({"status": "completed", "checkpoints": ["last.ckpt"]}),
        json.dumps({"status": "completed", "checkpoints": {"last": 5}, "config": []}),
        json.dumps({"status": "completed", "config": {"trainer": "fast"}}),
        "[" * 100_000 + "]" * 100_000,  # deeper than any JSON parser's recursion
        bytes(rng.integers(0, 256, 300, dtype=np.uint8)).decode("latin-1"),
    ]
    for i, text in enumerate(hostile):
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / "metrics.json").write_text(text)
    with pytest.raises(UserError, match="no completed training run"):
        newest_checkpoint(tmp_path)


@pytest.mark.reliability("K2")
@pytest.mark.slow
def test_predict_refuses_a_pickle_payload(tmp_path):
    sentinel = tmp_path / "payload-ran"
    evil = tmp_path / "evil.ckpt"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(sentinel),))

    torch.save({"state_dict": {}, "x": Payload()}, evil)
    seven().save(tmp_path / "seven.png")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "predict.py"),
            str(tmp_path / "seven.png"),
            "--ckpt",
            str(evil),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and f"{evil}: refused" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not sentinel.exists()


@pytest.mark.reliability("OUT2")
def test_save_inputs_problems_are_named_and_predictions_still_printed(tmp_path, capsys):
    from PIL import Image, ImageDraw

    from mnist_cnn.cli.predict import main
    from mnist_cnn.models.simple_cnn import SimpleCNN

    ckpt = tmp_path / "good.ckpt"
    state = {f"net.{k}": v for k, v in SimpleCNN().state_dict().items()}
    config = {
        "model": {"_target_": "mnist_cnn.models.simple_cnn.SimpleCNN"},
        "data": {"dataset": "MNIST"},
    }
    torch.save(
        {"state_dict": state, "hyper_parameters": config, "epoch": 0, "global_step": 1}, ckpt
    )
    long_name = tmp_path / ("d" * 250 + ".png")
    digit = Image.new("L", (60, 60), 0)
    ImageDraw.Draw(digit).line([(20, 10), (40, 10), (30, 50)], fill=255, width=5)
    digit.save(long_name)
    seen = tmp_path / "seen"
    main([str(long_name), "--ckpt", str(ckpt), "--save-inputs", str(seen), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 1 and len(list(seen.iterdir())) == 1
    assert all(len(p.name.encode()) <= 255 for p in seen.iterdir())
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as info:
        main([str(long_name), "--ckpt", str(ckpt), "--save-inputs", str(a_file)])
    assert (
        info.value.code == 2
        and f"--save-inputs {a_file}: not a directory" in capsys.readouterr().err
    )
    assert a_file.read_text() == "x"


@pytest.mark.reliability("RG1")
def test_images_are_predicted_in_batches_in_order_around_a_bad_file(
    tmp_path, ckpt, monkeypatch, capsys
):
    """Batches of predict.BATCH images, one forward pass each: the results keep the files' order,
    a bad file in a batch is one line, and the saved inputs are numbered without a gap."""
    from mnist_cnn import predict as predict_module

    monkeypatch.setattr(predict_module, "BATCH", 3)
    digits, _ = make_digits(7, seed=5)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, d in enumerate(digits):
        Image.fromarray(d).save(folder / f"{i}.png")
    (folder / "3b.png").write_bytes(b"not a png")  # sorted between 3.png and 4.png
    net = SimpleCNN()
    net.load_state_dict(
        {k[4:]: v for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items()}
    )
    expected = net(torch.from_numpy(digits).float()[:, None] / 255).argmax(1).tolist()
    saved = tmp_path / "seen"
    with pytest.raises(SystemExit) as stop:  # exit 2: one file could not be read
        main([str(folder), "--ckpt", str(ckpt), "--json", "--save-inputs", str(saved)])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert [Path(r["path"]).name for r in results] == [f"{i}.png" for i in range(7)]
    assert [r["digit"] for r in results] == expected
    assert err.count("3b.png") == 1
    assert sorted(p.name.split("_")[0] for p in saved.iterdir()) == [f"{i:04d}" for i in range(7)]


@pytest.mark.reliability("OUT3")
@pytest.mark.slow
def test_predict_whose_reader_left_ends_quietly(tmp_path, ckpt):
    """`predict.py DIR | head -3`: a BrokenPipeError traceback and exit 1 before."""
    for i in range(3):
        seven(100 + i).save(tmp_path / f"{i}.png")
    proc = run_script_reader_gone("predict.py", str(tmp_path), "--ckpt", str(ckpt))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == f"checkpoint: {ckpt} (given with --ckpt)"


@pytest.mark.reliability("SIG4")
@pytest.mark.slow
def test_ctrl_c_while_predict_reads_is_one_line_and_exit_130(tmp_path, ckpt):
    """Ctrl-C as the images are read: a KeyboardInterrupt traceback before. The signal goes as
    predict says which checkpoint it read, with thousands of images still to read and save."""
    digits, saved = tmp_path / "digits", tmp_path / "saved"
    digits.mkdir()
    for i, image in enumerate(make_digits(3000, seed=0)[0]):
        Image.fromarray(image).save(digits / f"{i:04d}.png")
    proc = start_script(
        "predict.py", str(digits), "--ckpt", str(ckpt), "--save-inputs", str(saved),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    first = proc.stderr.readline()
    assert first.startswith("checkpoint: "), first
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest[-3000:]
    said = f"interrupted: SIGINT received; --save-inputs {saved} may hold some of the inputs; "
    assert rest == said + "run the command again\n"
    assert not saved.exists() or len(list(saved.iterdir())) < 3000  # it stopped reading
