"""A signal while a process starts (Python importing torch and Lightning) stops it with one line
and the shell's 128 + its number: never a run that trains on as if not asked, never an abort."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers.data import ROOT
from helpers.runs import run_train

from mnist_cnn import process
from mnist_cnn.commands import hydra_override
from mnist_cnn.errors import NOTHING_TO_RESUME, Stopped


@pytest.mark.reliability("SIG2")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_starting_ends_the_process_even_inside_an_import_that_swallows_it(sig):
    code = (
        "import os, signal, sys, time\n"
        "from mnist_cnn import process\n"
        "process.starting_up()\n"
        "print('loading')  # a pipe: still in the buffer when the signal comes\n"
        "try:  # a library's optional import, swallowing whatever is raised in it\n"
        f"    os.kill(os.getpid(), {int(sig)})\n"
        "    time.sleep(30)\n"
        "except BaseException:\n"
        "    pass\n"
        "print('trained on as if never stopped')\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + sig and time.monotonic() - start < 20, proc.stderr
    assert proc.stdout == "loading\n"  # what was printed before is flushed, nothing after runs
    name = signal.Signals(sig).name
    assert proc.stderr == f"interrupted: {name} received {process.WHILE_STARTING}\n"


@pytest.mark.reliability("SIG3")
def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    """`nohup` (SIGHUP) and a script's `&` (SIGINT) start a process ignoring a signal: through the
    start, the run's handlers and the exit it stays ignored; the others still stop it."""
    ignored = ("SIGHUP", "SIGINT")
    code = (
        "import os, signal, time\n"
        "from mnist_cnn import process\n"
        "from mnist_cnn.callbacks.resume import GracefulInterrupt\n"
        "process.starting_up()\n"
        f"for name in {ignored!r}:\n"
        "    os.kill(os.getpid(), getattr(signal, name))\n"
        "process.started()\n"
        "run = GracefulInterrupt('/tmp')\n"
        "run.setup(None, None, 'fit')\n"
        "run._own_the_signals()\n"
        f"for name in {ignored!r}:\n"
        "    os.kill(os.getpid(), getattr(signal, name))\n"
        "assert run.received is None\n"
        "print('trained on', flush=True)\n"
        "run.teardown(None, None, 'fit')\n"
        "process.starting_up()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
    )

    def ignore():
        for name in ignored:
            signal.signal(getattr(signal, name), signal.SIG_IGN)

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, preexec_fn=ignore)  # fmt: skip
    assert proc.stdout == "trained on\n", proc.stderr[-2000:]
    assert proc.returncode == 143, proc.stderr[-2000:]


def test_once_started_a_signal_raises_where_it_lands(own_handlers):
    process.starting_up()
    process.started()
    with pytest.raises(Stopped) as stopped:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert stopped.value.exit_code == 143


def _train(data_dir, run_dir, log):
    # 20 epochs: a signal timed from a start-up measured slower than this one (a busy machine)
    # still lands before the run could end; every run here is stopped, so none trains them
    command = [sys.executable, str(ROOT / "train.py"), f"data.data_dir={data_dir}",
               "trainer.max_epochs=20", "callbacks=minimal", "threads=1",
               hydra_override("hydra.run.dir", str(run_dir))]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
