"""The dashboard callbacks in a real Trainer run, read back from the TensorBoard event files."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from helpers.runs import quiet_trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from mnist_cnn.callbacks.curves import LearningCurves
from mnist_cnn.callbacks.data_overview import DataOverview
from mnist_cnn.callbacks.feature_maps import FeatureMapLogger
from mnist_cnn.callbacks.filters import FilterLogger, sobel_similarity
from mnist_cnn.callbacks.hparams import HParamsLogger
from mnist_cnn.callbacks.prediction_analysis import PredictionAnalysis
from mnist_cnn.callbacks.projector import EmbeddingProjector
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.models.mlp import MLP
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.module import ClassifierModule
from mnist_cnn.tensorboard import RunLogger

# its module-scoped fixture is built once: the whole file runs on one xdist worker
pytestmark = pytest.mark.xdist_group("dashboards")

EPOCHS = 2


@pytest.fixture(scope="module")
def dashboard_run(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    L.seed_everything(0)
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64, eval_batch_size=64)
    module = ClassifierModule(
        SimpleCNN(),
        functools.partial(torch.optim.Adam, lr=1e-3),
        config={"seed": 0, "optimizer": {"_target_": "torch.optim.Adam", "lr": 1e-3}},
    )
    analysis = PredictionAnalysis(num_misclassified=4)
    callbacks = [
        DataOverview(),
        LearningCurves(),
        FilterLogger(),
        FeatureMapLogger(),
        analysis,
        EmbeddingProjector(count=150),
        HParamsLogger(),
    ]
    logger = RunLogger(root, seed=0, overrides=["optimizer.lr=0.001", "paths.log_dir=/x"])
    trainer = quiet_trainer(root, max_epochs=EPOCHS, logger=logger, callbacks=callbacks)
    trainer.fit(module, datamodule=dm)
    result = trainer.test(module, datamodule=dm, verbose=False)[0]
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    return SimpleNamespace(
        root=root,
        module=module,
        events=events,
        result=result,
        summary=analysis.run_summary,
        log_dir=Path(logger.log_dir),
    )


def test_every_image_tag_with_its_step_count(dashboard_run):
    images = dashboard_run.events.Tags()["images"]
    expected = {
        "data/samples": 1,
        "data/class_distribution": 1,
        "curves/summary": 1,
        "filters/conv1": EPOCHS + 1,  # the initial kernels, then one per epoch
        "filters/conv2_norms": 1,
        "features/conv1": 1,
        "features/conv2": 1,
        "confusion/counts": 1,
        "confusion/errors": 1,
        "mistakes/first": 1,
        "mistakes/most_confident": 1,
        "mistakes/attributions": 1,
    }
    for tag, count in expected.items():
        assert len(dashboard_run.events.Images(tag)) == count, tag
    # one step axis: the filters at the global step after each epoch, as every other image
    steps = [e.step for e in dashboard_run.events.Images("filters/conv1")]
    assert steps[0] == 0 and steps == sorted(set(steps)) and steps[1] == steps[2] // 2
    assert steps[-1] == dashboard_run.events.Images("confusion/counts")[0].step
    assert set(images) == set(expected)


def test_images_decode(dashboard_run):
    for tag in dashboard_run.events.Tags()["images"]:
        event = dashboard_run.events.Images(tag)[-1]
        image = Image.open(io.BytesIO(event.encoded_image_string))
        assert image.size == (event.width, event.height) and min(image.size) > 100, tag


def test_scalars_finite_and_text_tables_present(dashboard_run):
    events = dashboard_run.events
    for tag in events.Tags()["scalars"]:
        assert all(np.isfinite(e.value) for e in events.Scalars(tag)), tag
    tensors = set(events.Tags()["tensors"])  # text and PR curves are tensor summaries
    assert {
        "test/top_confusions/text_summary",
        "test/per_class/text_summary",
        "filters/conv1_vs_sobel/text_summary",
        "data/class_counts/text_summary",
    } <= tensors
    assert {f"test/pr_curve/{k}" for k in range(10)} <= tensors


def test_confusion_matrix_agrees_with_test_accuracy(dashboard_run):
    cm = np.array(dashboard_run.summary["test/confusion_matrix"])
    correct = round(dashboard_run.result["test/correct"])
    assert cm.sum() == 200 and np.trace(cm) == correct
    assert dashboard_run.summary["test/misclassified"] == 200 - correct
    assert np.trace(cm) / 200 == pytest.approx(dashboard_run.result["test/acc"])


def test_figure_files_exist_and_decode(dashboard_run):
    names = {p.name for p in (dashboard_run.root / "figures").glob("*.png")}
    assert {
        "samples.png",
        "class_distribution.png",
        "curves.png",
        "filters_conv1.png",
        "filters_conv2.png",
        "features_conv1.png",
        "features_conv2.png",
        "confusion_counts.png",
        "confusion_errors.png",
        "misclassified.png",
        "most_confident_mistakes.png",
        "attributions.png",
    } == names
    for name in names:
        Image.open(dashboard_run.root / "figures" / name).verify()


def test_hparams_logged_with_final_metrics(dashboard_run):
    hparams = (dashboard_run.log_dir / "hparams.yaml").read_text()
    assert "seed: 0" in hparams
    content = dashboard_run.events.PluginTagToContent("hparams")
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    # the HParams metric columns are tags the run logs anyway: no one-point hp/ duplicates
    assert metric_tags == {"acc/val", "test/acc", "time/fit_seconds"}
    assert metric_tags <= set(dashboard_run.events.Tags()["scalars"])
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    columns = start.session_start_info.hparams
    assert columns["seed"].string_value == "0" and columns["lr"].number_value == 0.001
    assert not [k for k in columns if k.startswith("paths")]


def test_scalars_open_on_the_curves(dashboard_run):
    """TensorBoard expands the first two tag groups by name: they must be the epoch curves."""
    scalars = set(dashboard_run.events.Tags()["scalars"])
    assert {"acc/train", "acc/val", "loss/train", "loss/val", "test/acc", "test/loss"} <= scalars
    groups = sorted({t.split("/")[0] for t in scalars})
    assert groups[:2] == ["acc", "loss"], groups
    # Lightning's epoch counter and the one-point count charts are not logged
    assert not scalars & {"epoch", "test/correct", "test/total", "train/acc", "val/acc"}
    assert not [t for t in scalars if t.startswith("hp/")]
    images = sorted({t.split("/")[0] for t in dashboard_run.events.Tags()["images"]})
    assert images[:2] == ["confusion", "curves"], images
    # the run's name in TensorBoard: its own overrides, no paths
    assert dashboard_run.log_dir.name == "optimizer.lr=0.001,seed=0"
    assert dashboard_run.log_dir.parent.name == "tensorboard"


class _Writer:
    def __getattr__(self, name):
        return lambda *a, **k: None


def test_prediction_analysis_on_known_predictions(tmp_path):
    """Crafted logits: the mistakes, the matrix and the top confusion are known exactly."""
    analysis = PredictionAnalysis(num_misclassified=3, top_confusions=2, num_attributions=0)
    trainer = SimpleNamespace(
        loggers=[],
        default_root_dir=str(tmp_path),
        is_global_zero=True,
        global_step=0,
        datamodule=SimpleNamespace(class_names=list("abc")),
    )
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 2, 1, 1, 2])  # wrong at 2 (c->b), 3 (a->c), 5 (c->b)
    logits = torch.nn.functional.one_hot(preds, 3).float() * 5
    images = torch.arange(7).float().view(7, 1, 1, 1).expand(7, 1, 4, 4)
    analysis.on_test_epoch_start(trainer, None)
    for part in (slice(0, 4), slice(4, 7)):  # two batches
        batch = (images[part], targets[part])
        analysis.on_test_batch_end(trainer, None, {"logits": logits[part]}, batch, 0)
    analysis.on_test_epoch_end(trainer, None)
    s = analysis.run_summary
    assert s["test/misclassified_indices"] == [2, 3, 5]
    assert s["test/confusion_matrix"] == [[1, 0, 1], [0, 2, 0], [0, 2, 1]]
    assert s["test/top_confusions"] == [
        {"count": 2, "true": "c", "pred": "b"},
        {"count": 1, "true": "a", "pred": "c"},
    ]
    recall = {r["class"]: r["recall"] for r in s["test/per_class"]}
    assert recall == pytest.approx({"a": 0.5, "b": 1.0, "c": 1 / 3})
    assert (Path(tmp_path) / "figures" / "misclassified.png").is_file()


def test_sobel_similarity_recognises_sobel_kernels():
    sx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
    sims = sobel_similarity(np.stack([sx * 0.1, -sx.T, np.ones((3, 3))]))
    np.testing.assert_allclose(sims["sobel_x"], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(sims["sobel_y"], [0.0, -1.0, 0.0], atol=1e-12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _get_text(url: str, params: dict[str, str]) -> str:
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}", timeout=5) as response:
        return response.read().decode()


@pytest.mark.slow
def test_real_tensorboard_server_serves_every_dashboard(dashboard_run):
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnist_cnn.cli.tensorboard",  # what a run's "View it" line starts
            "--logdir",
            str(dashboard_run.root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/data/plugin"
    try:
        deadline, scalars = time.monotonic() + 90, {}
        run = f"tensorboard/{dashboard_run.log_dir.name}"
        while time.monotonic() < deadline and "acc/val" not in scalars.get(run, {}):
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            with contextlib.suppress(OSError):  # not listening yet
                scalars = _get(f"{base}/scalars/tags")
            time.sleep(0.5)
        assert {"acc/train", "acc/val", "test/acc"} <= set(scalars[run])
        images = _get(f"{base}/images/tags")[run]
        assert {"filters/conv1", "confusion/counts", "mistakes/first", "mistakes/attributions",
                "confusion/errors"} <= set(images)  # fmt: skip
        assert "test/top_confusions/text_summary" in _get(f"{base}/text/tags")[run]
        # the projector: the run's test digits, with their sprite and three label columns
        assert run in _get(f"{base}/projector/runs")
        info = json.loads(_get_text(f"{base}/projector/info", {"run": run}))
        [embedding] = info["embeddings"]
        assert embedding["tensorShape"] == [150, 128] and embedding["sprite"]["singleImageDim"]
        name = embedding["tensorName"]
        metadata = _get_text(f"{base}/projector/metadata", {"run": run, "name": name})
        header, *rows = metadata.strip().split("\n")
        assert header.split("\t") == ["class", "predicted", "answer"] and len(rows) == 150
        answers = [r.split("\t") for r in rows]
        assert all((a == b) == (c == "right") for a, b, c in answers)
        experiment = _get(f"{base}/hparams/experiment", {"experimentName": ""})
        assert "seed" in {h["name"] for h in experiment["hparamInfos"]}
        assert "test/acc" in {m["name"]["tag"] for m in experiment["metricInfos"]}
        # the page is TensorBoard's with the launcher's first view loaded before the app
        page = _get_text(f"http://127.0.0.1:{port}/", {})
        assert '<script src="mnist_cnn_first_view.js">' in page
        assert "ignoreOutliers" in _get_text(f"http://127.0.0.1:{port}/mnist_cnn_first_view.js", {})
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "TensorFlow installation not found" not in server.stderr.read().decode()


def _last_image(log_dir, tag: str) -> np.ndarray:
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    encoded = events.Images(tag)[-1].encoded_image_string
    return np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))


def test_the_fit_ends_kernel_file_is_the_last_epochs_figure(dashboard_run):
    """The file of the fit's end shows the kernels the last epoch drew: the same pixels."""
    saved = np.asarray(Image.open(dashboard_run.root / "figures" / "filters_conv1.png"))
    assert np.array_equal(saved, _last_image(dashboard_run.log_dir, "filters/conv1"))


