"""fastest_of, the least time to a target: the quickest of verified candidates measured on this
machine, chosen before anything is built, in the record, reproducible from it, kept by a resume,
measured once per machine and recipe; settings that cannot work refused by name."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from helpers.runs import SIGNAL_ENV, printed, run_printed_resume, run_train, signal_at

from mnist_cnn import fastest, measurements
from mnist_cnn.commands import hydra_override
from mnist_cnn.config import validate
from mnist_cnn.errors import NOTHING_TO_RESUME, UserError
from mnist_cnn.train import compose_config

# half the steps of a network a quarter as wide: quicker on any machine
CANDIDATES = (
    "fastest_of={light:{model.conv1_channels:4,trainer.limit_train_batches:0.5},"
    "heavy:{model.conv1_channels:96}}"
)


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _common(data: Path, cache: Path, epochs: int = 2) -> list[str]:
    return [
        hydra_override("data.data_dir", str(data)),
        hydra_override("paths.cache_dir", str(cache)),
        "callbacks=minimal",
        f"trainer.max_epochs={epochs}",
    ]


@pytest.mark.slow
def test_a_sweep_chooses_the_quickest_once_records_it_and_reproduces_bit_for_bit(
    tiny_data_dir, tmp_path
):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / measurements.CACHE_FILE).write_text('{"damaged": ')  # measured again, written whole
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m", *_common(tiny_data_dir, cache), CANDIDATES, "seed=1,2",
        hydra_override("hydra.sweep.dir", str(sweep)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = _metrics(sweep / "0"), _metrics(sweep / "1")
    plan = first["plan"]
    assert plan["chosen"] == "light"
    light, heavy = plan["fastest_of"]["light"], plan["fastest_of"]["heavy"]
    assert light["predicted_fit_seconds"] < heavy["predicted_fit_seconds"]
    assert light["steps"] < heavy["steps"] and light["measured"] == heavy["measured"] == "now"
    # the second seed reads the first one's measurements: the same choice, no probe
    assert second["plan"]["chosen"] == "light"
    assert all(c["measured"].startswith("cached") for c in second["plan"]["fastest_of"].values())
    assert len(json.loads((cache / measurements.CACHE_FILE).read_text())) == 2
    # what the record and a resume read: the chosen settings
    assert first["config"]["model"]["conv1_channels"] == 4
    assert first["config"]["trainer"]["limit_train_batches"] == 0.5
    saved = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["model"]["conv1_channels"] == 4
    said = proc.stdout + proc.stderr
    assert f"reproduce with {plan['reproduce']}" in said
    # the choice reproduces: its settings given by hand train the same bits
    again = run_train(
        *_common(tiny_data_dir, cache), "seed=1", *shlex.split(plan["reproduce"]),
        run_dir=tmp_path / "again",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert _metrics(tmp_path / "again")["weights_sha256"] == first["weights_sha256"]
    assert "plan" not in _metrics(tmp_path / "again")


@pytest.mark.slow
def test_a_resumed_run_keeps_its_choice_and_ends_where_the_whole_run_would(tiny_data_dir, tmp_path):
    cache = tmp_path / "cache"
    # step 7: in the run's fourth epoch (2 steps each), past each probe's (the tiny data's 5)
    stopped = run_train(
        *_common(tiny_data_dir, cache, epochs=8), CANDIDATES, *signal_at(7),
        run_dir=tmp_path / "stopped", env=SIGNAL_ENV,
    )  # fmt: skip
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    plan = _metrics(tmp_path / "stopped")["plan"]
    assert "fastest_of=" in printed(stopped.stderr, "resume with: ")
    resumed = run_printed_resume(stopped.stderr, tmp_path / "resumed", env=SIGNAL_ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = _metrics(tmp_path / "resumed")
    chosen = plan["fastest_of"][plan["chosen"]]["settings"]
    assert (
        m["plan"]["resumed"] is True
        and m["plan"]["settings"]["model.conv1_channels"] == (chosen["model.conv1_channels"])
    )
    whole = run_train(
        *_common(tiny_data_dir, cache, epochs=8), *shlex.split(plan["reproduce"]),
        *signal_at(1000), run_dir=tmp_path / "whole", env=SIGNAL_ENV,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert m["weights_sha256"] == _metrics(tmp_path / "whole")["weights_sha256"]
    # the resumed run's final checkpoint resumed again: nothing is left to train
    last = hydra_override("ckpt_path", str(tmp_path / "resumed" / "checkpoints" / "last.ckpt"))
    again = run_train(*_common(tiny_data_dir, cache, epochs=8), CANDIDATES, last,
                      run_dir=tmp_path / "again")  # fmt: skip
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr[-3000:]
    assert "resumed with trainer.max_epochs=8 it has nothing left to train" in again.stderr


@pytest.mark.slow
def test_a_signal_while_the_candidates_are_measured_stops_in_one_line(tiny_data_dir, tmp_path):
    proc = run_train(
        *_common(tiny_data_dir, tmp_path / "cache"), CANDIDATES, *signal_at(3),
        run_dir=tmp_path / "run", env=SIGNAL_ENV,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert fastest.WHILE_MEASURING in proc.stderr
    assert "Traceback" not in proc.stderr and "resume with" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
    # and the run dir says so: before, Hydra had forgotten it by the time the line was printed
    assert _metrics(tmp_path / "run") == {
        "status": "interrupted",
        "error": f"SIGINT received before the run began; {NOTHING_TO_RESUME}",
    }


@pytest.mark.parametrize(
    "overrides,said",
    [
        ([CANDIDATES, "budget_seconds=60"], "are both set"),
        ([CANDIDATES, "trainer.devices=2"], "fastest_of chooses in one process"),
        (["fastest_of={a:{model.conv_channels:4}}"], "fastest_of.a: model.conv_channels is not"),
        (["fastest_of={a:{model.conv1_channels:-4}}"], "fastest_of.a: model.conv1_channels=-4"),
        (["fastest_of={a:{model:{conv1_channels:4}}}"], "is a group of settings"),
        (["fastest_of=3"], "expected null or a mapping"),
        (["fastest_of={a:3}"], "fastest_of.a is invalid"),
    ],
)
def test_candidates_that_cannot_work_are_refused_by_name(tmp_path, overrides, said):
    with pytest.raises(UserError, match=re.escape(said)):
        validate(compose_config(overrides, tmp_path))


@pytest.mark.slow
def test_a_setting_given_and_chosen_is_refused_before_anything_runs(tiny_data_dir, tmp_path):
    """The command line's model.conv1_channels=32 would be replaced by the speedrun's choice."""
    proc = run_train(
        *_common(tiny_data_dir, tmp_path), "experiment=speedrun", "model.conv1_channels=32",
        run_dir=tmp_path / "run",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.conv1_channels is given on the command line" in proc.stderr
    assert "add fastest_of=null" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_measurement_is_keyed_by_what_times_a_step_and_not_the_seed_or_paths(tmp_path):
    base = compose_config(["experiment=speedrun"], tmp_path / "a")
    speedrun = fastest.candidates(base)
    wide = fastest.with_settings(base, speedrun["wide"])
    other = compose_config(["experiment=speedrun", "seed=7", "optimizer.lr=0.02"], tmp_path / "b")
    assert measurements.key(wide) == measurements.key(
        fastest.with_settings(other, speedrun["wide"])
    )
    assert measurements.key(wide) != measurements.key(
        fastest.with_settings(base, speedrun["narrow"])
    )
    assert measurements.key(wide) != measurements.key(
        fastest.with_settings(base, {**speedrun["wide"], "data.batch_size": 128})
    )
    assert measurements.key(wide) != measurements.key(
        fastest.with_settings(base, {**speedrun["wide"], "optimizer.foreach": False})
    )
    validate(base)  # the speedrun's own candidates pass every check
    base.fastest_of = {"wide": {"model.conv1_channels": 0}}
    with pytest.raises(UserError, match="fastest_of.wide: model.conv1_channels=0"):
        validate(base)


def test_a_problem_of_the_recipe_is_said_once_not_again_for_each_candidate(tmp_path):
    """`experiment=speedrun optimizer.lr=-1` listed the bad rate three times: the recipe's, and
    again under fastest_of.narrow and fastest_of.wide."""
    with pytest.raises(UserError) as refused:
        validate(compose_config(["experiment=speedrun", "optimizer.lr=-1"], tmp_path))
    assert str(refused.value) == "optimizer.lr=-1 is invalid: expected a finite number > 0"
    cfg = compose_config(["experiment=speedrun", "optimizer.lr=-1"], tmp_path)
    cfg.fastest_of = {"wide": {"model.conv1_channels": 0}}  # a candidate's own: still said
    with pytest.raises(UserError, match=r"; fastest_of.wide: .*model.conv1_channels=0") as both:
        validate(cfg)
    # the candidate's line holds its own problem only, not the recipe's again beside it
    assert str(both.value).count("optimizer.lr=-1 is invalid") == 1, str(both.value)
