"""The classes of hole of the second adversarial pass (docs/reliability.md, rows CMD1..DAT2).

Inputs are generated: hostile names from a seeded alphabet, sparse files of any claimed size,
checkpoints and metrics files of the wrong shape."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
from pathlib import Path

import pytest
import torch
from helpers.data import ROOT, write_mnist
from helpers.runs import run_eval, run_script, run_train
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mnist_cnn import checkpoints
from mnist_cnn.commands import eval_command, hydra_override, script_command
from mnist_cnn.config import validate
from mnist_cnn.errors import UserError

HELPERS = str(ROOT / "tests" / "helpers")
HOSTILE = list(" '\"\\$[]{}(),=:%#!*?~@^&|;<>`é") + ["${", "${x}", "\\'", "null", "1e3"]


def hostile_names(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    fixed = ["a b", "it's", "x=y,z", "[1]", "${oc.env:HOME}", "back\\", "\\'", "null", "1e3"]
    return fixed + [
        "".join(rng.choice(HOSTILE + ["a"]) for _ in range(rng.randint(1, 10))) for _ in range(n)
    ]


def compose_train(*overrides: str):
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.reliability("CMD1")
def test_printed_commands_give_hydra_back_the_exact_path():
    """Each command goes through the shell's parsing, then Hydra's override grammar, then
    OmegaConf's interpolation (what compose does with a value); a sample through compose itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    names = hostile_names(300)
    for i, name in enumerate(names):
        path = f"/tmp/{name}/checkpoints/last.ckpt"
        for command in (
            eval_command(Path(path)),
            script_command("train.py", hydra_override("ckpt_path", path)),
        ):
            token = shlex.split(command)[-1]  # what the shell hands to the script
            value = parser.parse_override(token).value()
            assert OmegaConf.create({"v": value}).v == path, (name, command)
            if i % 30 == 0:
                assert compose_train(token).ckpt_path == path, (name, command)


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