class _NudgeConv1AtFitEnd(L.Callback):
    """Kernels that change after the last epoch, as weight averaging swaps in its average."""

    def on_fit_end(self, trainer, pl_module) -> None:
        with torch.no_grad():
            pl_module.net.conv1.weight.mul_(-1)


def test_kernels_changed_after_the_last_epoch_are_drawn_again(tiny_data_dir, tmp_path):
    L.seed_everything(0)
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)
    module = ClassifierModule(SimpleCNN(), functools.partial(torch.optim.Adam, lr=1e-3))
    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    callbacks = [_NudgeConv1AtFitEnd(), FilterLogger()]  # the nudge's hook runs first
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=logger,
        callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    saved = np.asarray(Image.open(tmp_path / "figures" / "filters_conv1.png"))
    last = _last_image(tmp_path / "tb", "filters/conv1")
    assert saved.shape == last.shape and not np.array_equal(saved, last)


def test_dashboards_degrade_cleanly_for_a_dense_network(tiny_data_dir, tmp_path, caplog):
    L.seed_everything(0)
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)
    module = ClassifierModule(MLP(), functools.partial(torch.optim.Adam, lr=1e-3))
    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    callbacks = [FilterLogger(), FeatureMapLogger(), PredictionAnalysis(), LearningCurves()]
    trainer = quiet_trainer(tmp_path, max_epochs=1, logger=logger, callbacks=callbacks)
    with caplog.at_level(logging.INFO):
        trainer.fit(module, datamodule=dm)
        trainer.test(module, datamodule=dm, verbose=False)
    assert "FilterLogger skipped: the network has no convolution layers" in caplog.text
    assert caplog.text.count("FeatureMapLogger skipped") == 1
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    images = set(events.Tags()["images"])
    assert "confusion/counts" in images and not any(t.startswith("filters/") for t in images)


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_a_terminal_gets_a_bar_and_a_file_gets_lines(tiny_data_dir, tmp_path, caplog):
    import logging

    from lightning.pytorch.callbacks import TQDMProgressBar

    from mnist_cnn.callbacks.progress import EpochLines, progress_bar

    assert isinstance(progress_bar(20, _Stream(True)), TQDMProgressBar)
    assert isinstance(progress_bar(20, _Stream(False)), EpochLines)
    # what a process that started a notebook's kernel has imported (jupyter_client does, to find
    # the python3 kernel): still not a kernel itself
    import ipykernel.kernelspec  # noqa: F401

    assert isinstance(progress_bar(20, _Stream(False)), EpochLines)
    assert not progress_bar(0, _Stream(True)).is_enabled
    lines = EpochLines(long_epoch=4, steps_per_epoch=2)  # 17 batches: long, 2 lines on the way
    datamodule = MNISTDataModule(data_dir=tiny_data_dir, batch_size=32)
    module = ClassifierModule(SimpleCNN(), optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[lines], enable_progress_bar=True)
    with caplog.at_level(logging.INFO, logger="progress"):
        trainer.fit(module, datamodule=datamodule)
    messages = [r.getMessage() for r in caplog.records if r.name == "progress"]
    epochs = [m for m in messages if "val/acc" in m]
    assert [m.split(":")[0] for m in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert sum("batch 8/17" in m for m in messages) == 2


def test_hparams_columns_are_the_recipe_only():
    import os

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mnist_cnn.callbacks.hparams import hparams

    root = Path(__file__).resolve().parents[1]
    os.environ.setdefault("PROJECT_ROOT", str(root))
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        default = compose("train", overrides=["paths.output_dir=/tmp/x"])
        lab = compose("train", overrides=["paths.output_dir=/tmp/x", "experiment=keras_lab"])
    columns = hparams(OmegaConf.to_container(default, resolve=True))
    assert list(columns)[:8] == [
        "model", "optimizer", "lr", "batch_size", "epochs", "schedule", "precision", "seed",
    ]  # fmt: skip
    assert columns["model"] == "SimpleCNN" and columns["optimizer"] == "Adam"
    assert columns["world_size"] == 1 and len(columns) == 9
    assert None not in columns.values() and "None" not in columns.values()
    assert hparams(OmegaConf.to_container(lab, resolve=True))["schedule"] == "constant"
    # what a sweep varies becomes a column too, by its config key; paths and switches never do
    overrides = ["model.dense_units=64", "seed=3", "callbacks=minimal", "threads=1",
                 "paths.log_dir=/tmp/x", "+data.augment.degrees=10", "debug=limit"]  # fmt: skip
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        swept_cfg = compose("train", overrides=[*overrides, "paths.output_dir=/tmp/x"])
    swept = hparams(OmegaConf.to_container(swept_cfg, resolve=True), overrides)
    assert swept["model.dense_units"] == 64 and swept["seed"] == 3
    assert swept["data.augment.degrees"] == 10 and swept["debug"] == "limit"
    assert not {"paths.log_dir", "callbacks", "threads"} & set(swept)


def _pixels(path: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    """RGB pixels of a screenshot inside box = (left, top, right, bottom)."""
    return np.asarray(Image.open(path).convert("RGB").crop(box)).reshape(-1, 3).astype(int)


@pytest.mark.slow
def test_tensorboard_pages_in_a_real_browser(dashboard_run, tmp_path):
    """The pages as a person opens them (headless Chromium, 1600x1200, the project's launcher):
    Time Series, HParams, Scalars, Images and the Projector."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from tensorboard_screenshots import SIZE, take

    pages = ("timeseries", "hparams", "scalars", "images", "projector")
    shots = dict(zip(pages, take(dashboard_run.log_dir.parent, tmp_path, pages), strict=True))
    main = (360, 130, SIZE[0], SIZE[1])  # right of the side panel, below the tab bar
    for page, shot in shots.items():
        assert Image.open(shot).size == SIZE
        pixels = _pixels(shot, main)
        assert len(np.unique(pixels, axis=0)) > 50, f"{page} page looks blank"
    r, g, b = _pixels(shots["scalars"], (360, 130, SIZE[0], 480)).T
    # the opened acc/ group draws the run's orange curves (SVG: forceSVG, no WebGL here)
    assert ((r > 200) & (g > 70) & (g < 150) & (b < 110)).sum() > 200, "no curve in acc/"
    r, g, b = _pixels(shots["images"], (360, 130, SIZE[0], 620)).T
    # the opened confusion/ group shows the matrix: its diagonal in dark blue
    assert ((b > 100) & (r < 60) & (g < 110)).sum() > 300, "no confusion matrix on Images"
    r, g, b = _pixels(shots["hparams"], (330, 180, SIZE[0], 230)).T
    assert ((r < 100) & (g < 100) & (b < 100)).sum() > 100, "no row in the HParams table"
    # the Projector's scatter: the digits drawn from the sprite, white strokes on black (the
    # tiny data's 150 digits sit in a few clusters; test_real_mnist checks a spread of 1,000)
    r, g, b = _pixels(shots["projector"], (320, 150, 1290, SIZE[1])).T
    dark = ((r < 40) & (g < 40) & (b < 40)).sum()
    assert dark > 3000, f"the Projector drew {dark} dark pixels: no digit sprites"


class _PruneAfterFirstValidation(L.Callback):
    def on_validation_end(self, trainer, pl_module) -> None:
        from mnist_cnn.errors import Pruned

        if not trainer.sanity_checking:
            raise Pruned(trainer.current_epoch + 1, float(trainer.callback_metrics["val/acc"]))


def test_a_sweep_opens_hparams_on_what_it_varies_and_a_pruned_trial_is_a_row(
    tiny_data_dir, tmp_path
):
    """TensorBoard orders HParams columns `differs` first, then by name, and ticks the first
    few: a job's own sweep parameters are marked differing (seed, lr), constants are not, and a
    trial stopped by its pruner still writes its row (val/acc, no test columns)."""
    from mnist_cnn.callbacks.hparams import chosen
    from mnist_cnn.errors import Pruned

    overrides = ["seed=2", "optimizer.lr=0.003", "hparams_search=optuna_lr", "callbacks=minimal"]
    assert chosen(overrides) == {"seed", "lr"}
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)
    module = ClassifierModule(
        SimpleCNN(),
        functools.partial(torch.optim.Adam, lr=3e-3),
        config={"seed": 2, "optimizer": {"lr": 0.003}, "data": {"batch_size": 64}},
    )
    logger = RunLogger(tmp_path, seed=2, overrides=overrides)
    callbacks = [HParamsLogger(), _PruneAfterFirstValidation()]
    trainer = quiet_trainer(tmp_path, max_epochs=3, logger=logger, callbacks=callbacks)
    with pytest.raises(Pruned):
        trainer.fit(module, datamodule=dm)
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    content = events.PluginTagToContent("hparams")
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    differs = {h.name for h in experiment.hparam_infos if h.differs}
    assert differs == {"seed", "lr"}
    assert "hparams_search" not in {h.name for h in experiment.hparam_infos}
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["seed"].string_value == "2"
    assert "test/acc" not in events.Tags()["scalars"] and "acc/val" in events.Tags()["scalars"]


@pytest.mark.reliability("RC1")
@pytest.mark.parametrize("name", ["run $HOME x", "run ${PATH}", "~ run", "run ~user $"])
def test_a_runs_events_stay_in_its_dir_whatever_its_name(tmp_path, name):
    """Lightning's logger expands $VAR and ~ anywhere in its log dir; ours takes it literally."""
    run_dir = tmp_path / name
    logger = RunLogger(run_dir, seed=1, overrides=["optimizer.lr=$HOME"])
    logger.log_metrics({"val/acc": 0.5}, step=0)
    logger.experiment.flush()
    events = list(run_dir.glob("tensorboard/*/events.out.tfevents.*"))
    assert len(events) == 1 and events[0].parent.name == "optimizer.lr=$HOME,seed=1"
    assert logger.log_dir == str(run_dir / "tensorboard" / "optimizer.lr=$HOME,seed=1")


def test_the_launchers_page_loads_its_first_view_before_tensorboard(tmp_path):
    """TensorBoard's own zip, one script added and loaded first; a page it does not know is
    refused by name rather than served without the first view."""
    import io
    import zipfile

    from tensorboard import assets

    from mnist_cnn import dashboard_assets

    with assets.get_default_assets_zip_provider()() as fp, zipfile.ZipFile(fp) as original:
        names = set(original.namelist())
        served = zipfile.ZipFile(io.BytesIO(dashboard_assets.with_first_view(original)))
    assert set(served.namelist()) == names | {dashboard_assets.SCRIPT_NAME}
    index = served.read("index.html").decode()
    ours = index.index(f'<script src="{dashboard_assets.SCRIPT_NAME}">')
    assert ours < index.index("<script", ours + 1)  # before every script of TensorBoard's
    script = served.read(dashboard_assets.SCRIPT_NAME).decode()
    assert "ignoreOutliers = false" in script and '"_ignoreYOutliers", "false"' in script

    bare = io.BytesIO()
    with zipfile.ZipFile(bare, "w") as z:
        z.writestr("index.html", "<html><body>another page</body></html>")
    with pytest.raises(RuntimeError, match="has no <head>"):
        dashboard_assets.with_first_view(zipfile.ZipFile(bare))


@pytest.mark.reliability("RF3")
def test_a_callback_that_changes_the_run_names_it_and_a_dashboard_does_not():
    """A sweep over weight averaging showed two runs labelled `seed=1`, and HParams no column
    telling them apart: every callbacks override was taken for a dashboard's."""
    from mnist_cnn.callbacks.hparams import chosen
    from mnist_cnn.tensorboard import recipe_overrides, run_label

    assert run_label(["callbacks=[default,ema]", "seed=1"], 1) == "callbacks=[default,ema],seed=1"
    assert run_label(["callbacks=[default]", "seed=1"], 1) == "seed=1"
    assert chosen(["callbacks=[minimal,ema]", "seed=3"]) == {"callbacks", "seed"}
    assert chosen(["callbacks=minimal", "seed=3"]) == {"seed"}
    early = "lightning.pytorch.callbacks.EarlyStopping"
    given = ["callbacks.ema.decay=0.9", "~callbacks.filters", f"+callbacks.es._target_={early}",
             "+callbacks.es.patience=3", "+callbacks.mine._target_=my.Observer",
             "+callbacks.mine.every=2"]  # fmt: skip
    assert recipe_overrides(given) == [
        "callbacks.ema.decay=0.9",
        f"callbacks.es._target_={early}",
        "callbacks.es.patience=3",
    ]


@pytest.mark.reliability("RC1")
def test_a_long_label_keeps_its_first_overrides_and_its_seed(tmp_path):
    """Over MAX_LABEL characters the tail was cut, and with it the seed a label always names
    (a search trial's many rates): runs of a sweep read alike but for their job's dir. A label
    of 120 characters of three bytes each was past a file name's 255 bytes: train.py ended in
    OSError "File name too long" (`+tag='...'` in Chinese)."""
    import random

    from mnist_cnn.tensorboard import (
        MAX_LABEL,
        MAX_LABEL_BYTES,
        RunLogger,
        recipe_overrides,
        run_label,
    )

    rng = random.Random(7)
    alphabets = ["0123456789.e-", "abcxyz_", "数字训练", "ñé", "🙂"]
    for case in range(60):
        count = rng.randint(1, 12)
        letters = rng.choice(alphabets)
        items = [
            f"+p{i}='{''.join(rng.choice(letters) for _ in range(rng.randint(1, 40)))}'"
            for i in range(count)
        ]
        seed = rng.randint(0, 10**9)
        label = run_label(items, seed)
        whole = ",".join([*recipe_overrides(items), f"seed={seed}"])
        assert len(label) <= MAX_LABEL and len(label.encode()) <= MAX_LABEL_BYTES, label
        if len(whole) <= MAX_LABEL and len(whole.encode()) <= MAX_LABEL_BYTES:
            assert label == whole
        else:
            # the first half and the last half kept, the seed at the end
            head = (len(label) - 3) // 2
            tail = len(label) - 3 - head
            assert label == whole[:head] + "..." + whole[len(whole) - tail :]
            assert label.endswith(f"seed={seed}") and tail - head in (0, 1)
        # the label is the events' folder: a name the filesystem takes
        logger = RunLogger(tmp_path / str(case), seed=seed, overrides=items)
        logger.log_metrics({"train/loss": 1.0}, step=0)
        logger.finalize("success")
        assert list(Path(logger.log_dir).glob("events.out.tfevents.*")), label
