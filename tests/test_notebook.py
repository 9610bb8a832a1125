"""The lab notebook: committed without outputs, and executed top to bottom in fast mode."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from helpers.data import HAS_REAL_MNIST, REAL_DATA
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "mnist_lab.ipynb"


def test_committed_notebook_carries_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"cells {dirty} carry outputs: strip them (make notebook-strip)"


@pytest.mark.real_data
@pytest.mark.skipif(not HAS_REAL_MNIST, reason=f"no MNIST files under {REAL_DATA}/MNIST/raw")
def test_notebook_runs_top_to_bottom_in_fast_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_LAB_FAST", "1")
    monkeypatch.setenv("MNIST_LAB_RUNS", str(tmp_path))
    monkeypatch.setenv("MNIST_DATA_DIR", str(REAL_DATA))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "fast mode" in outputs and "test accuracy" in outputs
    # every figure is drawn inline, never only its repr; a cell that makes a plot shows a PNG
    for o in (o for c in nb.cells for o in c.get("outputs", [])):
        data = o.get("data", {})
        assert "image/png" in data or "<Figure size" not in str(data.get("text/plain", ""))
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and ("plots." in cell.source or "Image(" in cell.source):
            kinds = {m for o in cell.outputs for m in o.get("data", {})}
            assert "image/png" in kinds, f"cell {k} drew no figure: {cell.outputs}"
    # the libraries' noise the command line drops is dropped here too
    for noise in ("TPU available", "Tip:", "LeafSpec", "srun", "Total Flops"):
        assert noise not in outputs, noise
    [run] = list(tmp_path.iterdir())
    for name in ("simple_cnn", "mlp"):
        assert json.loads((run / name / "metrics.json").read_text())["status"] == "completed"
