"""A real one-node SLURM cluster (Debian's slurm-wlm and munge, scripts/slurm_cluster.sh): sweeps
sent through submitit, a DDP job of two tasks started by srun, and a preempted job requeued.

Where the cluster cannot start, the tests fail with the daemons' own logs; they never skip."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers.data import ROOT
from helpers.runs import run_train, start_script

from mnist_cnn.commands import hydra_override

# one cluster on this machine at a time: the whole file runs on one xdist worker
pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.xdist_group("slurm")]

SCRIPT = ROOT / "scripts" / "slurm_cluster.sh"
TINY = ("trainer.max_epochs=1", "data.batch_size=32", "data.eval_batch_size=64",
        "optimizer.lr=0.0003", "threads=1", "callbacks=minimal")  # fmt: skip


@pytest.fixture(scope="module")
def slurm():
    """The cluster's environment (SLURM_CONF); the daemons are stopped afterwards."""
    cluster = Path(tempfile.mkdtemp(prefix="mnist-slurm-"))
    start = subprocess.run(
        ["bash", str(SCRIPT), "start", str(cluster)], capture_output=True, text=True, timeout=600
    )
    if start.returncode != 0:
        pytest.fail(f"the SLURM cluster did not start:\n{start.stderr[-4000:]}", pytrace=False)
    env = {**os.environ, "SLURM_CONF": str(cluster / "slurm.conf"), "PYTHONUNBUFFERED": "1"}
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(cluster)], timeout=120)
        shutil.rmtree(cluster, ignore_errors=True)


def _slurm_args(sweep: Path, *extra: str) -> list[str]:
    return [
        "-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
        hydra_override("hydra.sweep.dir", str(sweep)), *extra,
    ]  # fmt: skip


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_a_sweep_runs_as_slurm_jobs(slurm, tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        *_slurm_args(sweep, "seed=0,1"), f"data.data_dir={tiny_data_dir}", *TINY,
        env=slurm, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for job in ("0", "1"):
        m = _metrics(sweep / job)
        assert m["status"] == "completed" and m["test/total"] == 200
        assert m["seed"] == int(job)
    assert (sweep / ".submitit").is_dir()  # they went through sbatch
    compared = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), str(sweep)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert compared.returncode == 0 and "| all runs | 2 |" in compared.stdout, compared.stderr


def test_a_two_task_job_trains_with_ddp_through_srun(slurm, tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        *_slurm_args(sweep, "hydra.launcher.tasks_per_node=2"), "trainer.devices=2", "seed=3",
        f"data.data_dir={tiny_data_dir}", *TINY, env=slurm, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    on_slurm = _metrics(sweep / "0")
    assert on_slurm["world_size"] == 2 and on_slurm["test/total"] == 200
    # the same run with ranks this project starts: the same weights, bit for bit
    local = tmp_path / "local"
    proc = run_train("trainer.devices=2", "seed=3", f"data.data_dir={tiny_data_dir}", *TINY,
                     run_dir=local, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _metrics(local)["weights_sha256"] == on_slurm["weights_sha256"]


def _job_id(sweep: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.name.split("_")[0] for p in sweep.glob(".submitit/*") if p.is_dir()]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no job submitted under {sweep}")


@pytest.mark.reliability("SIG5")
def test_ctrl_c_while_the_launcher_waits_leaves_the_submitted_jobs_to_the_cluster(
    slurm, tiny_data_dir, tmp_path
):
    """The launching process only waits: a Ctrl-C there ends the wait with one line that says
    the jobs go on and how to stop or compare them (before: `while starting, before anything was
    saved`), and the job completes."""
    sweep = tmp_path / "sweep"
    args = [*_slurm_args(sweep, "seed=0"), f"data.data_dir={tiny_data_dir}", *TINY]
    proc = start_script("train.py", *args, env=slurm, stderr=subprocess.PIPE,
                        start_new_session=True)  # fmt: skip
    job = _job_id(sweep)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    said = ("SIGINT received while waiting for the sweep's jobs; those submitted go on in the "
            "cluster (squeue lists them, scancel stops them); once they end: ")  # fmt: skip
    assert said in err, err
    assert f"compare.py {sweep}" in err
    _wait_state(job, slurm, ("COMPLETED",))
    assert _metrics(sweep / "0")["status"] == "completed"


def test_a_preempted_job_is_requeued_and_resumes(slurm, tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    args = [*_slurm_args(sweep, "seed=5"), f"data.data_dir={tiny_data_dir}", *TINY,
            "trainer.max_epochs=15"]  # fmt: skip
    parent = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=slurm,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        job = _job_id(sweep)
        log = sweep / "0" / "train.log"
        deadline = time.monotonic() + 300
        while "epoch 3/15" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the job did not train"
            time.sleep(0.5)
        # what SLURM sends a job it preempts
        subprocess.run(["scancel", "--signal=TERM", job], env=slurm, check=True)
        deadline = time.monotonic() + 120
        while _metrics(sweep / "0")["status"] != "interrupted":
            assert time.monotonic() < deadline, "the job did not record its interruption"
            time.sleep(0.5)
        interrupted = _metrics(sweep / "0")
        assert Path(interrupted["resume_checkpoint"]).name == "interrupted.ckpt"
        assert "ckpt_path=" in interrupted["resume_command"]
        _wait_state(job, slurm, ("FAILED", "COMPLETED", "CANCELLED"))
        # requeue on: SLURM starts the same job again in its own dir, and it resumes
        subprocess.run(["scontrol", "requeue", job], env=slurm, check=True)
        # SLURM holds a requeued job back until its old credential expires (cred_expire: 20 s
        # on the test cluster, 120 s by default); starting it earlier, it is killed as
        # "non-startable: Job credential revoked"
        deadline = time.monotonic() + 600
        while _metrics(sweep / "0")["status"] != "completed":
            assert time.monotonic() < deadline, (sweep / "0" / "train.log").read_text()[-3000:]
            time.sleep(1)
    finally:
        parent.kill()
        parent.wait()
    resumed = _metrics(sweep / "0")
    assert resumed["config"]["ckpt_path"] == interrupted["resume_checkpoint"]
    assert resumed["epochs"] == 15
    unbroken = tmp_path / "unbroken"
    proc = run_train("seed=5", f"data.data_dir={tiny_data_dir}", *TINY, "trainer.max_epochs=15",
                     run_dir=unbroken, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _metrics(unbroken)["weights_sha256"] == resumed["weights_sha256"]


def _wait_state(job: str, env: dict, states: tuple[str, ...], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True,
                             text=True).stdout  # fmt: skip
        if any(f"JobState={s}" in out for s in states):
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} did not end: {out}")
