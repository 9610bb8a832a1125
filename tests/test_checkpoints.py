"""Checkpoints: their stored settings checked like a command line's, and what they inflate to
bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.runs import run_eval, run_script

from mnist_cnn import checkpoints
from mnist_cnn.commands import hydra_override
from mnist_cnn.errors import UserError


def _checkpoint_with(tmp_path: Path, **hyper_parameters) -> Path:
    from mnist_cnn.models.simple_cnn import SimpleCNN

    config = {
        "seed": 1,
        "model": {"_target_": "mnist_cnn.models.simple_cnn.SimpleCNN"},
        "data": {"dataset": "MNIST", "eval_batch_size": 256},
        "trainer": {"precision": "32-true"},
    }
    for key, value in hyper_parameters.items():
        section, name = key.split("__")
        config[section][name] = value
    path = tmp_path / "bad.ckpt"
    state = {f"net.{k}": v for k, v in SimpleCNN().state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": config, "epoch": 0, "global_step": 1}, path
    )
    return path


@pytest.mark.reliability("VAL3")
@pytest.mark.parametrize(
    "setting,key",
    [
        ({"data__eval_batch_size": 0}, "data.eval_batch_size"),
        ({"model__conv1_channels": -1}, "model.conv1_channels"),
    ],
)
def test_a_checkpoints_bad_setting_is_named_as_the_checkpoints(tmp_path, setting, key):
    path = _checkpoint_with(tmp_path, **setting)
    with pytest.raises(UserError, match=rf"^{path} \(its hyper_parameters\): {key}="):
        checkpoints.load(path).config()
    with pytest.raises(UserError, match=rf"^{path} \(its hyper_parameters\)"):
        checkpoints.load(path).build_net(in_channels=1, image_size=28)


@pytest.mark.reliability("VAL3")
@pytest.mark.slow
def test_eval_and_predict_name_the_checkpoint_a_bad_value_came_from(tmp_path, tiny_data_dir):
    path = _checkpoint_with(tmp_path, data__eval_batch_size=0)
    evaluated = run_eval(
        hydra_override("ckpt_path", str(path)), hydra_override("data.data_dir", str(tiny_data_dir)),
        hydra_override("hydra.run.dir", str(tmp_path / "eval")),
    )  # fmt: skip
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    predicted = run_script("predict.py", str(tmp_path / "digit.png"), "--ckpt", str(path))
    for proc in (evaluated, predicted):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"{path} (its hyper_parameters): data.eval_batch_size=0 is invalid" in proc.stderr


@pytest.mark.reliability("SIZE1")
def test_checkpoint_inflation_is_bounded_by_default(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # declared sizes are what is checked: a stored entry's header claims past the bound
        info = zipfile.ZipInfo("archive/data.pkl")
        archive.writestr(info, b"\0" * 1024)
    raw = bytearray(bomb.read_bytes())
    # rewrite the central directory's uncompressed size of the entry to 2 GiB
    at = raw.rfind(b"PK\x01\x02")
    raw[at + 24 : at + 28] = (2 * 1024**3).to_bytes(4, "little")
    bomb.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="its entries inflate to 2,147,483,648 bytes"):
        checkpoints.load(bomb)


@pytest.mark.parametrize(
    "layout",
    [
        ["checkpoints/best-epoch02.ckpt", "checkpoints/last.ckpt"],  # a run dir
        ["best-epoch02.ckpt", "last.ckpt"],  # its checkpoints/ dir
        ["0/checkpoints/last.ckpt", "1/checkpoints/last.ckpt"],  # a sweep dir
        [],  # nothing to suggest
    ],
)
def test_a_directory_given_as_the_checkpoint_is_answered_with_its_checkpoints(tmp_path, layout):
    """A run dir where a .ckpt belongs (eval.py, predict.py, a resume): the answer names the
    files to give instead, the final weights (last.ckpt) first, and is the same for each."""
    from omegaconf import OmegaConf

    from mnist_cnn.config import validate

    given = tmp_path / "given"
    given.mkdir()
    for name in layout:
        (given / name).parent.mkdir(parents=True, exist_ok=True)
        (given / name).write_bytes(b"")
    with pytest.raises(UserError, match="a directory, not a checkpoint") as loaded:
        checkpoints.load(given)
    with pytest.raises(UserError, match="a directory, not a checkpoint") as validated:
        validate(OmegaConf.create({"ckpt_path": str(given)}), training=False)  # its ckpt_path only
    for answer in (str(loaded.value), str(validated.value)):
        if not layout:
            assert "<run>/checkpoints/" in answer, answer
            continue
        named = answer.split("give one of its .ckpt files: ")[1].split(", ")
        assert [Path(p) for p in named] == sorted(
            (given / n for n in layout), key=lambda p: (p.name != "last.ckpt", str(p))
        )
        assert Path(named[0]).name == "last.ckpt"
