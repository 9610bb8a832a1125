"""The frontier recipes: SpeedCNN and experiment=speedrun, experiment=frontier, label smoothing,
and eval.py's ensembles with test-time augmentation (checked against an independent computation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers.data import write_mnist
from helpers.runs import run_eval, run_train

from mnist_cnn import checkpoints
from mnist_cnn.commands import hydra_override
from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.models.deep_cnn import DeepCNN
from mnist_cnn.models.ensemble import TTA_SHIFTS, Ensemble, shift
from mnist_cnn.models.speed_cnn import SpeedCNN
from mnist_cnn.module import ClassifierModule


def test_speed_cnn_shapes_and_its_optional_hidden_layer():
    net = SpeedCNN()
    # conv 16x1x5x5, BN 2x16, conv 32x16x3x3, BN 2x32, linear 800x10+10
    assert sum(p.numel() for p in net.parameters()) == 400 + 32 + 4608 + 64 + 8010
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    hidden = SpeedCNN(hidden_units=64, num_classes=5)
    assert hidden(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    assert hidden.hidden[0].out_features == 64 and hidden.output.in_features == 64
    with pytest.raises(ValueError, match="image_size=9 is too small"):
        SpeedCNN(image_size=9)


def test_deep_cnn_is_the_anchors_layout_and_learns():
    net = DeepCNN()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 3, 1), (32, 3, 1), (32, 5, 2), (64, 3, 1), (64, 3, 1), (64, 5, 2), (128, 4, 1),
    ]  # fmt: skip
    assert all(c.bias is None for c in convs)  # batch norm follows each
    # 7 convolutions, 7 batch norms (2 values a channel), the 128x10 read-out
    conv_weights = 9 * 32 + 9 * 32 * 32 + 25 * 32 * 32 + 9 * 32 * 64 + 9 * 64 * 64 + 25 * 64 * 64
    norms = 2 * (3 * 32 + 3 * 64 + 128)
    assert sum(p.numel() for p in net.parameters()) == conv_weights + 16 * 64 * 128 + norms + 1290
    # the last convolution spans whatever map is left, for any size the stages allow
    for size in (13, 20, 28, 32):
        assert DeepCNN(image_size=size, num_classes=5)(torch.rand(2, 1, size, size)).shape == (2, 5)
    with pytest.raises(ValueError, match="image_size=12 is too small"):
        DeepCNN(image_size=12)
    torch.manual_seed(0)  # it fits one batch (batch statistics, no dropout: no noise but the data)
    net, x, y = DeepCNN(dropout=0.0), torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = F.cross_entropy(net(x), y).item()
    for _ in range(15):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    assert F.cross_entropy(net(x), y).item() < before / 2


def test_label_smoothing_changes_the_training_loss_only():
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    plain, smooth = (
        ClassifierModule(SpeedCNN(), optimizer=None, label_smoothing=s).eval() for s in (0.0, 0.3)
    )
    smooth.net.load_state_dict(plain.net.state_dict())
    logits = plain(x)
    expected = {
        "plain": F.cross_entropy(logits, y),
        "smooth": F.cross_entropy(logits, y, label_smoothing=0.3),
    }
    assert not torch.allclose(expected["plain"], expected["smooth"])  # the case can tell
    assert torch.allclose(plain._step((x, y), "train")[0], expected["plain"])
    assert torch.allclose(smooth._step((x, y), "train")[0], expected["smooth"])
    assert torch.allclose(smooth._step((x, y), "val")[0], expected["plain"])


def test_shift_moves_every_pixel_and_fills_the_border_with_zeros():
    x = torch.arange(1, 26, dtype=torch.float32).reshape(1, 1, 5, 5)
    for dy, dx in TTA_SHIFTS:
        moved = shift(x, dy, dx)
        assert moved.shape == x.shape
        for i in range(5):
            for j in range(5):
                si, sj = i - dy, j - dx
                inside = 0 <= si < 5 and 0 <= sj < 5
                assert moved[0, 0, i, j] == (x[0, 0, si, sj] if inside else 0), (dy, dx, i, j)


def test_an_ensemble_outputs_the_log_of_its_members_mean_probabilities():
    torch.manual_seed(1)
    members = [SpeedCNN().eval(), SpeedCNN(hidden_units=8).eval()]
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        probs = [F.softmax(m(x), dim=1) for m in members]
        one = Ensemble(members[:1])(x)
        both = Ensemble(members)(x)
        tta = Ensemble(members[:1], tta=True)(x)
        shifted = [F.softmax(members[0](shift(x, dy, dx)), dim=1) for dy, dx in TTA_SHIFTS]
    assert torch.allclose(one, F.log_softmax(members[0](x), dim=1), atol=1e-6)
    assert torch.allclose(both.exp(), (probs[0] + probs[1]) / 2, atol=1e-6)
    assert torch.allclose(tta.exp(), torch.stack(shifted).mean(0), atol=1e-6)
    # cross-entropy of the output is the ensemble's negative log-likelihood
    y = torch.tensor([0, 1, 2, 3])
    nll = -torch.log((probs[0] + probs[1])[torch.arange(4), y] / 2).mean()
    assert torch.allclose(F.cross_entropy(both, y), nll, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _expected_accuracy(ckpts: list[Path], data_dir: Path, tta: bool) -> tuple[int, int]:
    """Correct and total by hand: each network's softmax averaged, no Lightning, no Ensemble."""
    nets = [checkpoints.load(p).build_net(in_channels=1, image_size=28).eval() for p in ckpts]
    datamodule = MNISTDataModule(data_dir=str(data_dir), download=False, eval_batch_size=1000)
    datamodule.prepare_data()
    datamodule.setup("test")
    shifts = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)] if tta else [(0, 0)]
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            x, y = datamodule.on_after_batch_transfer(batch, 0)
            p = sum(
                F.softmax(net(torch.roll(F.pad(x, (1,) * 4), (dy, dx), (2, 3))[..., 1:-1, 1:-1]), 1)
                for net in nets
                for dy, dx in shifts
            )
            correct += int((p.argmax(1) == y).sum())
            total += len(y)
    return correct, total


