"""The speed settings: which precision auto picks, and that the faster paths keep the math."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import quiet_trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_cnn import perf
from mnist_cnn.callbacks.feature_maps import FeatureMapLogger
from mnist_cnn.callbacks.filters import FilterLogger
from mnist_cnn.callbacks.test_analysis import TestAnalysis
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.module import ClassifierModule


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("native,expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, no_gpu, native, expected):
    monkeypatch.setattr(perf, "cpu_has_native_bf16", lambda: native)
    precision, why = perf.resolve_precision("auto")
    assert precision == expected and why.startswith("auto: ")
    assert perf.resolve_precision("auto", "cpu")[0] == expected


def test_an_explicit_precision_is_kept_whatever_the_hardware(monkeypatch, no_gpu):
    monkeypatch.setattr(perf, "cpu_has_native_bf16", lambda: True)
    assert perf.resolve_precision("32-true") == ("32-true", "asked for")
    assert perf.resolve_precision(32)[0] == "32"


def test_auto_on_a_gpu_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(perf, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for has_bf16, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda v=has_bf16: v)
        assert perf.resolve_precision("auto")[0] == expected
    # accelerator=cpu asked for explicitly: the GPU is not used, the CPU decides
    assert perf.resolve_precision("auto", "cpu")[0] == "32-true"
    assert perf.resolve_precision("auto", "mps")[0] == "32-true"


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs /proc/cpuinfo")
def test_native_bf16_detection_agrees_with_the_cpu_flags():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert perf.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)


def test_pooling_before_relu_gives_the_textbook_outputs_and_gradients_bit_for_bit():
    torch.manual_seed(0)
    net = SimpleCNN()
    x = torch.randn(16, 1, 28, 28)

    def textbook(m: SimpleCNN, x: torch.Tensor) -> torch.Tensor:
        x = m.pool1(F.relu(m.conv1(x)))
        x = m.pool2(F.relu(m.conv2(x)))
        return m.output(F.relu(m.dense1(m.flatten(x))))

    grads = []
    for forward in (net, functools.partial(textbook, net)):
        net.zero_grad()
        out = forward(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1], strict=True))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_takes_effect_with_glibc():
    assert perf.keep_freed_memory() is True


def test_bf16_mixed_training_learns_and_the_dashboards_draw(tiny_data_dir, tmp_path):
    # any callback that turns bf16 logits or activations into numpy would fail here
    L.seed_everything(0)
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64, eval_batch_size=64)
    module = ClassifierModule(SimpleCNN(), functools.partial(torch.optim.Adam, lr=3e-3))
    analysis = TestAnalysis(num_misclassified=4)
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
    assert {"filters/conv1", "features/conv1", "test/confusion_counts"} <= set(
        events.Tags()["images"]
    )
    assert all(p.dtype == torch.float32 for p in module.parameters())  # mixed: fp32 weights


def test_eval_takes_the_precision_the_checkpoint_was_trained_in():
    from omegaconf import OmegaConf

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
        _precision(asked("half"), bf16_run)


def _run_python(code: str) -> subprocess.CompletedProcess:
    src = Path(__file__).resolve().parents[1] / "src"
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exit_now_keeps_the_exit_code_output_and_atexit_handlers(tmp_path):
    marker = tmp_path / "atexit-ran"
    proc = _run_python(
        "import atexit\n"
        "from mnist_cnn.cli import exit_now\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
        "print('buffered output', end='')\n"
        "exit_now(3)\n"
    )
    assert proc.returncode == 3 and proc.stdout == "buffered output"
    assert marker.read_text() == "yes"


def test_exit_now_waits_for_a_running_thread_like_a_normal_exit(tmp_path):
    done = tmp_path / "thread-finished"
    proc = _run_python(
        "import threading, time\n"
        "from mnist_cnn.cli import exit_now\n"
        "def work():\n"
        "    time.sleep(0.5)\n"
        f"    open({str(done)!r}, 'w').write('yes')\n"
        "threading.Thread(target=work).start()\n"
        "exit_now(0)\n"
    )
    assert proc.returncode == 0 and done.read_text() == "yes"
