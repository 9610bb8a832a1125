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
