"""scipy.signal waits for a use: a process that starts as the entry points do never loads it (nor
scipy.stats with it), and every way of using it still gets the one real module."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers.runs import run_train

from mnist_cnn import deferred_imports

SRC = Path(__file__).resolve().parents[1] / "src"
STARTED = (
    f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
    "from mnist_cnn import process\n"
    "process.starting_up()\n"
    "stand_in = sys.modules['scipy.signal']\n"
    "assert type(stand_in).__name__ == '_LoadedOnFirstUse', type(stand_in)\n"
)
LIBRARIES = (  # what every entry point loads: torchmetrics runs its scipy.signal shim here
    "import lightning.pytorch, torchmetrics, mnist_cnn.train\n"
    "process.started()\n"
    "assert sys.modules['scipy.signal'] is stand_in\n"
    "heavy = {'scipy.stats', 'scipy.interpolate', 'scipy.signal._signaltools'}\n"
    "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", STARTED + code], capture_output=True, text=True, timeout=120
    )


USES = {
    # each way a library or a user reaches scipy.signal after the start; each prints what it got
    "import": "import scipy.signal\nprint(scipy.signal.convolve(a, b).tolist())",
    "from": "from scipy.signal import convolve\nprint(convolve(a, b).tolist())",
    "as": "import scipy.signal as s\nprint(s.convolve(a, b).tolist())",
    "stand-in held": "print(stand_in.convolve(a, b).tolist())",
    "import_module": "import importlib\n"
    "print(importlib.import_module('scipy.signal').convolve(a, b).tolist())",
    "submodule first": "import scipy.signal.windows as w\nimport scipy.signal\n"
    "assert scipy.signal.windows is w and sys.modules['scipy.signal.windows'] is w\n"
    "print(scipy.signal.convolve(a, b).tolist())",
}


@pytest.mark.parametrize("use", USES)
def test_each_use_after_the_start_gets_the_real_module_once(use):
    rng = random.Random(use)
    a = [rng.randint(-9, 9) for _ in range(rng.randint(2, 7))]
    b = [rng.randint(-9, 9) for _ in range(rng.randint(2, 5))]
    expected = [sum(a[i] * b[k - i] for i in range(len(a)) if 0 <= k - i < len(b))
                for k in range(len(a) + len(b) - 1)]  # fmt: skip
    proc = _python(
        f"a, b = {a}, {b}\n{USES[use]}\n"
        "import scipy, scipy.signal\n"
        "real = sys.modules['scipy.signal']\n"
        "assert type(real) is type(sys) and scipy.signal is real, type(real)\n"
        "assert real.windows is sys.modules['scipy.signal.windows']\n"
        "assert 'scipy.signal._signaltools' in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == expected


def test_the_libraries_load_without_it_and_torchmetrics_alias_is_there():
    proc = _python(
        LIBRARIES + "import numpy\n"
        "w = stand_in.hamming(7)\n"  # the alias torchmetrics adds for SRMRpy, as a function
        "from scipy.signal.windows import hamming\n"
        "assert numpy.array_equal(w, hamming(7))\n"
        "assert 'scipy.signal._signaltools' not in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_nothing_is_deferred_where_scipy_signal_is_loaded_or_absent(monkeypatch):
    # as in this pytest process, which never called process.starting_up()
    assert type(importlib.import_module("scipy.signal")) is types.ModuleType
    assert deferred_imports.defer_scipy_signal() is False
    monkeypatch.delitem(sys.modules, "scipy.signal")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert deferred_imports.defer_scipy_signal() is False and "scipy.signal" not in sys.modules

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    assert deferred_imports.defer_scipy_signal() is False and "scipy.signal" not in sys.modules


@pytest.mark.slow
def test_a_whole_run_with_its_dashboards_never_loads_scipy_signal(tiny_data_dir, tmp_path):
    """train.py, dashboards and test included, started as a user starts it: Python's own import
    log (PYTHONPROFILEIMPORTTIME) shows what the process loaded."""
    from mnist_cnn.commands import hydra_override

    proc = run_train(
        hydra_override("data.data_dir", str(tiny_data_dir)),
        "trainer.max_epochs=1",
        run_dir=tmp_path / "run",
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert {"torchmetrics.functional", "lightning", "matplotlib"} <= loaded  # the log reads right
    assert (tmp_path / "run" / "tensorboard").is_dir()
    assert not {"scipy.signal._signaltools", "scipy.stats", "scipy.interpolate"} & loaded
