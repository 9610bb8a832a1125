"""The speed settings: which precision auto picks, and that the faster paths keep the math."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from helpers.runs import quiet_trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_cnn import precision as auto_precision
from mnist_cnn import process
from mnist_cnn.callbacks.feature_maps import FeatureMapLogger
from mnist_cnn.callbacks.filters import FilterLogger
from mnist_cnn.callbacks.prediction_analysis import PredictionAnalysis
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.models.bn_cnn import BatchNormCNN
from mnist_cnn.models.deep_cnn import DeepCNN
from mnist_cnn.models.mlp import MLP
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.models.speed_cnn import SpeedCNN
from mnist_cnn.module import ClassifierModule


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("native,expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, no_gpu, native, expected):
    monkeypatch.setattr(auto_precision, "cpu_has_native_bf16", lambda: native)
    precision, why = auto_precision.resolve_precision("auto")
    assert precision == expected and why.startswith("auto: ")
    assert auto_precision.resolve_precision("auto", "cpu")[0] == expected


def test_an_explicit_precision_is_kept_whatever_the_hardware(monkeypatch, no_gpu):
    monkeypatch.setattr(auto_precision, "cpu_has_native_bf16", lambda: True)
    assert auto_precision.resolve_precision("32-true") == ("32-true", "asked for")
    assert auto_precision.resolve_precision(32)[0] == "32"


def test_auto_on_a_gpu_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(auto_precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for has_bf16, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda v=has_bf16: v)
        assert auto_precision.resolve_precision("auto")[0] == expected
    # accelerator=cpu asked for explicitly: the GPU is not used, the CPU decides
    assert auto_precision.resolve_precision("auto", "cpu")[0] == "32-true"
    assert auto_precision.resolve_precision("auto", "mps")[0] == "32-true"


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs /proc/cpuinfo")
def test_native_bf16_detection_agrees_with_the_cpu_flags():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert auto_precision.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)


def _textbook(m: SimpleCNN, x: torch.Tensor) -> torch.Tensor:
    """The Keras lab's order on the whole image: ReLU before each pool, no square left out."""
    x = m.pool1(F.relu(m.conv1(x)))
    x = m.pool2(F.relu(m.conv2(x)))
    return m.output(F.relu(m.dense1(m.flatten(x))))


