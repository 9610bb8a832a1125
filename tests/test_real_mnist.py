"""The Keras lab workload on the real MNIST files: 3 epochs, the official 10,000 test digits."""

from __future__ import annotations

import json

import pytest
from helpers.data import HAS_REAL_MNIST, REAL_DATA
from helpers.runs import run_train

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not HAS_REAL_MNIST, reason=f"no MNIST files under {REAL_DATA}/MNIST/raw"),
]


def test_the_keras_lab_workload_reaches_98_5_percent(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(f"data.data_dir={REAL_DATA}", run_dir=run_dir, timeout=480)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs"] == 3
    assert m["test/total"] == 10_000 and m["test/correct"] + m["test/incorrect"] == 10_000
    assert m["test/acc"] >= 0.985, m["test/acc"]
    assert 0.98 <= m["val/acc"] <= 1.0  # 6,000 validation digits, the last tenth of train
    assert f"{100 * m['test/acc']:.2f}%" in proc.stdout + proc.stderr
