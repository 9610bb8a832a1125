"""Multirun: same seed, same bits; failures recorded; joblib equals serial; launcher configs."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers.data import ROOT
from helpers.runs import processes_with_env, run_train, start_script
from hydra import compose, initialize_config_dir

from mnist_cnn.commands import hydra_override

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = ("trainer.max_epochs=1", "data.batch_size=32", "callbacks=minimal")


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


@pytest.mark.slow
def test_same_seed_same_bits_other_seed_differs(tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m", f"data.data_dir={tiny_data_dir}", *TINY, "seed=5,5,6", f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b, c = (metrics(sweep / str(i)) for i in range(3))
    keys = ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "weights_sha256")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["weights_sha256"] != c["weights_sha256"]
    summary = json.loads((sweep / "comparison.json").read_text())
    assert [r["bit_identical"] for r in summary["reproducibility"]] == [True]
    assert "Sweep summary" in proc.stdout


@pytest.mark.slow
@pytest.mark.reliability("M4")
def test_the_first_sweep_a_user_runs_exits_0_and_compares(
    tiny_data_dir, tmp_path, monkeypatch, own_handlers
):
    """`-m seed=1,2 +trainer.limit_train_batches=...`: every run is partial, so the sweep and
    compare.py (exactly as the README shows it) compare them and say they are partial. A signal
    while the comparison is written names the command that writes it (it said only "outside a
    training or test step", exit 143 beside two completed jobs)."""
    import subprocess
    import sys

    from helpers.data import ROOT

    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m", f"data.data_dir={tiny_data_dir}", *TINY, "seed=1,2",
        "+trainer.limit_train_batches=0.5", f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Runs on part of the data (trainer.limit_train_batches=0.5)" in proc.stdout
    assert "did not complete" not in proc.stderr
    assert "View the sweep:" in proc.stdout and "mnist_cnn.cli.tensorboard" in proc.stdout
    summary = json.loads((sweep / "comparison.json").read_text())
    assert [g["test/acc"]["n"] for g in summary["groups"]] == [2] and not summary["excluded"]
    again = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), str(sweep)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "| all runs | 2 |" in again.stdout and "smoke comparison" in again.stdout

    import shlex
    import signal

    from mnist_cnn import compare, process
    from mnist_cnn.errors import Stopped
    from mnist_cnn.hydra_callbacks import SweepSummary

    (sweep / "comparison.json").unlink()
    real = compare.compare

    def signalled(*args, **kwargs):  # SIGTERM lands inside the comparison
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(compare, "compare", signalled)
    process.starting_up()
    process.started()
    with pytest.raises(Stopped) as stopped:
        SweepSummary().on_multirun_end(_sweep_config(sweep))
    assert stopped.value.exit_code == 143 and not (sweep / "comparison.json").exists()
    command = stopped.value.where.split("write it: ", 1)[1]
    written = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=120,
                             cwd=ROOT)  # fmt: skip
    assert written.returncode == 0 and (sweep / "comparison.json").is_file(), written.stderr