def test_the_network_gives_the_textbook_outputs_bit_for_bit_and_its_gradients():
    torch.manual_seed(0)
    net = SimpleCNN()
    x = torch.randn(16, 1, 28, 28)
    x[..., 26:, :] = torch.randn(16, 1, 2, 28) * 1e3  # what the crop leaves out, made loud
    x[..., :, 26:] = torch.randn(16, 1, 28, 2) * 1e3

    seen = []
    net.conv1.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[-2:])))
    results = []
    for forward in (net, functools.partial(_textbook, net)):
        net.zero_grad()
        out = forward(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    (ours, our_grads), (textbook, textbook_grads) = results
    assert seen == [(24, 24), (26, 26)]  # ours convolves only the 26x26 square the pools read
    assert torch.equal(ours, textbook)
    for a, b in zip(our_grads, textbook_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # a sum's order, nothing more

    net.read_side = 28  # the crop undone: pooling before ReLU alone is exact, gradients included
    net.zero_grad()
    out = net(x)
    out.square().sum().backward()
    assert torch.equal(out.detach(), textbook)
    pairs = zip(net.parameters(), textbook_grads, strict=True)
    assert all(torch.equal(p.grad, b) for p, b in pairs)


@pytest.mark.parametrize("image_size", [26, 27, 28, 29, 32])
def test_read_side_is_exactly_the_square_the_textbook_network_reads(image_size):
    torch.manual_seed(image_size)
    net = SimpleCNN(image_size=image_size, init="torch")
    x = torch.randn(4, 1, image_size, image_size, requires_grad=True)
    _textbook(net, x).square().sum().backward()
    side = net.read_side
    assert side <= image_size
    assert not x.grad[..., side:, :].any() and not x.grad[..., :, side:].any()
    assert x.grad[..., side - 1, :].any() and x.grad[..., :, side - 1].any()
    assert net(x).shape == (4, 10)


def _train_deterministically(make_net, bf16: bool, fill: bool) -> list[torch.Tensor]:
    """Three training steps and an eval forward under torch's deterministic algorithms, new
    tensors NaN-filled or not: every weight, buffer and logit, as bits."""
    torch.utils.deterministic.fill_uninitialized_memory = fill
    torch.manual_seed(0)
    net = make_net().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(32, 1, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), generator=g)
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net(x)
    return [t.detach().clone() for t in net.state_dict().values()] + [logits]


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("make_net", [SimpleCNN, BatchNormCNN, DeepCNN, SpeedCNN, MLP])
def test_no_network_reads_memory_before_writing_it(make_net, bf16):
    """process.configure skips torch's NaN fill of new tensors under trainer.deterministic: sound
    only while no operation reads memory it has not written (such a read gives NaN when filled,
    whatever was there when not). Every network trains to the same bits both ways."""
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)  # fmt: skip
    torch.use_deterministic_algorithms(True)
    try:
        filled = _train_deterministically(make_net, bf16, fill=True)
        unfilled = _train_deterministically(make_net, bf16, fill=False)
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.utils.deterministic.fill_uninitialized_memory = before[1]
    assert all(torch.isfinite(t).all() for t in filled if t.is_floating_point())
    assert all(torch.equal(a, b) for a, b in zip(filled, unfilled, strict=True))


def test_configure_skips_the_fill_of_new_tensors(monkeypatch):
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    monkeypatch.setattr(process, "stop_on_signals", lambda: None)  # the test process keeps its own
    monkeypatch.setattr(process, "keep_freed_memory", lambda: True)
    threads = torch.get_num_threads()
    try:
        process.configure(threads)
    finally:
        torch.set_num_threads(threads)
    assert torch.utils.deterministic.fill_uninitialized_memory is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_takes_effect_with_glibc():
    assert process.keep_freed_memory() is True


def test_bf16_mixed_training_learns_and_the_dashboards_draw(tiny_data_dir, tmp_path):
    # any callback that turns bf16 logits or activations into numpy would fail here
    L.seed_everything(0)
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64, eval_batch_size=64)
    module = ClassifierModule(SimpleCNN(), functools.partial(torch.optim.Adam, lr=3e-3))
    analysis = PredictionAnalysis(num_misclassified=4)
    logger = TensorBoardLogger(tmp_path, name="tb", version="", default_hp_metric=False)
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=2,
        precision="bf16-mixed",
        logger=logger,
        callbacks=[FilterLogger(), FeatureMapLogger(), analysis],
    )
    trainer.fit(module, datamodule=dm)
    result = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert result["test/acc"] > 0.9  # the generated digits are easy
    assert analysis.run_summary["test/misclassified"] == 200 - round(result["test/correct"])
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert {"filters/conv1", "features/conv1", "confusion/counts"} <= set(events.Tags()["images"])
    assert all(p.dtype == torch.float32 for p in module.parameters())  # mixed: fp32 weights


def test_eval_takes_the_precision_the_checkpoint_was_trained_in():
    from omegaconf import OmegaConf

    from mnist_cnn.config import validate
    from mnist_cnn.errors import UserError
    from mnist_cnn.eval import _precision

    def asked(value):
        return OmegaConf.create({"trainer": {"precision": value, "accelerator": "cpu"}})

    bf16_run = {"trainer": {"precision": "bf16-mixed"}}
    assert _precision(asked("auto"), bf16_run) == (
        "bf16-mixed",
        "auto: as the checkpoint was trained",
    )
    assert _precision(asked("auto"), {})[0] == "32-true"  # trained before precision=auto
    assert _precision(asked("32-true"), bf16_run) == ("32-true", "asked for")
    with pytest.raises(UserError, match=r"^trainer.precision='half' is invalid: expected one of"):
        validate(asked("half"))  # eval.py's one validation path, before _precision


