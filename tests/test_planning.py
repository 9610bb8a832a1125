"""Budget-planned runs (`budget_seconds`): the epochs measured and fixed before the schedule, in
the record, reproducible from it, kept by a resume; budgets that cannot work refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.runs import SIGNAL_ENV, printed, run_printed_resume, run_script, run_train, signal_at

from mnist_cnn.commands import hydra_override
from mnist_cnn.errors import NOTHING_TO_RESUME, UserError

pytestmark = pytest.mark.slow


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _common(data: Path) -> list[str]:
    return [hydra_override("data.data_dir", str(data)), "callbacks=minimal", "model=mlp"]


def test_a_budget_plans_the_epochs_records_them_and_reproduces_bit_for_bit(tiny_data_dir, tmp_path):
    planned = run_train(*_common(tiny_data_dir), "budget_seconds=2.5", run_dir=tmp_path / "plan")
    assert planned.returncode == 0, planned.stderr[-3000:]
    m = _metrics(tmp_path / "plan")
    plan, epochs = m["plan"], m["plan"]["epochs"]
    assert epochs >= 1 and m["epochs"] == epochs
    assert plan["planned_fit_seconds"] <= plan["fill"] * plan["budget_seconds"]
    assert plan["step_ms"] > 0 and plan["steps_per_epoch"] >= 1
    # what a resume and the record read: the planned epochs, not the recipe's default
    assert m["config"]["trainer"]["max_epochs"] == epochs
    saved = torch.load(tmp_path / "plan" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["trainer"]["max_epochs"] == epochs
    said = planned.stdout + planned.stderr
    assert f"reproduce with trainer.max_epochs={epochs} budget_seconds=null" in said
    # the probe is silent: the seed and the devices are said once, by the run itself
    assert said.count("Seed set to") == 1 and said.count("GPU available") == 1, said
    # the plan reproduces: the same epochs given by hand train the same bits (the cosine
    # schedule spans the planned run in both)
    again = run_train(*_common(tiny_data_dir), f"trainer.max_epochs={epochs}",
                      run_dir=tmp_path / "again")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert _metrics(tmp_path / "again")["weights_sha256"] == m["weights_sha256"]
    assert "plan" not in _metrics(tmp_path / "again")


def test_a_two_process_run_plans_once_from_rank_zeros_step_and_reproduces(tiny_data_dir, tmp_path):
    """`trainer.devices=2 budget_seconds=S`: both ranks probe the DDP step together and take rank
    0's measurement, so they fix the same epochs (a disagreement would hang or fail the run); the
    plan is said once, recorded with the processes it was measured in, and reproduces."""
    two = ("trainer.devices=2", "threads=1")
    planned = run_train(
        *_common(tiny_data_dir), *two, "budget_seconds=3", run_dir=tmp_path / "plan"
    )
    assert planned.returncode == 0, planned.stderr[-3000:]
    m = _metrics(tmp_path / "plan")
    epochs = m["plan"]["epochs"]
    assert m["world_size"] == m["plan"]["world_size"] == 2 and m["epochs"] == epochs >= 1
    assert m["config"]["trainer"]["max_epochs"] == epochs
    said = planned.stdout + planned.stderr
    assert said.count(f"{epochs} epochs planned") == 1, said[-3000:]
    again = run_train(*_common(tiny_data_dir), *two, f"trainer.max_epochs={epochs}",
                      run_dir=tmp_path / "again")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert _metrics(tmp_path / "again")["weights_sha256"] == m["weights_sha256"]


def test_a_budget_with_ranks_run_from_python_is_refused_before_measuring(tiny_data_dir, tmp_path):
    """run() from Python with trainer.devices=2 would leave starting the ranks to Lightning,
    whose spawned ranks cannot share one measurement: refused by name, nothing trained."""
    from mnist_cnn.planning import plan
    from mnist_cnn.train import compose_config

    cfg = compose_config([*_common(tiny_data_dir), "budget_seconds=60", "trainer.devices=2"],
                         tmp_path / "run")  # fmt: skip
    with pytest.raises(UserError, match=r"budget_seconds=60 with 2 processes plans inside the"):
        plan(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_smoke_test_of_a_budget_recipe_trains_its_batch_without_a_probe(tiny_data_dir, tmp_path):
    """`experiment=frontier_5min +trainer.fast_dev_run=true`: the recipe carries budget_seconds,
    and a dev run trains one batch a stage whatever the epochs, so nothing is measured or planned
    (the record says so) and the smoke test ends at once, exit 0."""
    proc = run_train(
        hydra_override("data.data_dir", str(tiny_data_dir)), "experiment=frontier_5min",
        "+trainer.fast_dev_run=true", run_dir=tmp_path / "run",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = _metrics(tmp_path / "run")
    assert m["status"] == "completed" and m["global_step"] == 1
    assert m["plan"] == {"budget_seconds": 300.0, "not_planned": "fast_dev_run"}
    assert "epochs planned" not in proc.stdout + proc.stderr


def test_a_fit_that_overran_its_budget_says_so_and_records_by_how_much(tiny_data_dir, tmp_path):
    """The planned epochs stand once the schedule is built, so a machine that slows after the
    probe makes the fit longer: the run completes, warns with the figures, and records them."""
    proc = run_train(
        *_common(tiny_data_dir), "budget_seconds=0.5",
        "+callbacks.slow._target_=slow_down.SlowAfterFirstEpoch",
        run_dir=tmp_path / "run", env=SIGNAL_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = _metrics(tmp_path / "run")
    assert m["status"] == "completed" and m["epochs"] == m["plan"]["epochs"] >= 2
    assert m["train_seconds"] > 0.5
    assert m["plan"]["over_budget_seconds"] == pytest.approx(m["train_seconds"] - 0.5)
    said = proc.stdout + proc.stderr
    assert f"budget_seconds=0.5: the fit took {m['train_seconds']:.1f} s" in said


def test_a_resumed_budget_run_keeps_its_planned_epochs(tiny_data_dir, tmp_path):
    # step 12: in the run's second epoch, past the probe's (the tiny data's epoch is 9 steps)
    stopped = run_train(
        *_common(tiny_data_dir), "budget_seconds=2.5", *signal_at(12),
        run_dir=tmp_path / "stopped", env=SIGNAL_ENV,
    )  # fmt: skip
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    epochs = _metrics(tmp_path / "stopped")["plan"]["epochs"]
    assert "budget_seconds=2.5" in printed(stopped.stderr, "resume with: ")  # not planned again
    resumed = run_printed_resume(stopped.stderr, tmp_path / "resumed", env=SIGNAL_ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = _metrics(tmp_path / "resumed")
    assert m["epochs"] == epochs and m["plan"] == {
        "budget_seconds": 2.5,
        "epochs": epochs,
        "resumed": True,
    }
    # its final checkpoint resumed again: the plan is the checkpoint's, and nothing is left
    last = hydra_override("ckpt_path", str(tmp_path / "resumed" / "checkpoints" / "last.ckpt"))
    again = run_train(*_common(tiny_data_dir), "budget_seconds=2.5", last,
                      run_dir=tmp_path / "again")  # fmt: skip
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr[-3000:]
    assert f"resumed with trainer.max_epochs={epochs} it has nothing left" in again.stderr


def test_a_signal_while_the_budget_is_measured_stops_the_run_in_one_line(tiny_data_dir, tmp_path):
    """The probe keeps the recipe's callbacks, so SignalAt's step 3 lands in the probe."""
    proc = run_train(
        *_common(tiny_data_dir), "budget_seconds=2.5", *signal_at(3),
        run_dir=tmp_path / "run", env=SIGNAL_ENV,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "while its budget was being measured; nothing to resume" in proc.stderr
    assert "Traceback" not in proc.stderr and "resume with" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # the probe wrote to its scratch
    # and the run dir says so: before, Hydra had forgotten it by the time the line was printed
    assert _metrics(tmp_path / "run") == {
        "status": "interrupted",
        "error": f"SIGINT received before the run began; {NOTHING_TO_RESUME}",
    }


def test_a_sweep_of_budget_runs_on_part_of_the_data_plans_each_job_and_compares(
    tiny_data_dir, tmp_path
):
    """`-m seed=1,2 budget_seconds=S` on half of each epoch: each job plans its own epochs from
    its limited epoch, exits 0, and compare.py reads the sweep."""
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m", *_common(tiny_data_dir), "budget_seconds=2", "seed=1,2",
        "+trainer.limit_train_batches=0.5", hydra_override("hydra.sweep.dir", str(sweep)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        m = _metrics(sweep / job)
        assert m["status"] == "completed" and m["epochs"] == m["plan"]["epochs"] >= 1
        assert m["plan"]["steps_per_epoch"] < 9  # half of the tiny data's 9 batches an epoch
    compared = run_script("compare.py", str(sweep), "--out", str(tmp_path / "report"))
    assert compared.returncode == 0, compared.stderr[-3000:]


@pytest.mark.parametrize(
    "overrides,said",
    [
        (["budget_seconds=0.001"], "one epoch of this recipe takes about"),
        (["budget_seconds=60", "trainer.max_epochs=5"], "gives trainer.max_epochs=5 too"),
        (["budget_seconds=60", "+trainer.max_steps=50"], "gives trainer.max_steps=50 too"),
        (["budget_seconds=-5"], "budget_seconds"),
        (["budget_seconds=soon"], "budget_seconds"),
    ],
)
def test_a_budget_that_cannot_work_is_refused_by_name(tiny_data_dir, tmp_path, overrides, said):
    proc = run_train(*_common(tiny_data_dir), *overrides, run_dir=tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
