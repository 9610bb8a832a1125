"""One run in several processes (DDP over gloo on this CPU), as a user starts it: trainer.devices=2,
a sweep of such runs, two torchrun "nodes" side by side, bad settings and a rank that dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import ROOT
from helpers.runs import run_eval, run_train, start_script

from mnist_cnn.commands import hydra_override
from mnist_cnn.data.batches import EpochBatchSampler
from mnist_cnn.data.folds import stratified_folds
from mnist_cnn.data.idx import read_labels
from mnist_cnn.errors import NOTHING_TO_RESUME

# its module-scoped fixture is built once: the whole file runs on one xdist worker
pytestmark = pytest.mark.xdist_group("distributed")

# one epoch at a low lr: the network still makes mistakes on the tiny test set, so the gathered
# confusion matrix and mistakes have something to agree on
SMALL = ("trainer.max_epochs=1", "data.batch_size=32", "data.eval_batch_size=64",
         "optimizer.lr=0.0003", "threads=1")  # fmt: skip


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_each_batch_of_one_permutation_and_share_the_test_set(world):
    one = EpochBatchSampler(1000, 128, shuffle=True, seed=5)
    ranks = [EpochBatchSampler(1000, 128, shuffle=True, seed=5, rank=r, world=world)
             for r in range(world)]  # fmt: skip
    for s in (one, *ranks):
        s.set_epoch(2)
    whole = list(one)
    parts = [list(s) for s in ranks]
    assert all(len(p) == len(whole) == len(s) for p, s in zip(parts, ranks, strict=True))
    for k, batch in enumerate(whole):  # the same global batches, cut without overlap
        assert torch.equal(torch.cat([p[k] for p in parts]), batch)
    evaluation = [EpochBatchSampler(1001, 64, shuffle=False, rank=r, world=world)
                  for r in range(world)]  # fmt: skip
    seen = torch.cat([torch.cat(list(s)) for s in evaluation])
    assert torch.equal(seen, torch.arange(1001))  # every test digit once, in order, unpadded
    # a last batch too small to reach every rank is dropped, never an empty step
    tail = [list(EpochBatchSampler(129, 128, shuffle=True, rank=r, world=world))
            for r in range(world)]  # fmt: skip
    assert all(len(t) == 1 for t in tail)


@pytest.fixture(scope="module")
def ddp_run(tiny_data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    proc = run_train(
        f"data.data_dir={tiny_data_dir}", *SMALL, "seed=3", "trainer.devices=2",
        run_dir=run_dir, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, proc


@pytest.mark.slow
def test_a_two_process_run_is_one_complete_run(ddp_run):
    run_dir, proc = ddp_run
    m = _metrics(run_dir)
    assert m["status"] == "completed" and m["world_size"] == 2
    assert m["test/total"] == 200  # every test digit once: no sampler padding
    cm = np.array(m["test/confusion_matrix"])
    assert cm.sum() == 200 and np.trace(cm) == m["test/correct"]
    assert m["test/misclassified"] == m["test/incorrect"] > 0
    assert len(m["test/misclassified_indices"]) == m["test/incorrect"]
    out = proc.stdout + proc.stderr
    assert out.count("Test accuracy") == 1  # one summary
    parent = run_dir.parent
    assert sorted(p.name for p in parent.iterdir()) == ["run"]  # no stray per-rank dirs
    assert {p.name for p in run_dir.iterdir()} == {
        ".hydra", "checkpoints", "figures", "metrics.json", "tensorboard", "train.log",
    }  # fmt: skip
    log = (run_dir / "train.log").read_text()
    assert "[rank 0]" in log and "[rank 1]" in log  # log lines name their rank
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_a_ddp_runs_projector_is_written_once_by_rank_zero(ddp_run):
    """Each rank keeps its share's features; rank zero alone writes its share (the other ranks'
    writers are Lightning's stand-ins): one config, one entry, rows, labels and sprite agreeing."""
    from google.protobuf import text_format
    from PIL import Image
    from tensorboard.plugins import projector

    run_dir, _ = ddp_run
    [config_path] = (run_dir / "tensorboard").glob("*/projector_config.pbtxt")
    config = text_format.Parse(config_path.read_text(), projector.ProjectorConfig())
    [entry] = config.embeddings
    log_dir = config_path.parent
    assert len(list(log_dir.glob("*/test_digits"))) == 1
    rows = (log_dir / entry.tensor_path).read_text().splitlines()
    header, *labels = (log_dir / entry.metadata_path).read_text().splitlines()
    assert len(rows) == len(labels) == 100  # rank zero's half of the 200 test digits
    assert header == "class\tpredicted\tanswer"
    assert {len(r.split("\t")) for r in rows} == {128}  # the dense layer's features
    side = Image.open(log_dir / entry.sprite.image_path).size
    assert side == (10 * 28, 10 * 28)  # ceil(sqrt(100)) tiles a side