def _run_python(code: str) -> subprocess.CompletedProcess:
    src = Path(__file__).resolve().parents[1] / "src"
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


QUICK_EXIT = "import atexit\nfrom mnist_cnn import process\nprocess.install_quick_exit()\n"


def test_finish_keeps_the_exit_code_output_and_atexit_handlers(tmp_path):
    marker = tmp_path / "atexit-ran"
    proc = _run_python(
        QUICK_EXIT + f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
        "print('buffered output', end='')\n"
        "process.finish(3)\n"
    )
    assert proc.returncode == 3 and proc.stdout == "buffered output"
    assert marker.read_text() == "yes"


def test_finish_waits_for_a_running_thread_like_a_normal_exit(tmp_path):
    done = tmp_path / "thread-finished"
    proc = _run_python(
        QUICK_EXIT + "import threading, time\n"
        "def work():\n"
        "    time.sleep(0.5)\n"
        f"    open({str(done)!r}, 'w').write('yes')\n"
        "threading.Thread(target=work).start()\n"
        "process.finish(0)\n"
    )
    assert proc.returncode == 0 and done.read_text() == "yes"


@pytest.mark.parametrize("signals", [1, 2])
def test_a_signal_while_a_completed_run_exits_interrupts_nothing(tmp_path, signals):
    """A launcher's or scheduler's SIGTERM in the teardown of a completed run (every file
    written) was Stopped raised inside an atexit handler: a traceback, then exit 0 anyway. The
    exit now goes on to its code; a second signal means the exit is stuck and ends it."""
    done = tmp_path / "handler-finished"
    proc = _run_python(
        QUICK_EXIT + "import os, signal, time\n"
        "process.configure(threads=1)  # the stop handlers a run has\n"
        "def late():\n"
        f"    for _ in range({signals}):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(0.2)\n"
        f"    open({str(done)!r}, 'w').write('yes')\n"
        "atexit.register(late)\n"
        "process.finish(0)\n"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if signals == 1:
        assert proc.returncode == 0 and done.read_text() == "yes"
    else:
        assert proc.returncode == -signal.SIGTERM and not done.exists()


@pytest.mark.parametrize("ending", ["process.finish(0)", "import sys; sys.exit(0)"])
def test_finish_skips_only_the_module_teardown(ending):
    """A module-level object is finalised by the interpreter's teardown: finish() skips that (the
    point), a plain exit does not (the control)."""
    proc = _run_python(
        QUICK_EXIT + "import os\n"
        "class Held:\n"
        "    def __del__(self, write=os.write): write(1, b'finalised')\n"
        f"held = Held()\n{ending}\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout == "finalised") == ("sys.exit" in ending), proc.stderr


GC_PROBE = """
import gc, json
from mnist_cnn import process
process.starting_up()
waiting = not gc.isenabled()
from mnist_cnn.train import run  # torch, Lightning, matplotlib: the entry points' imports
process.started()
frozen = gc.get_freeze_count()
class Node: pass
def garbage():  # a reference cycle, which only the collector frees
    a, b = Node(), Node()
    a.other, b.other = b, a
garbage()
freed = [gc.collect()]
process.started()  # a sweep's next job
garbage()
freed.append(gc.collect())
print(json.dumps([waiting, gc.isenabled(), frozen, gc.get_freeze_count(), freed]))
"""


@pytest.mark.parametrize("ending", ["", "process.install_quick_exit()\nprocess.finish(0)\n"])
def test_the_collector_waits_through_the_imports_then_sees_only_what_the_run_makes(ending):
    """Between starting_up() and started() no collection walks the growing heap; after, what
    the imports made is frozen once (a sweep's later jobs keep their garbage collectable), and
    the process ends quietly either way (frozen objects left at exit made nanobind, in triton,
    report leaks)."""
    import json

    proc = _run_python(GC_PROBE + ending)
    assert proc.returncode == 0, proc.stderr
    waiting, enabled, frozen, frozen_after, freed = json.loads(proc.stdout)
    assert waiting and enabled
    assert frozen > 100_000 and frozen_after == frozen  # the imports' objects, frozen once
    assert all(n >= 2 for n in freed)  # the run's own cycles are still collected
    assert "leak" not in proc.stderr, proc.stderr


def test_thread_count_follows_the_cpus_this_process_may_use():
    import os

    allowed = len(os.sched_getaffinity(0))
    assert 1 <= process.available_cpus() <= allowed
    assert process.thread_count("auto") == process.available_cpus()
    assert process.thread_count("auto", parallel_jobs=64) == 1
    assert process.thread_count(3) == 3
    proc = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", "from mnist_cnn import process\n"
         "print(process.thread_count('auto'))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr


PROCESS_WIDE = {
    # (object, attribute) calls that change the whole process: allowed in process.py only
    ("torch", "set_num_threads"),
    ("warnings", "filterwarnings"),
    ("matplotlib", "use"),
    ("os", "_exit"),
    ("atexit", "register"),
    ("atexit", "_run_exitfuncs"),
    ("logging", "basicConfig"),
}


def test_process_wide_settings_live_in_one_module():
    """The library changes nothing process-wide (a notebook can call run() safely): every such
    call is in mnist_cnn/process.py, and no private torch or CPython API is used anywhere."""
    import ast

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*(root / "src").rglob("*.py"), *root.glob("*.py")]:
        if path.name == "process.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                call = (node.value.id, node.attr)
                private = node.attr.startswith("_") and not node.attr.startswith("__")
                if call in PROCESS_WIDE or (private and node.value.id in ("torch", "atexit")):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno} {'.'.join(call)}")
            if isinstance(node, ast.Name) and node.id == "mallopt":
                offenders.append(f"{path.relative_to(root)}:{node.lineno} mallopt")
            # what a module's name means: process.starting_up()'s helper alone changes it
            if (
                isinstance(node, ast.Subscript)
                and not isinstance(node.ctx, ast.Load)
                and ast.unparse(node.value) == "sys.modules"
                and path.name != "deferred_imports.py"
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} sys.modules")
    assert not offenders


