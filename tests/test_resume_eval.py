"""Interrupt, resume and evaluate for real (train.py, eval.py subprocesses); unsafe checkpoints.

Slow tier: ~2 minutes, six subprocess runs on generated data. The in-process checks are fast.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.data import ROOT, write_mnist
from helpers.runs import digests, printed, run_eval, run_script, run_train
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mnist_cnn import checkpoints
from mnist_cnn.commands import hydra_override
from mnist_cnn.config import validate
from mnist_cnn.errors import UserError

# its module-scoped fixture is built once: the whole file runs on one xdist worker
pytestmark = pytest.mark.xdist_group("resume_eval")

HELPERS = str(ROOT / "tests" / "helpers")
# dropout, batch norm, per-digit augmentation and a one-cycle schedule: everything RNG-driven
STRONG = ["experiment=bn_cnn", "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0"]
SIGNAL_STEP = 20  # 15 batches an epoch: the signal lands mid-way through the second epoch


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted run, and the same run stopped by SIGINT at SIGNAL_STEP, in a directory
    whose name Hydra's override grammar and the shell would both misread unquoted."""
    root = tmp_path_factory.mktemp("resume") / "it's [a run], 50% = (done)"
    data = write_mnist(root / "data", n_train=2000, n_test=300)
    common = [*STRONG, hydra_override("data.data_dir", str(data))]
    full = run_train(*common, run_dir=root / "full")
    assert full.returncode == 0, full.stderr[-2000:]
    stopped = run_train(
        *common,
        "+callbacks.signal._target_=signal_at.SignalAt",
        f"+callbacks.signal.step={SIGNAL_STEP}",
        run_dir=root / "stopped",
        env={"PYTHONPATH": HELPERS},
    )
    return {
        "root": root,
        "data": data,
        "full": root / "full",
        "stopped": root / "stopped",
        "stopped_proc": stopped,
        "common": common,
    }


@pytest.mark.reliability("R1")
@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_says_how_to_resume(runs):
    proc = runs["stopped_proc"]
    assert proc.returncode == 130, proc.stderr[-2000:]
    ckpt = runs["stopped"] / "checkpoints" / "interrupted.ckpt"
    assert "Traceback" not in proc.stderr
    command = shlex.split(printed(proc.stderr, "resume with: "))
    assert command[-1] == hydra_override("ckpt_path", str(ckpt))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == SIGNAL_STEP
    m = _metrics(runs["stopped"])
    assert m["status"] == "interrupted" and m["resume_checkpoint"] == str(ckpt)