@pytest.mark.slow
def test_eval_in_one_process_gives_the_ddp_runs_numbers(ddp_run, tiny_data_dir, tmp_path):
    run_dir, _ = ddp_run
    trained = _metrics(run_dir)
    out = tmp_path / "eval"
    proc = run_eval(
        f"data.data_dir={tiny_data_dir}",
        hydra_override("ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")),
        hydra_override("hydra.run.dir", str(out)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = _metrics(out)
    assert evaluated["test/correct"] == trained["test/correct"]
    assert evaluated["test/confusion_matrix"] == trained["test/confusion_matrix"]
    assert evaluated["test/misclassified_indices"] == trained["test/misclassified_indices"]
    # on two devices it is refused up front, its record says so (its second rank once refused
    # the run dir and left metrics.json at `running`)
    two = run_eval(
        f"data.data_dir={tiny_data_dir}",
        hydra_override("ckpt_path", str(run_dir / "checkpoints" / "last.ckpt")),
        hydra_override("hydra.run.dir", str(tmp_path / "eval2")),
        "trainer.devices=2",
    )
    assert two.returncode == 2 and "Traceback" not in two.stderr, two.stderr[-2000:]
    assert "eval.py tests in one process (trainer.devices=2" in two.stderr
    refused = _metrics(tmp_path / "eval2")
    assert refused == {"status": "failed", "error": refused["error"]}, refused
    assert "eval.py tests in one process" in refused["error"]


@pytest.mark.slow
def test_predict_reads_a_ddp_runs_checkpoint_as_one_process_would(ddp_run, tmp_path):
    """predict.py with a DDP run's checkpoint: the network's own answers, in one process."""
    from helpers.data import make_digits
    from PIL import Image

    from mnist_cnn import checkpoints

    run_dir, _ = ddp_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    digits, _ = make_digits(4, seed=11)
    for i, d in enumerate(digits):
        Image.fromarray(d).save(tmp_path / f"{i}.png")
    net = checkpoints.load(ckpt).build_net(in_channels=1, image_size=28)
    expected = net(torch.from_numpy(digits).float()[:, None] / 255).argmax(1).tolist()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), *(str(tmp_path / f"{i}.png") for i in range(4)),
         "--ckpt", str(ckpt), "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["digit"] for r in json.loads(proc.stdout)] == expected