@pytest.mark.parametrize(("completed", "code", "said"), [
    (True, 0, "SIGTERM received after the run completed: nothing was stopped"),
    (False, 143, "interrupted: SIGTERM received"),
])  # fmt: skip
def test_a_stop_after_train_py_completed_its_run_exits_0_saying_so(capsys, completed, code, said):
    """train.py's last moments (Hydra's job end, after the record says completed)."""
    from mnist_cnn.cli import stopped_by_signal
    from mnist_cnn.errors import Stopped

    with pytest.raises(SystemExit) as info, stopped_by_signal(completed=lambda: completed):
        raise Stopped(signal.SIGTERM)
    assert info.value.code == code and said in capsys.readouterr().err


@pytest.mark.parametrize("status", ["running", "completed"])
def test_a_stop_never_turns_a_completed_record_into_an_interrupted_one(tmp_path, status):
    """The signal between rank 0 writing `completed` and leaving the run once overwrote the
    record with `interrupted` (no checkpoint to resume, every result already there)."""
    from mnist_cnn.errors import Stopped
    from mnist_cnn.outcome import completed_record, recorded
    from mnist_cnn.runs import RunRecord

    record = RunRecord(tmp_path, seed=1)
    with pytest.raises(Stopped), recorded(record):
        record.update(status=status)
        raise Stopped(signal.SIGTERM)
    kept = json.loads((tmp_path / "metrics.json").read_text())
    assert kept["status"] == ("completed" if status == "completed" else "interrupted")
    assert (completed_record(tmp_path) is not None) is (status == "completed")