@pytest.mark.reliability("R3", "R7")
@pytest.mark.slow
def test_resume_is_bit_identical_and_leaves_the_old_run_alone(runs):
    before = digests(runs["stopped"])
    # the printed command, as a user pastes it into a shell (plus where the new run goes)
    command = printed(runs["stopped_proc"].stderr, "resume with: ")
    resumed_dir = hydra_override("hydra.run.dir", str(runs["root"] / "resumed"))
    resumed = subprocess.run(
        ["bash", "-c", f"{command} {shlex.quote(resumed_dir)}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": HELPERS},
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Lightning cannot see that the datamodule resumes mid-epoch itself (data/mnist.py): its
    # "your dataloader is not resumable ... unreliable results" would contradict the bits below
    assert "not resumable" not in resumed.stderr + resumed.stdout
    full, again = _metrics(runs["full"]), _metrics(runs["root"] / "resumed")
    for key in ("weights_sha256", "test/loss", "test/acc", "train/loss", "train/acc", "val/loss"):
        assert again[key] == full[key], key
    assert again["global_step"] == full["global_step"] == 30
    assert digests(runs["stopped"]) == before  # R7: a new run dir, the old one untouched


@pytest.mark.slow
def test_a_partial_run_resumed_mid_epoch_ends_as_the_whole_partial_run(tmp_path):
    """`+trainer.limit_train_batches=0.5` (8 of 17 batches an epoch) stopped in its second epoch:
    the datamodule's own mid-epoch resume counts the limited epoch as Lightning does, so the
    resumed run takes the same batches and ends on the same bits and step."""
    data = write_mnist(tmp_path / "data", n_train=600, n_test=100)
    common = [
        hydra_override("data.data_dir", str(data)), "callbacks=minimal", "model=mlp",
        "trainer.max_epochs=3", "data.batch_size=32", "+trainer.limit_train_batches=0.5",
    ]  # fmt: skip
    full = run_train(*common, run_dir=tmp_path / "full")
    assert full.returncode == 0, full.stderr[-2000:]
    signal_at = ["+callbacks.signal._target_=signal_at.SignalAt", "+callbacks.signal.step=11"]
    stopped = run_train(*common, *signal_at, run_dir=tmp_path / "stopped",
                        env={"PYTHONPATH": HELPERS})  # fmt: skip
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    ckpt = tmp_path / "stopped" / "checkpoints" / "interrupted.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 11
    resumed = run_train(*common, hydra_override("ckpt_path", str(ckpt)),
                        run_dir=tmp_path / "resumed")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole, again = _metrics(tmp_path / "full"), _metrics(tmp_path / "resumed")
    assert whole["global_step"] == again["global_step"] == 24  # 3 epochs of 8 batches
    assert again["weights_sha256"] == whole["weights_sha256"]


@pytest.mark.reliability("R8")
@pytest.mark.slow
@pytest.mark.parametrize(
    "change,said",
    [
        ("optimizer=sgd", "optimizer: AdamW in the checkpoint, SGD now (use optimizer=adamw)"),
        ("scheduler=cosine", "scheduler: OneCycleLR in the checkpoint, CosineAnnealingLR now"),
        ("trainer.max_epochs=3", "trainer.max_epochs: 2 in the checkpoint, 3 now (use trainer."),
    ],
)
def test_resuming_with_another_optimizer_or_schedule_is_refused_up_front(runs, change, said):
    """Their state does not fit another optimizer's: named before Lightning loads (it once ended
    in a raw KeyError from inside torch), the checkpoint and its run left as they were. Nor does
    the one-cycle schedule fit a longer run (OneCycleLR's ValueError one step past its length)."""
    ckpt = runs["stopped"] / "checkpoints" / "interrupted.ckpt"
    before = digests(runs["stopped"])
    proc = run_train(
        *runs["common"],
        change,
        hydra_override("ckpt_path", str(ckpt)),
        run_dir=runs["root"] / f"changed-{change}",
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert said in proc.stderr and "drop ckpt_path to start a new run" in proc.stderr
    assert digests(runs["stopped"]) == before


@pytest.mark.reliability("R1", "R3")
@pytest.mark.slow
def test_resume_with_loader_workers_is_bit_identical_too(runs):
    # workers fetch batches ahead (and draw indices before Lightning's set_epoch): the stopped
    # run, its resume and the unbroken run without workers must still agree bit for bit
    workers = [*runs["common"], "data.num_workers=2"]
    root = runs["root"]
    stopped = run_train(
        *workers,
        "+callbacks.signal._target_=signal_at.SignalAt",
        f"+callbacks.signal.step={SIGNAL_STEP}",
        run_dir=root / "w-stopped",
        env={"PYTHONPATH": HELPERS},
    )
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    ckpt = root / "w-stopped" / "checkpoints" / "interrupted.ckpt"
    resumed = run_train(
        *workers, hydra_override("ckpt_path", str(ckpt)), run_dir=root / "w-resumed"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full, again = _metrics(runs["full"]), _metrics(root / "w-resumed")
    for key in ("weights_sha256", "test/loss", "test/acc", "train/loss", "train/acc", "val/loss"):
        assert again[key] == full[key], key


@pytest.mark.reliability("R4")
@pytest.mark.slow
def test_a_kill_while_last_ckpt_is_written_keeps_the_previous_one(runs):
    run_dir = runs["root"] / "killed"
    proc = run_train(
        *runs["common"],
        "+callbacks.kill._target_=kill_mid_save.KillMidSave",
        run_dir=run_dir,
        env={"PYTHONPATH": HELPERS},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    folder = run_dir / "checkpoints"
    assert (folder / ".last.ckpt.partial").stat().st_size > 0  # the kill came mid-write
    assert (folder / "last.ckpt").read_bytes() == (folder / "last.before").read_bytes()
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 0
    after = runs["root"] / "after-kill"  # resuming at an epoch boundary is exact too
    resumed = run_train(
        *runs["common"], hydra_override("ckpt_path", str(folder / "last.ckpt")), run_dir=after
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full, again = _metrics(runs["full"]), _metrics(after)
    for key in ("weights_sha256", "test/loss", "train/loss", "train/acc", "val/loss"):
        assert again[key] == full[key], key


@pytest.mark.reliability("R5", "R7")
@pytest.mark.slow
def test_a_kill_at_any_step_leaves_the_last_epochs_checkpoint_to_resume(tiny_data_dir, tmp_path):
    # 540 training digits, batch 128: 5 steps an epoch; step 7 is inside the second epoch
    common = ["model=mlp", hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal"]
    proc = run_train(
        *common,
        "+callbacks.signal._target_=signal_at.SignalAt",
        "+callbacks.signal.step=7",
        "+callbacks.signal.signum=SIGKILL",
        run_dir=tmp_path / "killed",
        env={"PYTHONPATH": HELPERS},
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0
    before = digests(tmp_path / "killed")
    resumed = run_train(
        *common, hydra_override("ckpt_path", str(last)), run_dir=tmp_path / "resumed"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    m = _metrics(tmp_path / "resumed")
    assert m["status"] == "completed" and m["epochs"] == 3 and m["test/acc"] > 0.5
    assert digests(tmp_path / "killed") == before  # the killed run's files are untouched


@pytest.mark.reliability("R2")
@pytest.mark.slow
def test_sigterm_exits_143_with_a_checkpoint(tiny_data_dir, tmp_path):
    proc = run_train(
        "model=mlp",
        hydra_override("data.data_dir", str(tiny_data_dir)),
        "+callbacks.signal._target_=signal_at.SignalAt",
        "+callbacks.signal.step=2",
        "+callbacks.signal.signum=SIGTERM",
        run_dir=tmp_path / "run",
        env={"PYTHONPATH": HELPERS},
    )
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert (tmp_path / "run/checkpoints/interrupted.ckpt").is_file()
    assert _metrics(tmp_path / "run")["status"] == "interrupted"


@pytest.mark.reliability("R1", "R2")
@pytest.mark.slow
def test_a_signal_during_the_test_exits_130_and_names_the_eval_command(tiny_data_dir, tmp_path):
    # training has finished when the test starts: its checkpoints stay, the test is redone by eval
    run_dir = tmp_path / "run"
    proc = run_train(
        "model=mlp",
        hydra_override("data.data_dir", str(tiny_data_dir)),
        "+callbacks.signal._target_=signal_at.SignalAt",
        "+callbacks.signal.step=0",
        "+callbacks.signal.stage=test",
        run_dir=run_dir,
        env={"PYTHONPATH": HELPERS},
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    command = shlex.split(printed(proc.stderr, "test them with: "))
    assert command[-1] == hydra_override("ckpt_path", str(last))
    m = _metrics(run_dir)
    assert m["status"] == "interrupted" and "SIGINT received during the test" in m["error"]
    assert "test/acc" not in m
    before = last.read_bytes()
    # the same for eval.py, with SIGTERM: 143, its own run dir says interrupted
    eval_dir = tmp_path / "eval"
    proc = run_eval(
        hydra_override("ckpt_path", str(last)),
        hydra_override("data.data_dir", str(tiny_data_dir)),
        hydra_override("hydra.run.dir", str(eval_dir)),
        "+callbacks.signal._target_=signal_at.SignalAt",
        "+callbacks.signal.step=0",
        "+callbacks.signal.stage=test",
        "+callbacks.signal.signum=SIGTERM",
        env={"PYTHONPATH": HELPERS},
    )
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "SIGTERM received during the test" in proc.stderr
    assert _metrics(eval_dir)["status"] == "interrupted"
    assert last.read_bytes() == before


@pytest.mark.reliability("K4")
@pytest.mark.slow
def test_eval_reproduces_the_training_runs_test_metrics(runs):
    run_dir = runs["root"] / "eval"
    batch = _metrics(runs["full"])["config"]["data"]["eval_batch_size"]
    proc = run_eval(
        hydra_override("ckpt_path", str(runs["full"] / "checkpoints" / "last.ckpt")),
        hydra_override("data.data_dir", str(runs["data"])),
        hydra_override("hydra.run.dir", str(run_dir)),
        "callbacks.progress_bar.refresh_rate=0",
        f"data.eval_batch_size={batch}",  # the checkpoint's own values, repeated: accepted
        f"seed={_metrics(runs['full'])['seed']}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained, evaluated = _metrics(runs["full"]), _metrics(run_dir)
    for key in ("test/acc", "test/loss", "test/correct", "weights_sha256"):
        assert evaluated[key] == trained[key], key
    assert evaluated["status"] == "completed" and evaluated["task"] == "eval"
    # precision=auto in eval is the training run's: bf16 or fp32, the same numbers
    assert evaluated["precision"] == trained["precision"]
    assert evaluated["precision_reason"] == "auto: as the checkpoint was trained"
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"confusion_counts.png", "misclassified.png"} <= figures
    assert any(name.startswith("filters_conv1") for name in figures)
    assert list((run_dir / "tensorboard").glob("*/events.out.tfevents.*"))


@pytest.mark.reliability("VAL5")
@pytest.mark.slow
@pytest.mark.parametrize(
    "change,said",
    [
        ("data=fashion_mnist", "data.dataset=FashionMNIST (the checkpoint's: MNIST)"),
        ("data.eval_batch_size=7", "data.eval_batch_size=7 (the checkpoint's: "),
        ("seed=7", "seed=7 (the checkpoint's: "),  # silently unused before
        # a training setting: accepted and unused before (preflight.TRAINING_ONLY, each in-process)
        (
            "+trainer.limit_train_batches=0.5",
            "trainer.limit_train_batches=0.5: eval.py tests a checkpoint and trains nothing",
        ),
    ],
)
def test_eval_refuses_data_settings_that_the_checkpoints_replace(runs, change, said):
    """They were silently replaced: an MNIST checkpoint "evaluated on Fashion-MNIST" reported its
    MNIST accuracy."""
    run_dir = runs["root"] / f"eval-{change}"
    proc = run_eval(
        hydra_override("ckpt_path", str(runs["full"] / "checkpoints" / "last.ckpt")),
        hydra_override("data.data_dir", str(runs["data"])),
        hydra_override("hydra.run.dir", str(run_dir)),
        change,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"error: {said}" in proc.stderr
    assert ("come from the checkpoint" in proc.stderr) != change.startswith("+trainer")
    assert _metrics(run_dir)["status"] == "failed"


@pytest.mark.reliability("N1")
@pytest.mark.slow
def test_a_diverging_run_stops_with_exit_3_and_no_nan_checkpoint(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(
        hydra_override("data.data_dir", str(tiny_data_dir)),
        "optimizer=sgd",
        "optimizer.lr=1e6",
        run_dir=run_dir,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    # non-finite, or finite and above the bound: either way stopped before the optimizer step
    assert re.match(
        r"error: training diverged: train loss (nan|inf|\S+e\+\d+) at epoch 1, step ", line
    )
    assert "optimizer.lr=100000" in line and "Traceback" not in proc.stderr
    m = _metrics(run_dir)
    assert m["status"] == "diverged" and m["epoch"] == 1
    for ckpt in run_dir.rglob("*.ckpt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def _small_disk(limit: int):
    """Child setup: files may not grow past `limit` bytes; writes then fail with EFBIG."""

    def setup() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return setup


@pytest.mark.reliability("F1")
@pytest.mark.slow
def test_a_full_disk_at_checkpoint_time_is_exit_2_naming_the_file(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "model=mlp",
            "callbacks=minimal",
            "~logger",
            hydra_override("data.data_dir", str(tiny_data_dir)),
            hydra_override("hydra.run.dir", str(run_dir)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_small_disk(512 * 1024),  # the MLP's checkpoint is ~1.2 MB
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {run_dir / 'checkpoints'}/") and "cannot save" in line
    assert "Traceback" not in proc.stderr
    m = _metrics(run_dir)  # still whole JSON, and says why
    assert m["status"] == "failed" and "cannot save the checkpoint" in m["error"]
    assert not list((run_dir / "checkpoints").glob("*.ckpt"))


class Payload:
    """Unpickling this calls os.mkdir(sentinel): a visible side effect if code ever runs."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.mkdir, (self.sentinel,))


@pytest.fixture
def payload(tmp_path) -> tuple[Path, Path]:
    sentinel = tmp_path / "payload-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "x": Payload(sentinel)}, path)
    return path, sentinel


@pytest.mark.reliability("K2")
def test_a_pickle_payload_is_refused_in_process(payload):
    path, sentinel = payload
    with pytest.raises(UserError, match="refused"):
        checkpoints.load(path)
    assert not sentinel.exists()


@pytest.mark.reliability("K2")
@pytest.mark.slow
def test_a_pickle_payload_is_refused_by_eval_and_resume(payload, tiny_data_dir, tmp_path):
    path, sentinel = payload
    evaluated = run_eval(
        hydra_override("ckpt_path", str(path)),
        hydra_override("hydra.run.dir", str(tmp_path / "eval")),
    )
    resumed = run_train(
        hydra_override("ckpt_path", str(path)),
        hydra_override("data.data_dir", str(tiny_data_dir)),
        run_dir=tmp_path / "resume",
    )
    for proc in (evaluated, resumed):
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"{path}: refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not sentinel.exists()


def _bad_checkpoints(tmp_path: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "random": os.urandom(4096),
        "png": b"\x89PNG\r\n\x1a\n" + os.urandom(200),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.ckpt"
        paths[name].write_bytes(content)
    paths["directory"] = tmp_path / "dir.ckpt"
    paths["directory"].mkdir()
    return paths


@pytest.mark.reliability("K1")
def test_corrupt_checkpoints_are_named_and_refused(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save(
        {
            "state_dict": {"net.w": torch.zeros(3)},
            "epoch": 0,
            "global_step": 0,
            "hyper_parameters": {},
        },
        good,
    )
    assert checkpoints.load(good).data["epoch"] == 0
    for name, path in _bad_checkpoints(tmp_path, good).items():
        with pytest.raises(UserError) as info:
            checkpoints.load(path)
        message = str(info.value)
        assert str(path) in message, name
        assert "not a checkpoint" in message or "corrupted" in message, (name, message)


@pytest.mark.reliability("K3", "R6")
def test_wrong_structure_and_other_architecture_name_the_keys(tmp_path):
    from mnist_cnn.models.mlp import MLP
    from mnist_cnn.models.simple_cnn import SimpleCNN

    plain = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, plain)
    with pytest.raises(UserError, match=r"missing keys \['state_dict'"):
        checkpoints.load(plain)
    cnn = {f"net.{k}": v for k, v in SimpleCNN().state_dict().items()}
    with pytest.raises(UserError) as info:
        checkpoints.network_weights(MLP(), cnn, "cnn.ckpt")
    assert "unexpected keys ['conv1.bias'" in str(info.value)
    assert "cnn.ckpt" in str(info.value)


@pytest.mark.reliability("K4")
def test_every_torch_load_is_weights_only():
    """RELIABILITY: no torch.load without weights_only=True anywhere in the project's code."""
    offenders = []
    sources = [*(ROOT / "src").rglob("*.py"), *ROOT.glob("*.py"), *(ROOT / "bench").rglob("*.py")]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load":
                owner = getattr(node.func.value, "id", "")
                if owner != "torch":
                    continue
                kw = {k.arg: k.value for k in node.keywords}
                if not (
                    isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders
    assert sources  # the walk saw the project


@pytest.mark.reliability("R6")
def test_ckpt_path_last_is_an_error_not_a_fresh_start(tmp_path):

    with pytest.raises(UserError, match="ckpt_path='last'"):
        validate(OmegaConf.create({"ckpt_path": "last"}))


@pytest.mark.reliability("F2")
def test_a_full_disk_on_metrics_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    from mnist_cnn import runs

    metrics = tmp_path / "metrics.json"
    runs.write_json_atomic(metrics, {"status": "running"})
    before = metrics.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", full)
    with pytest.raises(UserError, match=f"{metrics}: cannot write \\(No space left on device\\)"):
        runs.write_json_atomic(metrics, {"status": "completed"})
    assert metrics.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(UserError, match=f"{not_a_dir / 'fig.png'}: cannot write"):
        runs.write_text_atomic(not_a_dir / "fig.png", "x")


def _count_torch_loads(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = torch.load

    def counting(f, *args, **kwargs):
        calls.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return calls


def test_a_resume_and_an_eval_each_read_their_checkpoint_once(tiny_data_dir, tmp_path, monkeypatch):
    """In process, as the entry points call them: the checkpoint read (and checked) before the
    run is the one Lightning resumes from, and the one eval tests; no second read."""

    from mnist_cnn.eval import evaluate
    from mnist_cnn.train import compose_config, run

    # without a schedule, a resume may train longer (resumable.py)
    common = [
        hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal", "~logger",
        "~scheduler",
    ]  # fmt: skip
    first = run(compose_config([*common, "trainer.max_epochs=1"], tmp_path / "first"))
    last = tmp_path / "first" / first["checkpoints"]["last"]

    calls = _count_torch_loads(monkeypatch)
    cfg = compose_config(
        [*common, "trainer.max_epochs=2", hydra_override("ckpt_path", str(last))], tmp_path / "two"
    )
    resumed = run(cfg, checkpoints.load(last))
    assert resumed["epochs"] == 2 and resumed["status"] == "completed"
    assert len(calls) == 1, calls

    calls.clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        eval_cfg = compose(
            "eval",
            overrides=[
                hydra_override("ckpt_path", str(last)),
                f"paths.output_dir={tmp_path / 'eval'}",
                hydra_override("data.data_dir", str(tiny_data_dir)),
                "callbacks=none",
                "~logger",
            ],
        )
    checkpoint = checkpoints.load(last)
    result = evaluate(eval_cfg, checkpoint)
    assert len(calls) == 1 and result["checkpoint_sha256"] == checkpoint.sha256
    assert result["checkpoint_sha256"] == hashlib.sha256(last.read_bytes()).hexdigest()


@pytest.mark.reliability("K1", "SIZE1")
def test_what_a_checkpoint_inflates_to_is_bounded_before_inflating(tmp_path, monkeypatch):
    import zipfile

    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * (8 * 1024**2))  # 8 MiB of zeros: ~8 KB
    assert bomb.stat().st_size < 64 * 1024
    monkeypatch.setattr(checkpoints, "MAX_INFLATED_BYTES", 4 * 1024**2)
    with pytest.raises(UserError, match=rf"^{bomb}: its entries inflate to 8,388,608 bytes"):
        checkpoints.load(bomb)


def test_run_records_are_created_with_the_umask(tmp_path):
    from mnist_cnn import runs

    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            path = tmp_path / f"metrics-{umask:o}.json"
            runs.write_json_atomic(path, {"status": "completed"})
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == mode


@pytest.mark.reliability("SIG1")
@pytest.mark.slow
def test_sighup_in_fit_saves_a_checkpoint_and_exits_129(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(
        "model=mlp", hydra_override("data.data_dir", str(tiny_data_dir)),
        "+callbacks.signal._target_=signal_at.SignalAt", "+callbacks.signal.step=2",
        "+callbacks.signal.signum=SIGHUP", run_dir=run_dir, env={"PYTHONPATH": HELPERS},
    )  # fmt: skip
    assert proc.returncode == 129, proc.stderr[-2000:]
    assert (
        "resume with: " in proc.stderr and (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    )
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"


@pytest.mark.reliability("SIG3")
@pytest.mark.slow
def test_under_nohup_a_hangup_in_fit_or_test_stops_nothing(tiny_data_dir, tmp_path):
    """`nohup python train.py &` and the session closes mid-fit, then mid-test: the run goes on
    to its end, as nohup asked (the run's handlers stopped it, exit 129)."""
    run_dir = tmp_path / "run"
    command = ["nohup", sys.executable, str(ROOT / "train.py"), "model=mlp",
               hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal",
               "+callbacks.signal._target_=signal_at.SignalAt", "+callbacks.signal.step=2",
               "+callbacks.signal.signum=SIGHUP", "+callbacks.hangup._target_=signal_at.SignalAt",
               "+callbacks.hangup.step=0", "+callbacks.hangup.signum=SIGHUP",
               "+callbacks.hangup.stage=test",
               hydra_override("hydra.run.dir", str(run_dir))]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": HELPERS})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "completed" and m["test/total"] > 0, m
    assert not (run_dir / "checkpoints" / "interrupted.ckpt").exists()


@pytest.mark.reliability("SIG1")
@pytest.mark.slow
@pytest.mark.parametrize("script,signum", [("train.py", "SIGTERM"), ("eval.py", "SIGINT")])
def test_a_signal_before_training_or_testing_is_recorded(tiny_data_dir, tmp_path, script, signum):
    run_dir = tmp_path / "run"
    extra = []
    if script == "eval.py":
        first = tmp_path / "first"
        trained = run_train(
            "model=mlp",
            "callbacks=minimal",
            hydra_override("data.data_dir", str(tiny_data_dir)),
            "trainer.max_epochs=1",
            run_dir=first,
        )
        assert trained.returncode == 0, trained.stderr[-2000:]
        extra = [hydra_override("ckpt_path", str(first / "checkpoints" / "last.ckpt"))]
    stage = "setup" if script == "train.py" else "test_setup"
    proc = run_script(
        script, *extra, "model=mlp" if script == "train.py" else "callbacks=none",
        hydra_override("data.data_dir", str(tiny_data_dir)),
        "+callbacks.signal._target_=signal_at.SignalAt", "+callbacks.signal.step=0",
        f"+callbacks.signal.signum={signum}", f"+callbacks.signal.stage={stage}",
        hydra_override("hydra.run.dir", str(run_dir)), env={"PYTHONPATH": HELPERS},
    )  # fmt: skip
    assert proc.returncode == 128 + getattr(signal, signum), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"


@pytest.mark.reliability("R10")
@pytest.mark.slow
def test_a_completed_runs_final_checkpoint_resumed_for_no_more_epochs_is_refused(runs, tmp_path):
    """It trained nothing in a tenth of a second and recorded the same run again, in a dir of
    its own; a run stopped between its fit and its test still resumes from that file."""
    full = runs["full"]
    before = {p: p.read_bytes() for p in full.rglob("*") if p.is_file()}
    last = full / "checkpoints" / "last.ckpt"
    proc = run_train(*runs["common"], hydra_override("ckpt_path", str(last)),
                     run_dir=tmp_path / "again")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: ckpt_path={last}: the final checkpoint of a completed run")
    assert "nothing left to train" in line and f"eval.py ckpt_path={last}" in line
    assert _metrics(tmp_path / "again")["status"] == "failed"
    assert {p: p.read_bytes() for p in full.rglob("*") if p.is_file()} == before
