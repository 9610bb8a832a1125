"""`callbacks=[...,ema]`: Lightning's EMAWeightAveraging as a run combines it with the rest: the
average is what the run tests and its checkpoints hold, eval.py reads it back, a resume is exact
and one without the average is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.runs import SIGNAL_ENV, run_eval, run_printed_resume, run_train, signal_at

from mnist_cnn.commands import hydra_override

pytestmark = pytest.mark.slow


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_average_is_tested_saved_evaluated_and_resumed_exactly(tiny_data_dir, tmp_path):
    common = [hydra_override("data.data_dir", str(tiny_data_dir)), "experiment=keras_lab",
              "trainer.max_epochs=2"]  # fmt: skip
    averaged = run_train(*common, "callbacks=[minimal,ema]", run_dir=tmp_path / "ema")
    assert averaged.returncode == 0, averaged.stderr[-3000:]
    m = _metrics(tmp_path / "ema")
    # the checkpoint holds the average as its weights (what the run tested), the last step's
    # weights and the average's state beside them: another set of weights than the last step's
    ckpt = tmp_path / "ema" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert "averaging_state" in saved
    current = saved["current_model_state"]
    assert any(
        not torch.equal(current[k], v) for k, v in saved["state_dict"].items() if k in current
    )
    # eval.py tests what the checkpoint holds: the run's own numbers
    evaluated = run_eval(
        hydra_override("data.data_dir", str(tiny_data_dir)),
        hydra_override("ckpt_path", str(ckpt)),
        hydra_override("hydra.run.dir", str(tmp_path / "eval")),
        "callbacks=minimal",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert _metrics(tmp_path / "eval")["test/correct"] == m["test/correct"]
    # stopped mid-run and resumed with the printed command: the average continues exactly
    stopped = run_train(
        *common, "callbacks=[minimal,ema]", *signal_at(5), run_dir=tmp_path / "stopped",
        env=SIGNAL_ENV,
    )  # fmt: skip
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    # resumed without the average, the run would train on from it as its weights: refused
    stopped_at = hydra_override("ckpt_path", str(tmp_path / "stopped/checkpoints/interrupted.ckpt"))
    dropped = run_train(*common, "callbacks=[minimal]", stopped_at, run_dir=tmp_path / "dropped")
    assert dropped.returncode == 2 and "Traceback" not in dropped.stderr, dropped.stderr[-3000:]
    assert "callbacks.ema: EMAWeightAveraging(decay=0.99) in the checkpoint, none now" in (
        dropped.stderr
    )
    resumed = run_printed_resume(stopped.stderr, tmp_path / "resumed", env=SIGNAL_ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _metrics(tmp_path / "resumed")["weights_sha256"] == m["weights_sha256"]


@pytest.mark.reliability("RF3")
def test_the_average_under_ddp_is_the_one_tested_and_saved(tiny_data_dir, tmp_path):
    """Two processes: each rank averages the same synchronised weights, rank 0 saves the average,
    and eval.py on the best checkpoint finds the run's own test numbers: test_ckpt=best tested
    the step's weights the file holds beside the average, which the callback loaded."""
    data = hydra_override("data.data_dir", str(tiny_data_dir))
    run = run_train(
        data, "experiment=keras_lab", "trainer.max_epochs=2", "callbacks=[minimal,ema]",
        "trainer.devices=2", "test_ckpt=best", run_dir=tmp_path / "ddp",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    m = _metrics(tmp_path / "ddp")
    assert m["world_size"] == 2 and m["status"] == "completed"
    ckpt = tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    current = saved["current_model_state"]
    assert any(
        not torch.equal(current[k], v) for k, v in saved["state_dict"].items() if k in current
    )
    assert m["test_weights"] == "best", m.get("test_weights")
    best = tmp_path / "ddp" / m["checkpoints"]["best"]
    evaluated = run_eval(
        data, hydra_override("ckpt_path", str(best)),
        hydra_override("hydra.run.dir", str(tmp_path / "eval")), "callbacks=minimal",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    e = _metrics(tmp_path / "eval")
    assert (e["test/correct"], e["test/loss"]) == (m["test/correct"], m["test/loss"])