@pytest.mark.reliability("SIG2")
@pytest.mark.parametrize("left", ["nothing", "a checkpoint", "an evaluation"])
def test_a_stop_outside_a_step_records_what_is_left_to_do(tmp_path, left):
    """A signal between the record's start and fit's handlers (or between fit and test) was
    recorded as `Stopped SIGTERM`: the record now says what to do, resume or start again."""
    from mnist_cnn.errors import NOTHING_TO_RESUME, Stopped
    from mnist_cnn.outcome import recorded
    from mnist_cnn.runs import RunRecord

    last = tmp_path / "checkpoints" / "last.ckpt"
    if left == "a checkpoint":
        last.parent.mkdir()
        last.write_bytes(b"saved by fit")
    with (
        pytest.raises(Stopped),
        recorded(RunRecord(tmp_path), None, last, None, left == "an evaluation"),
    ):
        raise Stopped(signal.SIGTERM)
    kept = json.loads((tmp_path / "metrics.json").read_text())
    assert kept["status"] == "interrupted" and kept["error"].startswith("SIGTERM received")
    if left == "a checkpoint":
        assert (
            kept["resume_checkpoint"] == str(last) and f"ckpt_path={last}" in kept["resume_command"]
        )
    else:
        assert kept["error"].endswith(NOTHING_TO_RESUME) and "resume_command" not in kept


@pytest.fixture
def a_single_run_in(tmp_path):
    """Hydra's state as train.py's single run sees it, its run dir tmp_path; reset after."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hydra = {"runtime": {"output_dir": str(tmp_path)}, "mode": RunMode.RUN}
    HydraConfig.instance().cfg = OmegaConf.create({"hydra": hydra})  # what get() reads
    yield tmp_path
    HydraConfig.instance().cfg = None


@pytest.mark.reliability("SIG2")
@pytest.mark.parametrize("record", ["none yet", "resumable"])
def test_a_stop_before_the_record_began_leaves_one_a_rerun_is_told_of(a_single_run_in, capsys,
                                                                     record):  # fmt: skip
    """A signal after the imports and before the run's record (the precision, the plan, the
    manifest): exit 143 with nothing in the run dir but Hydra's, which a rerun there called
    `already holds a run`. The dir now says the start was stopped, the line what is left, and
    a rerun names it; a record the run had begun is left as it was."""
    from mnist_cnn.cli import record_stop, stopped_by_signal
    from mnist_cnn.errors import NOTHING_TO_RESUME, Stopped, UserError
    from mnist_cnn.run_dirs import check_unused
    from mnist_cnn.runs import RunRecord

    run_dir = a_single_run_in
    (run_dir / ".hydra").mkdir()
    if record == "resumable":
        RunRecord(run_dir, status="interrupted", resume_command="python train.py ckpt_path=X")
    before = (run_dir / "metrics.json").read_bytes() if record == "resumable" else None
    with pytest.raises(SystemExit) as info, stopped_by_signal():
        try:  # as the Hydra task does (train.py's and eval.py's; the subprocess tests: planning)
            raise Stopped(signal.SIGTERM)
        except Stopped as exc:
            record_stop(exc)
            raise
    said = capsys.readouterr().err
    assert info.value.code == 143
    if record == "resumable":
        assert "resume with: python train.py ckpt_path=X" in said
        assert (run_dir / "metrics.json").read_bytes() == before
        return
    kept = json.loads((run_dir / "metrics.json").read_text())
    assert kept == {
        "status": "interrupted",
        "error": f"SIGTERM received before the run began; {NOTHING_TO_RESUME}",
    }
    assert said.strip().endswith(NOTHING_TO_RESUME)
    with pytest.raises(
        UserError, match=f"holds a start that was stopped before it began .*rm -r {run_dir}"
    ):
        check_unused(run_dir, "hydra.run.dir")