@pytest.mark.reliability("SIG2")
def test_a_signal_anywhere_in_train_py_s_start_up_stops_it_in_one_line(tiny_data_dir, tmp_path):
    """Signals spread over the start-up, timed from a run of the same command on this machine:
    each exits 128 + the signal with the one line, no traceback, no C++ abort."""
    log = tmp_path / "calibrate.log"
    start = time.monotonic()
    with log.open("w") as out:
        proc = _train(tiny_data_dir, tmp_path / "calibrate", out)
        while "precision" not in log.read_text():  # the run's first line: started
            assert proc.poll() is None and time.monotonic() - start < 120, log.read_text()
            time.sleep(0.02)
        startup = time.monotonic() - start
        proc.kill()
        proc.wait()
    for i, (share, sig) in enumerate([(0.2, signal.SIGINT), (0.5, signal.SIGTERM),
                                      (0.8, signal.SIGHUP)]):  # fmt: skip
        log = tmp_path / f"run{i}.log"
        with log.open("w") as out:
            proc = _train(tiny_data_dir, tmp_path / f"run{i}", out)
            time.sleep(share * startup)
            proc.send_signal(sig)
            code = proc.wait(timeout=120)
        out = log.read_text()
        said = f"{share:.0%} into the start-up ({startup:.1f} s): {out[-2000:]}"
        assert code == 128 + sig, said
        assert "Traceback" not in out and "terminate called" not in out, said
        assert f"interrupted: {signal.Signals(sig).name} received" in out, said
        record = tmp_path / f"run{i}" / "metrics.json"
        if record.exists():  # Hydra had made the run dir: it says the start was stopped
            kept = json.loads(record.read_text())
            assert kept["status"] == "interrupted", said + str(kept)


@pytest.mark.slow
@pytest.mark.reliability("SIG2")
def test_a_start_stopped_in_its_run_dir_says_so_there_and_a_rerun_is_told(tiny_data_dir,
                                                                          tmp_path):  # fmt: skip
    """A signal while train.py still imports, its run dir made: that dir held Hydra's files and
    no record, and the rerun into it was refused as `already holds a run`. The dir now records
    the stopped start, with nothing to resume, and a rerun names it and the fix."""
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    with log.open("w") as out:
        proc = _train(tiny_data_dir, run_dir, out)
        deadline = time.monotonic() + 120
        while not (run_dir / "train.log").exists():  # Hydra made the dir: the task is starting
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        time.sleep(0.3)  # inside the imports of torch and Lightning, seconds before training
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143, log.read_text()
    assert "interrupted: SIGTERM received while starting" in log.read_text()
    kept = json.loads((run_dir / "metrics.json").read_text())
    assert kept == {"status": "interrupted", "error": f"SIGTERM received before the run "
                    f"began; {NOTHING_TO_RESUME}"}  # fmt: skip
    before = {str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    rerun = run_train(hydra_override("hydra.run.dir", str(run_dir)), timeout=60)
    assert rerun.returncode == 2 and "Traceback" not in rerun.stderr, rerun.stderr[-2000:]
    assert "holds a start that was stopped before it began (SIGTERM received" in rerun.stderr
    assert f"rm -r {run_dir}" in rerun.stderr
    assert {str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.reliability("SIG2")
@pytest.mark.parametrize("launcher", ["alive", "gone"])
def test_a_rank_stopped_while_starting_exits_at_once_and_records_only_for_a_dead_launcher(
    tmp_path, monkeypatch, launcher
):
    """A rank of launch_ranks signalled while importing: with its launcher alive, it must leave
    at once (waiting to tell a dying launcher from a live one let its peer fail first, exit 1,
    and the launcher reported that failure instead of the signal: adversarial seed 45) and the
    launcher records the run; with its launcher gone (a SIGKILL), rank 0 records it."""
    from mnist_cnn import distributed
    from mnist_cnn.cli import record_stops

    monkeypatch.setenv(distributed.LAUNCHED, str(tmp_path))
    # this process's parent stands for a live launcher; a pid that is no process, a dead one
    monkeypatch.setenv(distributed.LAUNCHER_PID, str(os.getppid() if launcher == "alive" else 0))
    monkeypatch.setattr(process, "_record_stop", None)
    record_stops(str(tmp_path))
    start = time.monotonic()
    process._record_stop("SIGINT")
    assert time.monotonic() - start < 0.3
    if launcher == "alive":
        assert not (tmp_path / "metrics.json").exists()
        return
    kept = json.loads((tmp_path / "metrics.json").read_text())
    assert kept["status"] == "interrupted" and "the launcher of the ranks died" in kept["error"]