@pytest.mark.reliability("M3")
@pytest.mark.slow
def test_a_failed_job_does_not_stop_the_others(tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m",
        f"data.data_dir={tiny_data_dir}",
        *TINY,
        "optimizer.lr=-1,0.001",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 1
    failed, good = metrics(sweep / "0"), metrics(sweep / "1")
    assert failed["status"] == "failed" and "optimizer.lr=-1 is invalid" in failed["error"]
    assert good["status"] == "completed"
    assert "1 job(s) of the sweep did not complete" in proc.stderr


@pytest.mark.slow
def test_joblib_parallel_sweep_equals_the_serial_one(tiny_data_dir, tmp_path):
    common = ("-m", f"data.data_dir={tiny_data_dir}", *TINY, "seed=1,2")
    parallel = run_train(*common, "hydra/launcher=parallel", f"hydra.sweep.dir={tmp_path / 'p'}")
    serial = run_train(*common, "threads=1", f"hydra.sweep.dir={tmp_path / 's'}")
    assert parallel.returncode == 0 and serial.returncode == 0, parallel.stderr[-2000:]
    for job in ("0", "1"):
        p, s = metrics(tmp_path / "p" / job), metrics(tmp_path / "s" / job)
        assert p["manifest"]["torch_threads"] == 1  # 2 cores / 2 jobs: no oversubscription
        assert p["weights_sha256"] == s["weights_sha256"] and p["test/loss"] == s["test/loss"]


def _workers_of(launcher: int) -> list[int]:
    """The processes started with the launcher's pid as their sweep's (its joblib workers)."""
    return processes_with_env("MNIST_CNN_SWEEP_PID", launcher)


@pytest.mark.slow
@pytest.mark.reliability("SIG5")
@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c to the terminal's group", "kill PID"])  # fmt: skip
def test_a_parallel_sweep_stopped_by_a_signal_stops_every_job_and_says_which(
    tiny_data_dir, tmp_path, sig, group
):
    """The jobs running in joblib's workers save and record `interrupted`, the queued one never
    begins, the launcher says which is which and exits 128 + the signal, no worker is left, and
    a stopped job resumes from its record (before: the launcher left at once, saying nothing was
    saved, and its workers ran every job to the end and stayed, holding the terminal's pipes)."""
    sweep = tmp_path / "sweep"
    args = ["-m", f"data.data_dir={tiny_data_dir}", "trainer.max_epochs=12", "data.batch_size=16",
            "callbacks=minimal", "seed=1,2,3", "hydra/launcher=parallel",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = start_script(
        "train.py", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not (sweep / "0" / "checkpoints" / "last.ckpt").exists():  # job 0 is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    (os.killpg if group else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err and "Logging error" not in err, err[-3000:]
    records = {job: metrics(sweep / job) for job in ("0", "1", "2")}
    assert all(r["status"] == "interrupted" for r in records.values()), records
    assert records["0"]["resume_command"]  # it had trained an epoch: a checkpoint to go on from
    assert "the sweep was stopped before this job began" in records["2"]["error"]
    assert not (sweep / "2" / "checkpoints").exists()
    name = sig.name
    assert f"interrupted: {name} received in sweep {sweep}: " in err and "job 2 not begun" in err
    assert "stopped, with a checkpoint (their metrics.json: the resume command)" in err
    for _ in range(50):  # the workers leave with the launcher
        if not _workers_of(proc.pid):
            break
        time.sleep(0.2)
    assert not _workers_of(proc.pid)
    if sig == signal.SIGTERM:
        return
    # the command job 0's record holds, as a user pastes it, into a dir of its own
    where = hydra_override("hydra.run.dir", str(tmp_path / "resumed"))
    command = f"{records['0']['resume_command']} {shlex.quote(where)}"
    resumed = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = metrics(tmp_path / "resumed")
    assert done["status"] == "completed" and done["epochs"] == 12, done
    assert done["seed"] == 1 and metrics(sweep / "0")["status"] == "interrupted"  # kept as it was


@pytest.mark.slow
@pytest.mark.reliability("SIG5")
def test_a_signal_while_the_workers_import_holds_until_the_libraries_are_in(
    tiny_data_dir, tmp_path
):
    """A worker signalled while its first job imports torch and Lightning finishes the imports,
    then records that the job never began. Before, the signal was raised inside the import: the
    job recorded a stop of a run that had not started, and a torch left half imported logged its
    cache statistics to the console as the worker left."""
    sweep = tmp_path / "sweep"
    args = ["-m", f"data.data_dir={tiny_data_dir}", "trainer.max_epochs=2", "callbacks=minimal",
            "seed=1,2", "hydra/launcher=parallel", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = start_script(
        "train.py", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not (sweep / "0" / ".hydra").is_dir():  # job 0's worker has begun it: it imports
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)  # relayed to each worker
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert not re.search(r"\]\[torch[.\w]*\]\[(INFO|DEBUG)\]", out + err), (out + err)[-3000:]
    for job in ("0", "1"):
        record = metrics(sweep / job)
        assert record["status"] == "interrupted", record
        assert "the sweep was stopped before this job began" in record["error"], record
    assert "jobs 0, 1 not begun" in err.strip().splitlines()[-1]
    for _ in range(50):
        if not _workers_of(proc.pid):
            break
        time.sleep(0.2)
    assert not _workers_of(proc.pid)


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_slurm_launcher_config_composes_with_its_job_settings():
    cfg = compose_hydra("hydra/launcher=slurm", "hydra.launcher.partition=cpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.cpus_per_task, launcher.timeout_min) == ("cpu", 4, 30)


def test_optuna_search_config_maximises_val_acc():
    cfg = compose_hydra("hparams_search=optuna_lr")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.startswith("hydra_plugins.mnist_cnn_optuna")
    assert sweeper.direction == "maximize" and sweeper.pruner is not None
    assert set(sweeper.params) == {"optimizer", "data", "scheduler"}
    assert set(sweeper.params.optimizer) == {"lr"}
    bn = compose_hydra("hparams_search=optuna_bn_cnn").hydra.sweeper
    assert set(bn.params.optimizer) == {"lr", "weight_decay"} and "dropout" in bn.params.model
    assert bn.pruner._target_.endswith("HyperbandPruner")


def _sweep_config(sweep_dir: Path):
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})


def _hold(lock: Path, content: bytes) -> int:
    """The lock as a running sweep holds it (another open file, flocked), with `content`."""
    import fcntl

    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, content)
    return fd


@pytest.mark.reliability("M1")
def test_a_sweep_dir_in_use_or_holding_runs_is_refused(tmp_path, capsys):
    from mnist_cnn.hydra_callbacks import LOCK, SweepSummary

    busy = tmp_path / "busy"
    held = _hold(busy / LOCK, b"4242\n")
    with pytest.raises(SystemExit) as info:
        SweepSummary().on_multirun_start(_sweep_config(busy))
    assert info.value.code == 2
    assert f"{busy}: another sweep (pid 4242) is running" in capsys.readouterr().err
    os.close(held)

    just_taken = tmp_path / "just taken"  # held, its pid not yet written
    held = _hold(just_taken / LOCK, b"")
    with pytest.raises(SystemExit) as info:
        SweepSummary().on_multirun_start(_sweep_config(just_taken))
    assert info.value.code == 2 and "another sweep" in capsys.readouterr().err
    os.close(held)

    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / LOCK).write_text("999999999")  # a killed sweep's leftover: no one holds it
    SweepSummary().on_multirun_start(_sweep_config(stale))
    assert (stale / LOCK).read_text().split() == [str(os.getpid())]


@pytest.mark.reliability("DIR3")
def test_a_lock_naming_a_recycled_pid_or_not_a_file_is_handled(tmp_path, capsys):
    from mnist_cnn.hydra_callbacks import LOCK, SweepSummary

    recycled = tmp_path / "recycled"
    recycled.mkdir()
    # a live pid (ours), but no sweep holds the lock: the sweep that wrote it is gone
    (recycled / LOCK).write_text(f"{os.getpid()} 1\n")
    SweepSummary().on_multirun_start(_sweep_config(recycled))
    assert (recycled / LOCK).read_text().split() == [str(os.getpid())]
    with pytest.raises(SystemExit) as info:  # and now it is held by a live sweep (this one)
        SweepSummary().on_multirun_start(_sweep_config(recycled))
    assert info.value.code == 2

    odd = tmp_path / "odd"
    (odd / LOCK).mkdir(parents=True)
    with pytest.raises(SystemExit) as info:
        SweepSummary().on_multirun_start(_sweep_config(odd))
    assert info.value.code == 2
    assert f"{odd / LOCK}: not a lock file" in capsys.readouterr().err
    assert (odd / LOCK).is_dir()  # nothing removed


@pytest.mark.reliability("DIR3")
def test_a_sweep_dir_on_a_filesystem_without_locks_runs_unguarded_and_says_so(
    tmp_path, monkeypatch, caplog
):
    import errno
    import fcntl

    from mnist_cnn.hydra_callbacks import LOCK, SweepSummary

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)  # as some cluster mounts answer
    sweep = tmp_path / "sweep"
    SweepSummary().on_multirun_start(_sweep_config(sweep))  # no SystemExit: the sweep runs
    assert (sweep / LOCK).read_text().split() == [str(os.getpid())]
    assert "this filesystem keeps no locks" in caplog.text

    def broken(fd, operation):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fcntl, "flock", broken)  # any other failure: refused in one line
    with pytest.raises(SystemExit) as info:
        SweepSummary().on_multirun_start(_sweep_config(tmp_path / "other"))
    assert info.value.code == 2