@pytest.mark.reliability("VAL1")
@pytest.mark.parametrize(
    "overrides,key",
    [
        (["model.conv1_channels=0"], "model.conv1_channels"),
        (["model.dense_units=-3"], "model.dense_units"),
        (["model=mlp", "model.hidden=[128,0]"], "model.hidden"),
        (["model=deep_cnn", "model.head_channels=0"], "model.head_channels"),
        (["model=deep_cnn", "model.dropout=1"], "model.dropout"),
        (["optimizer=sgd", "optimizer.momentum=-1"], "optimizer.momentum"),
        (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum"),
        (["+optimizer.betas=[0.9,1.2]"], "optimizer.betas"),
        (["optimizer.eps=0"], "optimizer.eps"),
        (["scheduler=onecycle", "scheduler.pct_start=1"], "scheduler.pct_start"),
        (["+trainer.limit_train_batches=0"], "trainer.limit_train_batches"),
        (["+trainer.limit_test_batches=0"], "trainer.limit_test_batches"),
        (["+trainer.limit_test_batches=1.5"], "trainer.limit_test_batches"),
        (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps"),
        (["trainer.accelerator=tpu9"], "trainer.accelerator"),
        (["callbacks.filters.top_k=0"], "callbacks.filters.top_k"),
        (
            ["callbacks.prediction_analysis.num_misclassified=-1"],
            "callbacks.prediction_analysis.num_misclassified",
        ),
    ],
)
def test_values_for_torch_and_lightning_are_checked_first(overrides, key):
    with pytest.raises(UserError, match=rf"(^|; ){key}=.* is invalid: expected "):
        validate(compose_train(*overrides))


@pytest.mark.parametrize("peak", ["0.01", "-1"])
def test_a_second_home_for_the_learning_rate_is_refused(peak):
    """One-cycle peaks at optimizer.lr; a scheduler.max_lr beside it would make one of the two
    a dead setting, so it is refused naming the key that counts."""
    with pytest.raises(UserError, match=r"scheduler.max_lr=.* is not a setting: .*optimizer.lr"):
        validate(compose_train("scheduler=onecycle", f"+scheduler.max_lr={peak}"))


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("VAL1")
def test_a_zero_channel_network_stops_before_anything_loads(tmp_path):
    proc = run_train("model.conv1_channels=0", run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "model.conv1_channels=0 is invalid" in proc.stderr


@pytest.mark.reliability("VAL2")
def test_a_gpu_that_is_not_there_is_named_before_lightning_loads(tmp_path, monkeypatch):
    from mnist_cnn.preflight import check_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for accelerator in ("gpu", "cuda"):
        with pytest.raises(UserError, match=rf"^trainer.accelerator={accelerator}: no CUDA GPU"):
            check_accelerator(OmegaConf.create({"trainer": {"accelerator": accelerator}}))
    check_accelerator(OmegaConf.create({"trainer": {"accelerator": "cpu"}}))
    if (
        not torch.cuda.is_available.__wrapped__()
        if hasattr(torch.cuda.is_available, "__wrapped__")
        else True
    ):
        pass


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("VAL2")
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_train_py_without_a_gpu_says_so_with_exit_2(tmp_path):
    proc = run_train("trainer.accelerator=gpu", run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "trainer.accelerator=gpu: no CUDA GPU is visible" in proc.stderr


def _checkpoint_with(tmp_path: Path, **hyper_parameters) -> Path:
    from mnist_cnn.models.simple_cnn import SimpleCNN

    config = {
        "seed": 1,
        "model": {"_target_": "mnist_cnn.models.simple_cnn.SimpleCNN"},
        "data": {"dataset": "MNIST", "eval_batch_size": 256},
        "trainer": {"precision": "32-true"},
    }
    for key, value in hyper_parameters.items():
        section, name = key.split("__")
        config[section][name] = value
    path = tmp_path / "bad.ckpt"
    state = {f"net.{k}": v for k, v in SimpleCNN().state_dict().items()}
    torch.save(
        {"state_dict": state, "hyper_parameters": config, "epoch": 0, "global_step": 1}, path
    )
    return path


@pytest.mark.reliability("VAL3")
@pytest.mark.parametrize(
    "setting,key",
    [
        ({"data__eval_batch_size": 0}, "data.eval_batch_size"),
        ({"model__conv1_channels": -1}, "model.conv1_channels"),
    ],
)
def test_a_checkpoints_bad_setting_is_named_as_the_checkpoints(tmp_path, setting, key):
    path = _checkpoint_with(tmp_path, **setting)
    with pytest.raises(UserError, match=rf"^{path} \(its hyper_parameters\): {key}="):
        checkpoints.load(path).config()
    with pytest.raises(UserError, match=rf"^{path} \(its hyper_parameters\)"):
        checkpoints.load(path).build_net(in_channels=1, image_size=28)


@pytest.mark.reliability("VAL3")
@pytest.mark.slow
def test_eval_and_predict_name_the_checkpoint_a_bad_value_came_from(tmp_path, tiny_data_dir):
    path = _checkpoint_with(tmp_path, data__eval_batch_size=0)
    evaluated = run_eval(
        hydra_override("ckpt_path", str(path)), hydra_override("data.data_dir", str(tiny_data_dir)),
        hydra_override("hydra.run.dir", str(tmp_path / "eval")),
    )  # fmt: skip
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    predicted = run_script("predict.py", str(tmp_path / "digit.png"), "--ckpt", str(path))
    for proc in (evaluated, predicted):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"{path} (its hyper_parameters): data.eval_batch_size=0 is invalid" in proc.stderr


@pytest.mark.reliability("JSON1")
def test_compare_excludes_metrics_files_of_another_shape(tmp_path):
    from mnist_cnn.compare import compare

    good = tmp_path / "good"
    good.mkdir()
    (good / "metrics.json").write_text(
        json.dumps(
            {"status": "completed", "test/acc": 0.9, "test/loss": 0.3, "val/acc": 0.9, "seed": 1,
             "config": {"seed": 1, "a": {"b": 1}}}
        )
    )  # fmt: skip
    hostile = [
        "[]",
        "null",
        "7",
        '{"status": "completed", "config": []}',
        "[" * 100_000 + "]" * 100_000,
    ]
    for i, text in enumerate(hostile):
        (tmp_path / f"bad{i}").mkdir()
        (tmp_path / f"bad{i}" / "metrics.json").write_text(text)
    result = compare([str(tmp_path)])
    assert [g["runs"] for g in result["groups"]] == [[str(good)]]
    assert len(result["excluded"]) == len(hostile)


@pytest.mark.reliability("SIZE1")
def test_checkpoint_inflation_is_bounded_by_default(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # declared sizes are what is checked: a stored entry's header claims past the bound
        info = zipfile.ZipInfo("archive/data.pkl")
        archive.writestr(info, b"\0" * 1024)
    raw = bytearray(bomb.read_bytes())
    # rewrite the central directory's uncompressed size of the entry to 2 GiB
    at = raw.rfind(b"PK\x01\x02")
    raw[at + 24 : at + 28] = (2 * 1024**3).to_bytes(4, "little")
    bomb.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="its entries inflate to 2,147,483,648 bytes"):
        checkpoints.load(bomb)


@pytest.mark.reliability("SIZE2")
@pytest.mark.parametrize("claim", ["matching", "larger than the file"])
def test_a_huge_idx_file_is_refused_before_its_body_is_read(tmp_path, claim):
    import resource

    from mnist_cnn.data.idx import read_images

    count = 4_000_000  # 4M images of 28x28: 3.1 GB claimed
    path = tmp_path / "train-images-idx3-ubyte"
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (count, 28, 28))
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(16 + count * 784 if claim == "matching" else 10**6)  # sparse: no disk used
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError) as info:
        read_images(path)
    assert str(path) in str(info.value)
    assert ("more than an MNIST-style file holds" if claim == "matching" else "truncated") in str(
        info.value
    )
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kib < 100 * 1024  # the body (3 GB) was never read


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


@pytest.mark.reliability("CMP1")
def test_compare_arguments_are_checked_and_paths_taken_literally(tmp_path):
    from mnist_cnn.cli.compare import main

    runs = tmp_path / "runs[1]"  # a glob would read this as runs1
    decoy = tmp_path / "runs1"
    for root, acc in ((runs, 0.9), (decoy, 0.1)):
        (root / "a").mkdir(parents=True)
        (root / "a" / "metrics.json").write_text(
            json.dumps(
                {
                    "status": "completed",
                    "test/acc": acc,
                    "test/loss": 0.3,
                    "val/acc": 0.9,
                    "seed": 1,
                    "config": {"seed": 1},
                }
            )
        )
    out = tmp_path / "out"
    main([str(runs), "--out", str(out)])
    written = json.loads((out / "comparison.json").read_text())
    assert written["groups"][0]["runs"] == [str(runs / "a")]
    for args, needle in (
        ([str(runs), "--baseline", "5"], "--baseline 5: there are 1 groups"),
        ([str(runs), "--out", str(out / "comparison.json")], "not a directory"),
    ):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2, needle


@pytest.mark.slow  # a train.py or eval.py subprocess (it stops before the heavy imports)
@pytest.mark.reliability("OUT1")
@pytest.mark.parametrize("where", ["long name", "under /proc"])
def test_a_run_dir_that_cannot_be_created_is_refused_before_any_work(tmp_path, where):
    run_dir = tmp_path / ("x" * 300) if where == "long name" else Path("/proc/mnist-run")
    proc = run_train(run_dir=run_dir, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "hydra.run.dir=" in proc.stderr and "choose another hydra.run.dir" in proc.stderr


@pytest.mark.reliability("OUT2")
def test_save_inputs_problems_are_named_and_predictions_still_printed(tmp_path, capsys):
    from PIL import Image, ImageDraw

    from mnist_cnn.cli.predict import main
    from mnist_cnn.models.simple_cnn import SimpleCNN

    ckpt = tmp_path / "good.ckpt"
    state = {f"net.{k}": v for k, v in SimpleCNN().state_dict().items()}
    config = {
        "model": {"_target_": "mnist_cnn.models.simple_cnn.SimpleCNN"},
        "data": {"dataset": "MNIST"},
    }
    torch.save(
        {"state_dict": state, "hyper_parameters": config, "epoch": 0, "global_step": 1}, ckpt
    )
    long_name = tmp_path / ("d" * 250 + ".png")
    digit = Image.new("L", (60, 60), 0)
    ImageDraw.Draw(digit).line([(20, 10), (40, 10), (30, 50)], fill=255, width=5)
    digit.save(long_name)
    seen = tmp_path / "seen"
    main([str(long_name), "--ckpt", str(ckpt), "--save-inputs", str(seen), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 1 and len(list(seen.iterdir())) == 1
    assert all(len(p.name.encode()) <= 255 for p in seen.iterdir())
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as info:
        main([str(long_name), "--ckpt", str(ckpt), "--save-inputs", str(a_file)])
    assert (
        info.value.code == 2
        and f"--save-inputs {a_file}: not a directory" in capsys.readouterr().err
    )
    assert a_file.read_text() == "x"


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


@pytest.mark.reliability("TRN1")
def test_a_finite_blow_up_is_a_divergence():
    from types import SimpleNamespace

    from mnist_cnn.callbacks.divergence import DivergenceGuard
    from mnist_cnn.errors import TrainingDiverged
    from mnist_cnn.models.mlp import MLP
    from mnist_cnn.module import ClassifierModule

    module = ClassifierModule(MLP(), optimizer=torch.optim.SGD)
    with torch.no_grad():
        module.net.output.bias.copy_(torch.tensor([1e6] + [0.0] * 9))  # finite, absurd logits
    x, y = torch.rand(8, 1, 28, 28), torch.full((8,), 3)
    loss = module.training_step((x, y), 0)
    trainer = SimpleNamespace(
        global_step=0, current_epoch=0, log_every_n_steps=50, num_training_batches=10
    )
    with pytest.raises(TrainingDiverged, match="training diverged: train loss 1e\\+06 at epoch 1"):
        DivergenceGuard().on_before_backward(trainer, module, loss)


@pytest.mark.reliability("TRN2")
def test_an_early_stop_is_said(tiny_data_dir, tmp_path):
    from mnist_cnn.train import compose_config, run

    cfg = compose_config(
        [
            hydra_override("data.data_dir", str(tiny_data_dir)), "callbacks=minimal", "~logger",
            "+callbacks.early._target_=lightning.pytorch.callbacks.EarlyStopping",
            "+callbacks.early.monitor=val/acc", "+callbacks.early.mode=max",
            "+callbacks.early.stopping_threshold=0.0",
        ],
        tmp_path / "run",
    )  # fmt: skip
    metrics = run(cfg)
    assert metrics["status"] == "completed"
    assert "by a callback" in metrics["stopped_early"] and metrics["epochs"] < 3


@pytest.mark.reliability("DAT1")
@pytest.mark.parametrize("system", ["/dev", "/proc/self", "/sys", "/run"])
def test_a_dataset_is_never_created_in_a_system_directory(system):
    from mnist_cnn.data.mnist import MNISTDataModule

    datamodule = MNISTDataModule(data_dir=system, download=True)
    with pytest.raises(UserError, match=r"^data.data_dir=\S+: /\w+ is a system directory"):
        datamodule.prepare_data()
    assert not Path(system, "MNIST").exists()


@pytest.mark.reliability("DAT2")
@pytest.mark.parametrize("download", [False, True])
def test_gzipped_files_are_named_and_the_advice_fits_the_setting(tmp_path, download):
    import gzip

    from mnist_cnn.data.mnist import MNISTDataModule

    data = write_mnist(tmp_path / "data")
    raw = data / "MNIST" / "raw"
    for path in list(raw.iterdir()):
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(path.read_bytes())
        path.unlink()
    with pytest.raises(UserError) as info:
        MNISTDataModule(data_dir=data, download=download).prepare_data()
    message = str(info.value)
    assert (
        "Found compressed copies of train-images-idx3-ubyte" in message and "gunzip -k" in message
    )
    assert ("set data.download=true" in message) == (not download)