@pytest.mark.slow
def test_ddp_spawn_is_the_same_complete_run(ddp_run, tiny_data_dir, tmp_path):
    """Lightning's ddp_spawn lost the run's state (epochs 0, counts doubled): here it is DDP."""
    run_dir, _ = ddp_run
    proc = run_train(
        f"data.data_dir={tiny_data_dir}", *SMALL, "seed=3", "trainer.devices=2",
        "trainer.strategy=ddp_spawn", run_dir=tmp_path / "spawn", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    spawned, launched = _metrics(tmp_path / "spawn"), _metrics(run_dir)
    assert spawned["epochs"] == 1 and spawned["test/total"] == 200
    assert spawned["weights_sha256"] == launched["weights_sha256"]


@pytest.mark.slow
def test_a_sweep_of_ddp_runs_leaves_one_dir_per_job(tiny_data_dir, tmp_path):
    """A cross-validation sweep on two ranks (`-m data.folds=2 data.fold=0,1 trainer.devices=2`):
    one dir per fold, each run validating on exactly its fold and training on the rest."""
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m", f"data.data_dir={tiny_data_dir}", *SMALL, "data.folds=2", "data.fold=0,1",
        "trainer.devices=2", hydra_override("hydra.sweep.dir", str(sweep)), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]  # Lightning's own ddp would re-run the sweep per rank
    labels = read_labels(tiny_data_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte")
    folds = stratified_folds(labels, 2)
    for job in jobs:
        m = _metrics(sweep / job)
        assert m["status"] == "completed" and m["world_size"] == 2 and m["test/total"] == 200
        assert m["config"]["data"]["fold"] == int(job)
        held_out = np.bincount(labels[folds[int(job)]], minlength=10).tolist()
        assert m["class_counts"]["val"] == held_out
        assert np.add(m["class_counts"]["train"], held_out).tolist() == np.bincount(labels).tolist()
    assert (proc.stdout + proc.stderr).count("Sweep summary") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_give_the_two_process_runs_weights(ddp_run, tiny_data_dir, tmp_path):
    """Two `torchrun --nnodes=2` agents side by side act as two hosts (gloo over loopback)."""
    run_dir, _ = ddp_run
    shared = tmp_path / "two-nodes"
    port = _free_port()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=two-nodes",
        str(ROOT / "train.py"), f"data.data_dir={tiny_data_dir}", *SMALL, "seed=3",
        "trainer.num_nodes=2", hydra_override("hydra.run.dir", str(shared)),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    nodes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [n.communicate(timeout=600)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    two_nodes, two_processes = _metrics(shared), _metrics(run_dir)
    assert two_nodes["world_size"] == 2 and two_nodes["test/total"] == 200
    for key in ("test/correct", "test/confusion_matrix", "test/loss", "val/acc", "global_step"):
        assert two_nodes[key] == two_processes[key], key
    # the weights agree to the last bits (two agents vs one order gloo's exchange differently;
    # docs/scaling.md has the measured difference)
    ours, theirs = (
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for d in (shared, run_dir)
    )
    for name, tensor in ours.items():
        assert torch.allclose(tensor, theirs[name], rtol=0, atol=1e-6), name


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, expected",
    [
        ("trainer.devices=0", "trainer.devices=0"),
        ("trainer.devices=-3", "trainer.devices=-3"),
        ("trainer.devices=[0,1]", "device indices name GPUs"),
        ("trainer.num_nodes=2", "torchrun --nnodes=2"),
        ("trainer.strategy=fsdp9", "trainer.strategy"),
    ],
)
def test_bad_scale_settings_are_one_line_errors(tiny_data_dir, tmp_path, override, expected):
    proc = run_train(f"data.data_dir={tiny_data_dir}", override, run_dir=tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and expected in proc.stderr


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_run_with_its_name(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    log = tmp_path / "out.log"
    command = [sys.executable, str(ROOT / "train.py"), f"data.data_dir={tiny_data_dir}", *SMALL,
               "trainer.max_epochs=50", "trainer.devices=2",
               hydra_override("hydra.run.dir", str(run_dir))]  # fmt: skip
    with log.open("w") as out:
        proc = start_script("train.py", *command[2:], stdout=out)
    deadline = time.monotonic() + 300
    while "epoch 2/50" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    # the launching train.py is the elastic agent: the ranks are its children
    ranks = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "train.py"],
                           capture_output=True, text=True).stdout.split()  # fmt: skip
    victim = _rank_pid(ranks, 1)
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    code = proc.wait(timeout=120)
    assert time.monotonic() - start < 60  # the survivor is stopped, no hang
    out = log.read_text()
    assert code != 0 and "rank 1 was killed by SIGKILL" in out, out[-3000:]
    m = _metrics(run_dir)
    assert m["status"] == "failed" and "rank 1" in m["error"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # what was saved stays
    torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # and is intact


def _rank_pid(pids: list[str], rank: int) -> int:
    """The pid of rank `rank` among pids (its environment says RANK=rank)."""
    for pid in pids:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in env:
            return int(pid)
    raise AssertionError(f"no process with RANK={rank} among {pids}")


DDP_40 = ("trainer.max_epochs=40", "trainer.devices=2", "seed=5", "callbacks=minimal")


def _ddp_run_at_epoch_3(
    data_dir, run_dir: Path, log: Path, epochs: int = 40, nohup: bool = False
) -> tuple[subprocess.Popen, list[str]]:
    """A 2-rank run of `epochs` tiny epochs (~1 s each), returned once its 3rd epoch is done: it
    cannot end before a signal sent then lands, even on a loaded machine (a CI run once finished
    a 20-epoch run first, when the signal was sent after a fixed time). Returns the launcher
    process and the run's overrides. nohup: started by `nohup`, in a session of its own."""
    common = [f"data.data_dir={data_dir}", *SMALL, *DDP_40, f"trainer.max_epochs={epochs}"]
    command = [*(["nohup"] if nohup else []), sys.executable, str(ROOT / "train.py"), *common,
               hydra_override("hydra.run.dir", str(run_dir))]  # fmt: skip
    with log.open("w") as out:
        if nohup:  # nohup's own start: a real one
            proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        else:
            proc = start_script("train.py", *command[2:], stdout=out)
    deadline, train_log = time.monotonic() + 300, run_dir / "train.log"
    # the run directory exists a moment before train.log does: wait for the file itself
    while f"epoch 3/{epochs}" not in (train_log.read_text() if train_log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    return proc, common


@pytest.mark.reliability("SIG3")
@pytest.mark.slow
def test_a_run_started_by_nohup_outlives_the_hangup_of_its_session(tiny_data_dir, tmp_path):
    """`nohup python train.py trainer.devices=2 &`, then the SSH session closes: the hangup
    reaches the launcher and both ranks (the session's processes). Each handler of the run, and
    torch's agent, used to replace nohup's choice: the ranks saved and stopped, exit 129."""
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    proc, _ = _ddp_run_at_epoch_3(tiny_data_dir, run_dir, log, epochs=12, nohup=True)
    os.killpg(proc.pid, signal.SIGHUP)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    m = _metrics(run_dir)
    assert m["status"] == "completed" and m["epochs"] == 12, m
    assert not (run_dir / "checkpoints" / "interrupted.ckpt").exists()


@pytest.mark.reliability("RD1")
@pytest.mark.slow
def test_sigterm_to_one_rank_is_an_interruption_not_a_failure(tiny_data_dir, tmp_path):
    """A signal to rank 1 alone (an OOM killer's TERM, a user's kill): the ranks agree, save
    once and stop; the record says interrupted with its checkpoint, never "failed: rank 0
    exited with code 143"."""
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    proc, _ = _ddp_run_at_epoch_3(tiny_data_dir, run_dir, log)
    ranks = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True)
    pids = [p for p in ranks.stdout.split() if int(p) != proc.pid]
    os.kill(_rank_pid(pids, 1), signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    out = log.read_text()
    assert out.count("resume with:") == 1 and "error:" not in out, out[-3000:]
    m = _metrics(run_dir)
    assert m["status"] == "interrupted" and Path(m["resume_checkpoint"]).is_file(), m.get("error")


@pytest.mark.reliability("RD1")
def test_a_rank_whose_launcher_died_before_it_started_records_why(tmp_path):
    """The launcher killed (SIGKILL) before a rank could ask the kernel for a signal at its
    death: the rank finds itself orphaned and stops itself. That stop used to come before the
    rank knew its run dir, so nothing said why the run ended; now the record does. (The timed
    test above lands here only when its SIGKILL beats the rank's first lines.)"""
    from mnist_cnn.distributed import LAUNCHED, LAUNCHER_PID

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    not_the_parent = str(os.getpid() + 10_000_000)  # above any pid: a launcher long gone
    env = {**os.environ, LAUNCHED: str(run_dir), LAUNCHER_PID: not_the_parent}
    done = subprocess.run([sys.executable, str(ROOT / "train.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    m = _metrics(run_dir)
    assert m["status"] == "interrupted" and "the launcher of the ranks died" in m["error"], m
    assert m["error"].endswith(NOTHING_TO_RESUME), m


@pytest.mark.slow
@pytest.mark.reliability("RD1")
@pytest.mark.parametrize(
    "target,sig,after",
    [("rank 1", signal.SIGTERM, 0.5), ("launcher", signal.SIGTERM, 0.5),
     ("rank 0", signal.SIGTERM, 0.5), ("rank 1", signal.SIGINT, 0.5),
     ("launcher", signal.SIGKILL, 0.5), ("rank 1", signal.SIGTERM, 0.0)],
)  # fmt: skip
def test_a_signal_while_the_ranks_start_is_an_interruption(
    tiny_data_dir, tmp_path, target, sig, after
):
    """A signal while the ranks start (they are still importing torch), or, at 0 s, before the
    rank has its handlers: a rank dies of it, or fails as its peers go down. It was `failed`
    and exit 1; it is an interruption with nothing to resume, exit 143, and says so, naming the
    rank signalled (at 0 s it named its peer, stopped by the launcher's own SIGTERM after)."""
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    command = [sys.executable, str(ROOT / "train.py"), f"data.data_dir={tiny_data_dir}",
               *SMALL, *DDP_40, hydra_override("hydra.run.dir", str(run_dir))]  # fmt: skip
    with log.open("w") as out:
        proc = start_script("train.py", *command[2:], stdout=out)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        ranks = [p for p in found.stdout.split() if Path(f"/proc/{p}/environ").exists()]
        if len(ranks) == 2:
            break
        time.sleep(0.05)
    time.sleep(after)  # 0.5: past the interpreter's own start-up, inside the ranks' imports
    pid = proc.pid if target == "launcher" else _rank_pid(ranks, int(target[-1]))
    os.kill(pid, sig)
    if sig == signal.SIGKILL:  # nothing of the launcher runs: its ranks, orphaned, say it
        assert proc.wait(timeout=120) == -sig
        deadline = time.monotonic() + 120
        while any(Path(f"/proc/{p}").exists() for p in ranks):  # each in a session of its own
            assert time.monotonic() < deadline, "ranks outlived their launcher by 120 s"
            time.sleep(0.1)
        m = _metrics(run_dir)
        assert m["status"] == "interrupted" and "the launcher of the ranks died" in m["error"], m
        assert m["error"].endswith(NOTHING_TO_RESUME), m
        return
    assert proc.wait(timeout=120) == 128 + sig, log.read_text()[-3000:]
    out = log.read_text()
    assert "Traceback" not in out, out[-3000:]  # a surviving rank says it lost its peers, once
    m = _metrics(run_dir)
    assert m["status"] == "interrupted", m
    if target.startswith("rank"):
        other = 1 - int(target[-1])
        assert target in m["error"] and f"rank {other}" not in m["error"], m["error"]


@pytest.mark.slow
@pytest.mark.reliability("RD2")
def test_sigkill_to_the_launcher_stops_its_ranks_as_an_interruption(tiny_data_dir, tmp_path):
    """A SIGKILL runs no handler of the launcher: its ranks trained on, then died on its vanished
    rendezvous store with raw DistNetworkError tracebacks. They now get a SIGTERM from the
    kernel the moment it dies, save once and stop; the record says why and how to resume."""
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    proc, _ = _ddp_run_at_epoch_3(tiny_data_dir, run_dir, log)
    ranks = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True)
    pids = [int(p) for p in ranks.stdout.split() if int(p) != proc.pid]
    assert len(pids) == 2, ranks.stdout
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 120
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "ranks outlived their launcher by 120 s"
        time.sleep(0.2)
    out = log.read_text()
    assert "Traceback" not in out and "DistNetworkError" not in out, out[-3000:]
    assert out.count("resume with:") == 1 and "threads=" not in out.split("resume with:")[1]
    m = _metrics(run_dir)
    assert m["status"] == "interrupted" and Path(m["resume_checkpoint"]).is_file()
    assert "the launcher of the ranks died" in m["error"]


@pytest.mark.slow
def test_sigterm_to_the_launcher_saves_once_and_resumes_bit_for_bit(tiny_data_dir, tmp_path):
    first, log = tmp_path / "first", tmp_path / "first.log"
    # 12 epochs: the signal lands at the 3rd, and the resumed and the unbroken run train all 12
    proc, common = _ddp_run_at_epoch_3(tiny_data_dir, first, log, epochs=12)
    proc.send_signal(signal.SIGTERM)  # what a scheduler or `kill` sends the launching process
    signalled = time.monotonic()
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    out = log.read_text()
    took = f"exit {time.monotonic() - signalled:.1f} s after the signal; the log ends:\n"
    assert out.count("resume with:") == 1, took + out[-3000:]  # rank 0 says it, once
    assert "View it:" not in out, took + out[-3000:]  # the run did not complete
    m = _metrics(first)
    assert m["status"] == "interrupted" and Path(m["resume_checkpoint"]).name == "interrupted.ckpt"
    resumed = run_train(*common, hydra_override("ckpt_path", m["resume_checkpoint"]),
                        run_dir=tmp_path / "resumed", timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    unbroken = run_train(*common, run_dir=tmp_path / "unbroken", timeout=600)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    a, b = _metrics(tmp_path / "resumed"), _metrics(tmp_path / "unbroken")
    assert a["weights_sha256"] == b["weights_sha256"] and a["global_step"] == b["global_step"]


@pytest.mark.slow
@pytest.mark.reliability("RD1")
def test_a_signal_after_the_run_completed_stops_nothing(tiny_data_dir, tmp_path):
    """SIGTERM to the launcher the moment rank 0 has recorded the run completed (its agent is
    still noticing the ranks are done): it was `interrupted: SIGTERM`, exit 143, beside a record
    that says completed, and a scheduler would requeue a finished job. The run is whole: exit 0,
    the record untouched, and a line that says what arrived."""
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    command = [sys.executable, str(ROOT / "train.py"), f"data.data_dir={tiny_data_dir}", *SMALL,
               "callbacks=minimal", "model=mlp", "trainer.devices=2",
               hydra_override("hydra.run.dir", str(run_dir))]  # fmt: skip
    with log.open("w") as out:
        proc = start_script("train.py", *command[2:], stdout=out)
    deadline = time.monotonic() + 300
    while _status(run_dir) != "completed":
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    before = (run_dir / "metrics.json").read_bytes()
    assert proc.poll() is None, "the launcher ended before the signal could be sent"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    out = log.read_text()
    assert "SIGTERM arrived after the run completed: nothing was stopped" in out, out[-3000:]
    assert "interrupted" not in out and "Traceback" not in out, out[-3000:]
    assert (run_dir / "metrics.json").read_bytes() == before


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError):  # not written yet, or being replaced
        return None


def _failure(tmp_path: Path, rank: int, exitcode: int, lost_peers_at: int | None = None):
    """torch elastic's record of a rank that exited: lost_peers_at, the second the rank recorded
    (through torch's own error handler, as train.py does) that it lost its peers."""
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from mnist_cnn import distributed

    error_file = tmp_path / f"error-{len(list(tmp_path.iterdir()))}.json"  # each its own
    if lost_peers_at is not None:
        before = os.environ.get("TORCHELASTIC_ERROR_FILE")
        os.environ["TORCHELASTIC_ERROR_FILE"] = str(error_file)
        try:
            distributed.record_peers_lost(f"rank {rank} lost its peers")
        finally:
            os.environ.pop("TORCHELASTIC_ERROR_FILE")
            if before is not None:
                os.environ["TORCHELASTIC_ERROR_FILE"] = before
        data = json.loads(error_file.read_text())
        data["message"]["extraInfo"]["timestamp"] = str(lost_peers_at)
        error_file.write_text(json.dumps(data))
    return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode,
                          error_file=str(error_file))  # fmt: skip


@pytest.mark.parametrize("lead", [-2, 0, 2])  # the lost rank's second against the other's
def test_the_launcher_names_the_rank_that_stopped_not_the_one_that_lost_its_peers(tmp_path, lead):
    """A signal to rank 1 while rank 0 waits for it: rank 0 fails at its next collective, often
    in the same second (the agent's clock), and was named as the cause (exit 1) half the time."""
    from mnist_cnn.distributed import first_cause

    signalled = _failure(tmp_path, 1, 143)
    for lost_rank, other_rank in ((0, 1), (1, 0)):
        other = _failure(tmp_path, other_rank, 143)
        lost = _failure(tmp_path, lost_rank, 1, lost_peers_at=other.timestamp + lead)
        assert lost.timestamp == other.timestamp + lead and lost.exitcode == 1
        for failures in (
            {lost_rank: lost, other_rank: other},
            {other_rank: other, lost_rank: lost},
        ):
            rank, failure = first_cause(failures)
            assert (rank, failure.exitcode) == (other_rank, 143), (failures, lead)
    # an error of its own (exit 1, no record) in the same second is still the cause
    error = _failure(tmp_path, 1, 1)
    lost = _failure(tmp_path, 0, 1, lost_peers_at=error.timestamp + lead)
    assert first_cause({0: lost, 1: error})[0] == 1
    # where every rank lost its peers, the first of them; ties as before: a SIGKILL before the
    # agent's own SIGTERM, whatever the order the agent recorded them in
    early, late = (_failure(tmp_path, r, 1, lost_peers_at=signalled.timestamp + t)
                   for r, t in ((1, -1), (0, 0)))  # fmt: skip
    assert first_cause({0: late, 1: early})[0] == 1
    killed, stopped = _failure(tmp_path, 1, -signal.SIGKILL), _failure(tmp_path, 0, -signal.SIGTERM)
    if killed.timestamp == stopped.timestamp:  # recorded in one second (nearly always)
        assert first_cause({0: stopped, 1: killed})[0] == 1
    # a SIGTERM that killed rank 1 before its handlers (exit -15), and the agent's SIGTERM that
    # its peer, handlers in place by then, ended on (exit 143): rank 1 was signalled
    raw, handled = _failure(tmp_path, 1, -signal.SIGTERM), _failure(tmp_path, 0, 143)
    if raw.timestamp == handled.timestamp:
        for failures in ({0: handled, 1: raw}, {1: raw, 0: handled}):
            assert first_cause(failures)[0] == 1, failures


def test_a_rank_outside_a_launcher_or_without_its_log_dir_records_nothing(tmp_path, monkeypatch):
    from mnist_cnn.distributed import record_peers_lost

    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    record_peers_lost("rank 0 lost its peers")
    assert list(tmp_path.iterdir()) == []
    # the launcher's log dir gone (it is ending too): the rank still ends with its one line
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "gone" / "error.json"))
    record_peers_lost("rank 0 lost its peers")
    assert list(tmp_path.iterdir()) == []
