"""Hydra's callbacks: run and sweep dirs checked before Hydra creates them, and the sweep
summary's exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.runs import run_script, run_train, start_script
from omegaconf import OmegaConf

from mnist_cnn.commands import hydra_override


def _write_run(run_dir: Path, status: str = "completed") -> dict[str, bytes]:
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(os.urandom(64))
    (run_dir / "metrics.json").write_text(json.dumps({"status": status}))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 1\n")
    return {str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("DIR1")
@pytest.mark.parametrize(
    "script,status", [("train.py", "completed"), ("train.py", "interrupted"), ("eval.py", "failed")]
)
def test_a_run_dir_holding_a_run_is_refused_and_left_alone(tmp_path, script, status):
    run_dir = tmp_path / "run"
    before = _write_run(run_dir, status)
    extra = ["ckpt_path=x.ckpt"] if script == "eval.py" else []
    proc = run_script(script, *extra, hydra_override("hydra.run.dir", str(run_dir)), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"hydra.run.dir={run_dir} already holds a run" in proc.stderr
    assert {str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.slow  # train.py and eval.py subprocesses (they stop before the heavy imports)
@pytest.mark.reliability("DIR1")
@pytest.mark.parametrize(
    "script,how,key",
    [
        ("train.py", "run", "paths.output_dir"),
        ("train.py", "sweep", "paths.output_dir"),
        ("eval.py", "run", "paths.output_dir"),
        ("train.py", "run", "callbacks.last_checkpoint.dirpath"),
        ("train.py", "run", "logger.save_dir"),
    ],
)
def test_an_output_dir_given_by_hand_is_refused_and_the_run_there_left_alone(
    tmp_path, script, how, key
):
    """`paths.output_dir=` an earlier run: the run wrote into it past the check that a dir holds
    no run, and replaced its metrics.json and checkpoints (a sweep's jobs, each other's); a
    checkpoint callback's dirpath or the logger's save_dir there, its last.ckpt or events."""
    earlier = tmp_path / "earlier"
    before = _write_run(earlier)
    extra = ["ckpt_path=x.ckpt"] if script == "eval.py" else []
    where = (
        ["-m", "seed=1,2", hydra_override("hydra.sweep.dir", str(tmp_path / "new"))]
        if how == "sweep"
        else [hydra_override("hydra.run.dir", str(tmp_path / "new"))]
    )
    target = earlier / "checkpoints" if key.endswith("dirpath") else earlier
    proc = run_script(script, *extra, *where, hydra_override(key, str(target)), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {key}={target}: ")
    assert "hydra.run.dir" in proc.stderr and not (tmp_path / "new").exists()
    assert {str(p): p.read_bytes() for p in earlier.rglob("*") if p.is_file()} == before


@pytest.mark.slow  # train.py and eval.py subprocesses (they stop before the heavy imports)
@pytest.mark.reliability("DIR5")
@pytest.mark.parametrize(
    "script,how", [("train.py", "run"), ("train.py", "sweep"), ("eval.py", "run")]
)
def test_a_job_told_to_start_in_its_run_dir_is_refused_before_the_dir_is_made(
    tmp_path, script, how
):
    """hydra.job.chdir=true: a relative data.data_dir was looked for (and downloaded) under the
    run dir, a relative ckpt_path or a trial's SQLite storage read from there."""
    extra = ["ckpt_path=x.ckpt"] if script == "eval.py" else []
    where = (
        ["-m", "seed=1,2", hydra_override("hydra.sweep.dir", str(tmp_path / "new"))]
        if how == "sweep"
        else [hydra_override("hydra.run.dir", str(tmp_path / "new"))]
    )
    proc = run_script(script, *extra, *where, "hydra.job.chdir=true", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: hydra.job.chdir=true: ")
    assert not (tmp_path / "new").exists()


@pytest.mark.reliability("DIR4")
def test_two_starts_that_both_found_the_dir_unused_cannot_both_claim_it(tmp_path):
    from mnist_cnn.errors import UserError
    from mnist_cnn.run_dirs import check_unused, check_writable, claim

    run_dir = tmp_path / "run"
    for _ in range(2):  # both starts look before either writes
        check_unused(run_dir, "hydra.run.dir")
        check_writable(run_dir, "hydra.run.dir")
    claim(run_dir, "hydra.run.dir")
    with pytest.raises(UserError, match="begun by another start at this moment"):
        claim(run_dir, "hydra.run.dir")
    with pytest.raises(UserError, match=r"already holds a run \(\.hydra\)"):
        check_unused(run_dir, "hydra.run.dir")  # a third, later


@pytest.mark.slow
@pytest.mark.reliability("DIR4")
@pytest.mark.parametrize("subdir", [".hydra", "null"])
def test_train_py_started_twice_into_one_dir_at_once_trains_once(tmp_path, tiny_data_dir, subdir):
    """Also with hydra.output_subdir=null, where the claim's .hydra is removed at the end (it
    was left empty in the run dir)."""
    import subprocess

    run_dir = tmp_path / "run"
    args = [f"data.data_dir={tiny_data_dir}", "trainer.max_epochs=1", "callbacks=minimal",
            hydra_override("hydra.run.dir", str(run_dir)),
            f"hydra.output_subdir={subdir}"]  # fmt: skip
    procs = [
        start_script("train.py", f"seed={seed}", *args, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        for seed in (1, 2)
    ]  # fmt: skip
    ends = [(p.wait(timeout=240), p.communicate()[1]) for p in procs]
    assert sorted(code for code, _ in ends) == [0, 2], [err[-1500:] for _, err in ends]
    [(code, refused)] = [(c, e) for c, e in ends if c == 2]
    assert f"hydra.run.dir={run_dir} already holds a run" in refused and "Traceback" not in refused
    seed = 1 if ends[0][0] == 0 else 2
    assert json.loads((run_dir / "metrics.json").read_text())["seed"] == seed
    assert (run_dir / ".hydra").exists() == (subdir == ".hydra")


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("DIR2")
@pytest.mark.parametrize("layout", ["single run", "earlier job without metrics"])
def test_a_sweep_into_a_dir_holding_runs_is_refused(tmp_path, layout):
    sweep = tmp_path / "sweep"
    if layout == "single run":
        before = _write_run(sweep)
    else:
        (sweep / "0" / ".hydra").mkdir(parents=True)
        before = {}
    proc = run_train("-m", "seed=1,2", hydra_override("hydra.sweep.dir", str(sweep)), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(sweep) in proc.stderr
    after = {str(p): p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    assert after == before and not (sweep / "1").exists()


@pytest.mark.reliability("EXIT1")
def test_a_sweep_summary_that_cannot_be_written_exits_1(tmp_path, capsys):
    from mnist_cnn.hydra_callbacks import SweepSummary

    sweep = tmp_path / "sweep"
    job = sweep / "0"
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "test/acc": 0.9,
                "test/loss": 0.3,
                "val/acc": 0.9,
                "seed": 1,
                "config": {"seed": 1},
            }
        )
    )
    (sweep / "comparison.json").mkdir()  # the summary cannot replace a directory
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as info:
        SweepSummary().on_multirun_end(config)
    assert info.value.code == 1
    assert f"error: sweep {sweep}:" in capsys.readouterr().err


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("OUT1")
@pytest.mark.parametrize("where", ["long name", "under /proc"])
def test_a_run_dir_that_cannot_be_created_is_refused_before_any_work(tmp_path, where):
    run_dir = tmp_path / ("x" * 300) if where == "long name" else Path("/proc/mnist-run")
    proc = run_train(run_dir=run_dir, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "hydra.run.dir=" in proc.stderr and "choose another hydra.run.dir" in proc.stderr


@pytest.mark.slow  # two train.py subprocesses (each stops before the heavy imports)
@pytest.mark.reliability("DIR1")
def test_a_refused_start_says_why_in_its_dir_and_a_rerun_there_says_what_it_holds(tmp_path):
    """A typo in a run with hydra.run.dir given: the dir records the refusal, like a sweep job's;
    the corrected rerun into the same dir is refused naming that refusal and the fix, and the
    record is left as it was."""
    run_dir = tmp_path / "run"
    where = hydra_override("hydra.run.dir", str(run_dir))
    typo = run_train(hydra_override("ckpt_path", str(tmp_path)), where, timeout=60)
    assert typo.returncode == 2 and "a directory, not a checkpoint" in typo.stderr, typo.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and "a directory, not a checkpoint" in record["error"]
    before = {str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    rerun = run_train(where, timeout=60)
    assert rerun.returncode == 2 and "Traceback" not in rerun.stderr, rerun.stderr[-2000:]
    assert "holds a start that was refused before it began (ckpt_path=" in rerun.stderr
    assert f"rm -r {run_dir}" in rerun.stderr
    assert {str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