@pytest.mark.slow
def test_speedrun_checkpoints_ensemble_through_eval_py(tmp_path):
    data = write_mnist(tmp_path / "data", n_train=1200, n_test=300)
    common = [hydra_override("data.data_dir", str(data))]
    ckpts = []
    runs = (
        ("s1", "SpeedCNN", ["experiment=speedrun", "seed=1"]),
        ("s2", "SpeedCNN", ["experiment=speedrun", "seed=2"]),
        ("norm", "SpeedCNN", ["experiment=speedrun", "data.normalize=true"]),
        # a member of another architecture and recipe: the frontier's diverse ensembles
        ("deep", "DeepCNN", ["experiment=frontier", "model=deep_cnn", "seed=3",
                             "trainer.max_epochs=1", "callbacks=minimal", "~logger"]),
    )  # fmt: skip
    for name, model, extra in runs:
        proc = run_train(*common, *extra, run_dir=tmp_path / name)
        assert proc.returncode == 0, proc.stderr[-3000:]
        m = _metrics(tmp_path / name)
        assert m["status"] == "completed" and m["test/total"] == 300 and m["epochs"] == 1
        assert m["config"]["model"]["_target_"].endswith(model)
        assert not (tmp_path / name / "tensorboard").exists()  # neither logs dashboards
        ckpts.append(tmp_path / name / "checkpoints" / "last.ckpt")

    def listed(paths: list[Path]) -> str:  # ckpt_path=[A,B]: each element quoted as Hydra reads it
        return "ckpt_path=[" + ",".join(hydra_override("", str(p))[1:] for p in paths) + "]"

    for members, tta in (([0, 1], False), ([0, 1], True), ([0, 1, 3], False)):
        paths = [ckpts[i] for i in members]
        run_dir = tmp_path / f"ensemble-{len(members)}-tta-{tta}"
        proc = run_eval(listed(paths), hydra_override("data.data_dir", str(data)),
                        f"tta={str(tta).lower()}", hydra_override("hydra.run.dir", str(run_dir)),
                        "callbacks.progress_bar.refresh_rate=0")  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        m = _metrics(run_dir)
        correct, total = _expected_accuracy(paths, data, tta)
        assert (m["test/correct"], m["test/total"]) == (correct, total), (members, tta)
        assert m["checkpoint"] == [str(p) for p in paths] and m["seed"] == [1, 2, 3][: len(paths)]
        assert m["tta"] is tta and m["status"] == "completed"
        assert (run_dir / "figures" / "confusion_counts.png").is_file()

    refusals = {
        "normalize=True (not False)": [ckpts[0], ckpts[2]],
        "more than once": [ckpts[0], ckpts[1], ckpts[0]],
        "names no checkpoint": [],
    }
    for i, (expected, paths) in enumerate(refusals.items()):
        proc = run_eval(listed(paths), hydra_override("data.data_dir", str(data)),
                        hydra_override("hydra.run.dir", str(tmp_path / f"refused{i}")))  # fmt: skip
        assert proc.returncode == 2 and expected in proc.stderr, (expected, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_gpu_bench_runs_its_whole_table_on_a_cpu(tiny_data_dir, tmp_path):
    """bench/gpu.py is what a rare GPU session runs: it must not fail there for a CPU-testable
    reason. Tiny data, one epoch, one speedrun seed; the rows, the saved records, the table."""
    from helpers.runs import run_script

    save = tmp_path / "saved"
    proc = run_script("bench/gpu.py", "--accelerator", "cpu", "--data-dir", str(tiny_data_dir),
                      "--speedrun-seeds", "1", "--save", str(save), "trainer.max_epochs=1",
                      "callbacks=minimal", timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert len(rows) == 7, proc.stdout  # the header and six workloads
    saved = {p.stem: json.loads(p.read_text()) for p in save.glob("*.json")}
    expected = {"lab_auto", "lab_fp32", "speedrun_s1", "speedrun_s1_fp32", "frontier_s1", "table"}
    assert set(saved) == expected
    assert saved["frontier_s1"]["config"]["label_smoothing"] == 0.1
    assert all(saved[k]["device"] == "cpu" for k in ("lab_auto", "speedrun_s1"))
    assert saved["lab_fp32"]["precision"] == "32-true"


def test_a_list_of_checkpoints_is_for_eval_not_for_resuming():
    from omegaconf import OmegaConf

    from mnist_cnn.config import validate
    from mnist_cnn.errors import UserError

    with pytest.raises(
        UserError, match=r"ckpt_path=\['a.ckpt', 'b.ckpt'\] is a list: a run resumes"
    ):
        validate(OmegaConf.create({"ckpt_path": ["a.ckpt", "b.ckpt"]}))
    with pytest.raises(UserError, match=r"tta='yes' is invalid: expected true or false"):
        validate(OmegaConf.create({"tta": "yes"}), ignore=("ckpt_path",))
