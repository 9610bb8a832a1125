"""`python train.py` as a subprocess on generated data: run dir, metrics, events, sweeps, errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from helpers.data import ROOT
from helpers.runs import run_train, start_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_cnn.precision import resolve_precision

# its module-scoped fixture is built once: the whole file runs on one xdist worker
pytestmark = pytest.mark.xdist_group("train_cli")

TINY = ("trainer.max_epochs=2", "data.batch_size=32", "data.eval_batch_size=64")


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "run"
    proc = run_train(f"data.data_dir={tiny_data_dir}", *TINY, "seed=3", run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


@pytest.mark.slow
def test_run_dir_holds_config_checkpoints_events_and_log(trained):
    run_dir, _ = trained
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "train.log").stat().st_size > 0
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-epoch") for n in ckpts)
    # named by the epoch a person counts (the run trains max_epochs, 1-based like "epoch 2/2")
    best = [n for n in ckpts if n.startswith("best-epoch")]
    epochs = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    assert all(1 <= int(n.removeprefix("best-epoch").removesuffix(".ckpt")) <= epochs for n in best)
    # one events dir, named by the run's own recipe overrides: no path in the name
    (label,) = (run_dir / "tensorboard").iterdir()
    assert label.name.endswith(",seed=3") and "data_dir" not in label.name
    assert list(label.glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_metrics_json_is_complete_and_consistent(trained):
    run_dir, _ = trained
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "completed"
    assert m["seed"] == 3 and m["epochs"] == 2 and m["num_params"] == 225_034
    assert m["test/total"] == 200 and m["test/correct"] + m["test/incorrect"] == 200
    assert m["test/acc"] == m["test/correct"] / 200
    for key in ("test/loss", "val/acc", "val/loss", "train_seconds"):
        assert isinstance(m[key], float) and m[key] >= 0, key
    assert 0.0 <= m["val/acc"] <= 1.0 and m["test/acc"] > 0.9  # the generated digits are easy
    assert m["test_weights"] == "final"
    # precision=auto resolved on this machine, recorded with the reason and in the config
    assert m["precision"] == resolve_precision("auto")[0] == m["config"]["trainer"]["precision"]
    assert m["precision_requested"] == "auto" and m["precision_reason"].startswith("auto: ")
    assert m["manifest"]["packages"]["torch"] == torch.__version__.split("+")[0]


@pytest.mark.reliability("K4")
@pytest.mark.slow
def test_checkpoints_load_with_weights_only(trained):
    run_dir, _ = trained
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
        assert state["state_dict"]["net.conv1.weight"].shape == (32, 1, 3, 3)
        assert state["hyper_parameters"]["seed"] == 3
        assert state["hyper_parameters"]["data"]["batch_size"] == 32


@pytest.mark.slow
def test_tensorboard_events_read_back(trained):
    run_dir, _ = trained
    (label,) = (run_dir / "tensorboard").iterdir()
    events = EventAccumulator(str(label))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "acc/train", "loss/val", "acc/val", "test/acc", "test/loss"} <= tags
    assert [e.step for e in events.Scalars("acc/val")] == sorted(
        {e.step for e in events.Scalars("acc/val")}
    )
    assert len(events.Scalars("acc/val")) == 2  # one point per epoch
    m = json.loads((run_dir / "metrics.json").read_text())
    assert events.Scalars("acc/val")[-1].value == pytest.approx(m["val/acc"])


@pytest.mark.slow
def test_summary_names_accuracy_run_dir_and_tensorboard(trained):
    run_dir, proc = trained
    out = proc.stdout + proc.stderr
    assert "Test accuracy" in out and "of 200 correct" in out
    assert f"tensorboard --logdir {run_dir / 'tensorboard'}" in out
    assert "225 K" in out  # Lightning's model summary of the 225,034 parameters


@pytest.mark.slow
def test_multirun_writes_one_complete_run_dir_per_job(tiny_data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m", f"data.data_dir={tiny_data_dir}", *TINY, "trainer.max_epochs=1", "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == ["0", "1"]
    weights = []
    for job, seed in zip(jobs, (1, 2), strict=True):
        m = json.loads((job / "metrics.json").read_text())
        assert m["status"] == "completed" and m["seed"] == seed
        state = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        weights.append(state["state_dict"]["net.conv1.weight"])
    assert not torch.equal(*weights)  # different seeds, different networks


@pytest.mark.reliability("D7")
@pytest.mark.slow
def test_missing_data_is_one_clear_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(
        f"data.data_dir={tmp_path / 'nowhere'}", "data.download=false", run_dir=run_dir
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"error: MNIST files missing in {tmp_path / 'nowhere' / 'MNIST' / 'raw'}" in proc.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.reliability("H1", "H2")
def test_bad_settings_exit_2_before_anything_loads(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train("optimizer.lr=-1", "data.batch_size=0", run_dir=run_dir, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "optimizer.lr=-1 is invalid" in proc.stderr and "data.batch_size=0" in proc.stderr
    # nothing ran: the record says why (as a sweep job's does) and holds nothing else
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record == {"status": "failed", "error": record["error"]}, record
    assert "optimizer.lr=-1 is invalid" in record["error"]
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow  # two train.py subprocesses, one of them a tiny run
def test_a_run_without_checkpoints_is_refused_with_advice_that_then_runs(tiny_data_dir, tmp_path):
    """`+trainer.enable_checkpointing=false` beside the checkpoint callbacks was Lightning's
    MisconfigurationException after the imports, exit 1; the advice it is refused with runs."""
    common = [f"data.data_dir={tiny_data_dir}", "callbacks=minimal", "trainer.max_epochs=1",
              "++trainer.enable_checkpointing=false"]  # fmt: skip
    proc = run_train(*common, run_dir=tmp_path / "refused", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    advice = line.split("drop them (")[1].split(")")[0].split()
    assert sorted(advice) == ["~callbacks.last_checkpoint", "~callbacks.model_checkpoint"], line
    proc = run_train(*common, *advice, run_dir=tmp_path / "run", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed" and record["checkpoints"] == {"best": None, "last": None}
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.reliability("C1")
def test_unknown_key_is_hydras_error_and_exit_1(tmp_path):
    proc = run_train("lerning_rate=0.1", run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode == 1
    assert "Could not override 'lerning_rate'" in proc.stderr


@pytest.mark.reliability("F3")
@pytest.mark.parametrize("multirun", [False, True])
def test_output_dir_under_a_file_exits_2_before_anything_runs(tmp_path, multirun):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    args = ["-m", "seed=1,2"] if multirun else []
    proc = run_train(*args, f"{key}={blocker / 'runs'}", timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"error: {key}={blocker / 'runs'}: {blocker} is not a directory" in proc.stderr
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
@pytest.mark.reliability("F3")
def test_unwritable_output_dir_is_refused_naming_it():
    """As root every directory is writable: a forked child becomes nobody (uid 65534) and runs
    the check the run-dir callback runs, so nothing depends on where the clone lies or whether
    nobody can read it."""
    from mnist_cnn.errors import UserError
    from mnist_cnn.run_dirs import check_writable

    base = Path(tempfile.mkdtemp())  # pytest's tmp_path lies under a root-only dir
    base.chmod(0o755)
    locked = base / "locked"
    locked.mkdir()
    (locked / "earlier.txt").write_text("kept")
    locked.chmod(0o555)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            check_writable(locked / "run", "hydra.run.dir")
        except UserError as exc:
            os.write(write, str(exc).encode())
            code = 2
        except BaseException as exc:
            os.write(write, repr(exc).encode())
            code = 3
        os._exit(code)
    os.close(write)
    message = os.fdopen(read).read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2, message
    assert f"{locked} is not writable by this user" in message
    assert sorted(p.name for p in locked.iterdir()) == ["earlier.txt"]
    shutil.rmtree(base)


@pytest.mark.reliability("M2")
def test_runs_started_in_the_same_second_get_their_own_dirs(tmp_path):
    # both stop at the settings check, after Hydra made their run dirs (default naming)
    cmd = ["train.py", f"paths.log_dir={tmp_path}", "optimizer.lr=-1"]
    procs = [start_script(*cmd, stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [2, 2]
    run_dirs = [p.parent for p in tmp_path.glob("*/*/.hydra")]
    assert len(run_dirs) == 2 and run_dirs[0] != run_dirs[1]
    # what keeps runs of the same second apart: microseconds in the name
    assert all(re.fullmatch(r"\d\d-\d\d-\d\d-\d{6}", d.name) for d in run_dirs), run_dirs


@pytest.mark.reliability("VAL4")
def test_an_impossible_device_count_is_refused_before_anything_loads(tmp_path):
    proc = run_train("trainer.devices=0", run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "trainer.devices=0 is invalid" in proc.stderr
    proc = run_train("trainer.num_nodes=2", run_dir=tmp_path / "run2", timeout=60)
    assert proc.returncode == 2 and "torchrun --nnodes=2" in proc.stderr


@pytest.mark.slow
def test_a_log_file_gets_plain_lines_one_per_epoch(trained):
    """Output to a pipe (as to make's log or SLURM's file): no progress-bar refreshes, no
    advertisement; each epoch one line with its metrics, in train.log too."""
    run_dir, proc = trained
    out = proc.stdout + proc.stderr
    assert "\r" not in out and "Tip:" not in out and "litlogger" not in out
    epochs = [line for line in out.splitlines() if "[progress]" in line]
    assert [line.split(" - ", 1)[1].split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("val/acc" in line and "train/loss" in line for line in epochs)
    logged = (run_dir / "train.log").read_text().splitlines()
    assert sum("[progress]" in line for line in logged) == 2


@pytest.mark.reliability("RC1")
@pytest.mark.parametrize("script", ["train.py", "eval.py"])
@pytest.mark.parametrize("key", ["hydra.run.dir", "hydra.sweep.dir"])
def test_a_run_dir_holding_a_literal_interpolation_is_refused_in_one_line(tmp_path, script, key):
    """Hydra reads the run dir's name back as config: `${HOME}` in it was OmegaConf's
    InterpolationKeyError traceback, exit 1, before any of ours ran."""
    from mnist_cnn.commands import hydra_override

    name = str(tmp_path / "run ${HOME} x")
    extra = ["ckpt_path=x"] if script == "eval.py" else []
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), hydra_override(key, name), *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"error: {key}=... holds a literal '${{'")
    assert not list(tmp_path.iterdir())


@pytest.mark.reliability("C4")
@pytest.mark.parametrize(
    "script,args,fix",
    [
        ("train.py", ["scheduler=null"], "run without it with ~scheduler"),
        ("train.py", ["-m", "scheduler=cosine,null"], "a sweep cannot list null"),
        ("train.py", ["scheduler=[cosine,null]"], "run without it with ~scheduler"),
        ("train.py", ["model=null"], "every run needs one: choose one of conf/model/"),
        ("eval.py", ["ckpt_path=x", "logger=null"], "run without it with ~logger"),
    ],
)
def test_a_config_group_set_to_null_is_refused_in_one_line(tmp_path, script, args, fix):
    """Hydra cannot set a group to null from the command line: its ValueError traceback, exit 1
    (conf/train.yaml itself once suggested `scheduler=null`)."""
    from mnist_cnn.commands import hydra_override

    where = [hydra_override(k, str(tmp_path / k)) for k in ("hydra.run.dir", "hydra.sweep.dir")]
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), *args, *where],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    group = args[-1].split("=")[0]
    assert proc.stderr.startswith(
        f"error: {args[-1]}: Hydra cannot set the config group {group} to null"
    )
    assert fix in proc.stderr and not list(tmp_path.iterdir())