@pytest.mark.slow
@pytest.mark.reliability("M1")
def test_two_sweeps_started_into_one_dir_at_once_run_once(tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    args = [f"data.data_dir={tiny_data_dir}", "trainer.max_epochs=1", "callbacks=minimal",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    procs = [
        start_script("train.py", "-m", seeds, *args, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        for seeds in ("seed=1,2", "seed=3,4")
    ]  # fmt: skip
    ends = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in ends) == [0, 2], [err[-1500:] for _, err in ends]
    [ran] = [k for k, (code, _) in enumerate(ends) if code == 0]
    seeds = {metrics(sweep / job)["seed"] for job in ("0", "1")}
    assert seeds == ({1, 2} if ran == 0 else {3, 4})  # one sweep's jobs, not a mix
    assert not (sweep / "2").exists()


@pytest.mark.reliability("M1")
@pytest.mark.slow
def test_a_second_sweep_into_the_same_dir_keeps_the_first(tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"  # what an earlier sweep left (its jobs: test_multirun_writes_...)
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "metrics.json").write_text('{"status": "completed", "test/acc": 0.98}')
    before = (sweep / "0" / "metrics.json").read_bytes()
    second = run_train("-m", "seed=1", f"data.data_dir={tiny_data_dir}", f"hydra.sweep.dir={sweep}")
    assert second.returncode == 2
    assert "already holds the runs of an earlier sweep" in second.stderr
    assert (sweep / "0" / "metrics.json").read_bytes() == before
    assert not (sweep / ".sweep.lock").exists()


def test_a_run_that_is_not_a_trial_never_imports_the_search():
    """Hydra imports every module of hydra_plugins at each start: the sweeper there imports the
    search wing (mnist_cnn.search) and Optuna only when a search runs."""
    import subprocess
    import sys

    code = (
        "import sys, hydra_plugins.mnist_cnn_optuna.optuna_sweeper, mnist_cnn.train, "
        "mnist_cnn.cli.train\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('optuna', 'mnist_cnn.search')))\n"
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
