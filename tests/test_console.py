"""When stdout's reader leaves first (`python train.py -m ... | head`, `compare.py DIR | head`):
the work goes on to its end, quietly (mnist_cnn/console.py)."""

from __future__ import annotations

import json

import pytest
from helpers.runs import run_script_reader_gone

from mnist_cnn.commands import hydra_override

ERRORS = ("Traceback", "Logging error", "BrokenPipeError", "Exception ignored")


@pytest.mark.reliability("OUT3")
@pytest.mark.slow
def test_a_sweep_and_compare_whose_reader_left_finish_their_work(tiny_data_dir, tmp_path):
    """Before: every log line after the reader left printed a `--- Logging error ---` traceback,
    and a sweep's summary failed (exit 1) before it wrote the comparison; compare.py the same."""
    sweep = tmp_path / "sweep"
    proc = run_script_reader_gone(
        "train.py", "-m", "seed=1,2", "+trainer.limit_train_batches=0.5", "model=mlp",
        "trainer.max_epochs=2", hydra_override("data.data_dir", str(tiny_data_dir)),
        hydra_override("hydra.sweep.dir", str(sweep)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [e for e in ERRORS if e in proc.stderr], proc.stderr[-3000:]
    for job in ("0", "1"):
        m = json.loads((sweep / job / "metrics.json").read_text())
        assert m["status"] == "completed" and m["epochs"] == 2, m
        assert (sweep / job / "tensorboard").is_dir()  # the dashboards wrote as usual
    assert json.loads((sweep / "comparison.json").read_text())["groups"]
    report = tmp_path / "report"
    compared = run_script_reader_gone("compare.py", str(sweep), "--out", str(report))
    assert compared.returncode == 0 and not compared.stderr, compared.stderr[-3000:]
    assert {p.name for p in report.iterdir()} == {
        "comparison.json",
        "comparison.csv",
        "comparison.png",
    }
