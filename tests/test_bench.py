"""The benchmark scripts run end to end (bench/gpu.py's whole table, on the CPU)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_the_gpu_bench_runs_its_whole_table_on_a_cpu(tiny_data_dir, tmp_path):
    """bench/gpu.py is what a rare GPU session runs: it must not fail there for a CPU-testable
    reason. Tiny data, one epoch, one speedrun seed; the rows, the saved records, the table."""
    from helpers.runs import run_script

    save = tmp_path / "saved"
    proc = run_script("bench/gpu.py", "--accelerator", "cpu", "--data-dir", str(tiny_data_dir),
                      "--speedrun-seeds", "1", "--save", str(save), "trainer.max_epochs=1",
                      "callbacks=minimal", timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert len(rows) == 7, proc.stdout  # the header and six workloads
    saved = {p.stem: json.loads(p.read_text()) for p in save.glob("*.json")}
    expected = {"lab_auto", "lab_fp32", "speedrun_s1", "speedrun_s1_fp32", "frontier_s1", "table"}
    assert set(saved) == expected
    assert saved["frontier_s1"]["config"]["label_smoothing"] == 0.1
    assert all(saved[k]["device"] == "cpu" for k in ("lab_auto", "speedrun_s1"))
    assert saved["lab_fp32"]["precision"] == "32-true"


@pytest.mark.slow
def test_the_step_bench_times_each_layer_and_refuses_what_it_cannot_measure(tiny_data_dir,
                                                                            tmp_path):  # fmt: skip
    """bench/step.py: five loops over the recipe's step, each round alternating, the table and
    the figures; settings it cannot measure answer in one line before anything trains."""
    from helpers.runs import run_script

    from mnist_cnn.commands import hydra_override

    data = hydra_override("data.data_dir", str(tiny_data_dir))
    out = tmp_path / "step.json"
    proc = run_script("bench/step.py", "--rounds", "1", "--steps", "3", "--json", str(out),
                      data, "model=mlp", timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    loops = ["plain", "lightning", "ours", "+minimal", "+recipe"]
    ms = json.loads(out.read_text())["ms"]
    assert list(ms) == loops and all(len(v) == 1 and v[0] > 0 for v in ms.values())
    table = proc.stdout.split("vs plain\n", 1)[1].splitlines()
    assert [row.split()[0] for row in table] == loops, proc.stdout
    assert "Seed set" not in proc.stdout + proc.stderr  # the loops' builds are silent
    for bad, said in (
        (["--steps", "1"], "at least 1 round of 2 steps"),
        (["model=no_such_model"], "error: bench/step.py model=no_such_model "),
        (["optimizer.lr=-1"], "error: optimizer.lr"),
    ):
        refused = run_script("bench/step.py", *bad, data, timeout=120)
        assert refused.returncode != 0 and said in refused.stderr, (bad, refused.stderr[-2000:])
        assert "Traceback" not in refused.stderr and "round 1" not in refused.stdout
