"""The lab notebook: committed without outputs, and executed top to bottom in fast mode."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from helpers.data import HAS_REAL_MNIST, REAL_DATA, ROOT, write_mnist
from helpers.runs import processes_with_env, run_script
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


def _kernels_of(pid: int) -> list[int]:
    """Live kernels a notebooks/execute.py process started (jupyter_client tells each its
    parent's pid; a kernel runs in a session of its own, out of the parent's group)."""
    return processes_with_env("JPY_PARENT_PID", pid)


@pytest.mark.real_data
@pytest.mark.reliability("SIG6")
@pytest.mark.skipif(not HAS_REAL_MNIST, reason=f"no MNIST files under {REAL_DATA}/MNIST/raw")
def test_ctrl_c_while_a_cell_trains_stops_the_notebook_in_one_line(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "executed"
    env = {**os.environ, "MNIST_LAB_FAST": "1", "MNIST_LAB_RUNS": str(runs),
           "MNIST_DATA_DIR": str(REAL_DATA), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "notebooks" / "execute.py"), "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a terminal's group: Ctrl-C reaches every process in it
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(runs.glob("*/simple_cnn/tensorboard")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the notebook's training cell never began"
        time.sleep(0.2)
    kernels = _kernels_of(proc.pid)
    assert kernels, "no kernel found for the running notebook"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    said = re.fullmatch(
        r"interrupted: SIGINT received in cell (\d+) of (\d+); the cells run so far: (\S+); "
        r"run `make notebook` again", last)  # fmt: skip
    assert said, last
    cell, kept = int(said[1]) - 1, Path(said[3])
    nb = nbformat.read(kept, as_version=4)
    assert kept.parent == out and "simple_cnn" in nb.cells[cell].source
    assert any(c.get("outputs") for c in nb.cells[:cell]) and not nb.cells[cell + 1].get("outputs")
    [run] = runs.glob("*/simple_cnn")  # the run in the kernel saved and recorded the stop
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    time.sleep(1)
    assert not [k for k in kernels if Path(f"/proc/{k}").exists()], "the kernel outlived it"
    assert not list(out.glob("executed_*"))  # an executed copy is one whose every cell ran


@pytest.mark.slow  # the notebook's kernel, in a subprocess
@pytest.mark.reliability("SIG6")
def test_a_failing_cell_keeps_the_notebook_up_to_it_and_names_the_cell(tmp_path):
    data = write_mnist(tmp_path / "data")
    images = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # cut short: no download can mend it
    out = tmp_path / "executed"
    runtime = tmp_path / "runtime"  # where jupyter_client puts the kernel's connection
    temp = tmp_path / "temp"  # where the kernel's sockets go
    temp.mkdir()
    env = {"MNIST_LAB_FAST": "1", "MNIST_LAB_RUNS": str(tmp_path / "runs"),
           "MNIST_DATA_DIR": str(data), "JUPYTER_RUNTIME_DIR": str(runtime),
           "TMPDIR": str(temp)}  # fmt: skip
    proc = run_script("notebooks/execute.py", "--out", str(out), env=env, timeout=240)
    assert proc.returncode == 1, proc.stderr[-3000:]
    # the kernel talked over sockets of this user's, not TCP ports (ipykernel warned), and
    # left none behind
    assert "over TCP" not in proc.stderr
    assert not list(runtime.glob("*")) and not list(temp.glob("mnist-lab-*"))
    last = proc.stderr.strip().splitlines()[-1]
    said = re.fullmatch(r"error: \S+ failed in cell (\d+) of \d+ \(above\); the notebook up to "
                        r"it: (\S+)", last)  # fmt: skip
    assert said, last
    assert "train-images-idx3-ubyte" in proc.stderr  # the cell's own error, above the line
    nb = nbformat.read(said[2], as_version=4)
    errors = [o for o in nb.cells[int(said[1]) - 1].outputs if o.output_type == "error"]
    assert errors and not list(out.glob("executed_*"))


@pytest.mark.reliability("SIG6")
def test_an_unusable_out_folder_is_refused_before_any_cell_runs(tmp_path):
    taken = tmp_path / "a file"
    taken.write_text("kept")
    proc = run_script("notebooks/execute.py", "--out", str(taken / "executed"), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --out={taken / 'executed'}: ")
    assert taken.read_text() == "kept"


@pytest.mark.reliability("SIG6")
def test_a_kernel_that_never_starts_is_one_line_naming_it(tmp_path):
    """A kernelspec whose process dies at once (generated, first on JUPYTER_PATH): the run ended
    in jupyter_client's traceback."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    dies = {"argv": [sys.executable, "-c", "raise SystemExit(3)", "{connection_file}"],
            "display_name": "dies at once", "language": "python"}  # fmt: skip
    (spec / "kernel.json").write_text(json.dumps(dies))
    out = tmp_path / "executed"
    env = {"JUPYTER_PATH": str(tmp_path / "jupyter"), "MNIST_LAB_FAST": "1"}
    proc = run_script("notebooks/execute.py", "--out", str(out), env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()
    assert re.fullmatch(r"error: \S+mnist_lab\.ipynb: its kernel \(python3\) did not start \(.+\);"
                        r" `jupyter kernelspec list` .*", line), line  # fmt: skip
    assert not list(out.glob("*.ipynb"))
