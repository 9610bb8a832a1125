"""The commands a run prints run as printed, whatever the paths hold (hostile names generated)."""

from __future__ import annotations

import os
import random
import shlex
from pathlib import Path

import pytest
from helpers.data import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mnist_cnn.commands import eval_command, hydra_override, script_command

HOSTILE = list(" '\"\\$[]{}(),=:%#!*?~@^&|;<>`é") + ["${", "${x}", "\\'", "null", "1e3"]


def hostile_names(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    fixed = ["a b", "it's", "x=y,z", "[1]", "${oc.env:HOME}", "back\\", "\\'", "null", "1e3"]
    return fixed + [
        "".join(rng.choice(HOSTILE + ["a"]) for _ in range(rng.randint(1, 10))) for _ in range(n)
    ]


def compose_train(*overrides: str):
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.reliability("CMD1")
def test_printed_commands_give_hydra_back_the_exact_path():
    """Each command goes through the shell's parsing, then Hydra's override grammar, then
    OmegaConf's interpolation (what compose does with a value); a sample through compose itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    names = hostile_names(300)
    for i, name in enumerate(names):
        path = f"/tmp/{name}/checkpoints/last.ckpt"
        for command in (
            eval_command(Path(path)),
            script_command("train.py", hydra_override("ckpt_path", path)),
        ):
            token = shlex.split(command)[-1]  # what the shell hands to the script
            value = parser.parse_override(token).value()
            assert OmegaConf.create({"v": value}).v == path, (name, command)
            if i % 30 == 0:
                assert compose_train(token).ckpt_path == path, (name, command)


def test_the_printed_tensorboard_command_runs_without_tensorflows_line(tmp_path):
    """The "View it" command serves with TensorBoard's own flags, less the "TensorFlow
    installation not found" line that plain `tensorboard` prints where TensorFlow is absent."""
    import subprocess
    import sys

    from mnist_cnn.commands import tensorboard_command

    plain = subprocess.run(
        [sys.executable, "-m", "tensorboard.main", "--version_tb"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    ours = subprocess.run(
        [*shlex.split(tensorboard_command(tmp_path)), "--version_tb"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ours.returncode == 0 and ours.stdout.strip() == plain.stdout.strip() != ""
    if "TensorFlow installation not found" in plain.stderr:  # where TensorFlow is absent
        assert "TensorFlow installation not found" not in ours.stderr
