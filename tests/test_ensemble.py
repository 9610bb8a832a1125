"""Ensembles: the one-pixel shifts, the members' mean probabilities, and eval.py over a list of
checkpoints (counted again without Lightning)."""

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
from mnist_cnn.errors import UserError
from mnist_cnn.members import load_all
from mnist_cnn.models.ensemble import TTA_SHIFTS, Ensemble, shift
from mnist_cnn.models.speed_cnn import SpeedCNN


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


@pytest.mark.reliability("RF1")
@pytest.mark.slow
def test_speedrun_checkpoints_ensemble_through_eval_py(tmp_path):
    # 8 batches of 256: the speedrun's fastest_of candidates (0.85 and 0.75 of an epoch) both
    # train 6 steps, whichever this machine measures as the quicker
    data = write_mnist(tmp_path / "data", n_train=2000, n_test=300)
    common = [hydra_override("data.data_dir", str(data))]
    ckpts = []
    runs = (
        ("s1", "SpeedCNN", ["experiment=speedrun", "seed=1"]),
        ("s2", "SpeedCNN", ["experiment=speedrun", "seed=2"]),
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
        assert "View it" not in proc.stdout + proc.stderr  # so none is offered
        ckpts.append(tmp_path / name / "checkpoints" / "last.ckpt")

    def listed(paths: list[Path]) -> str:  # ckpt_path=[A,B]: each element quoted as Hydra reads it
        return "ckpt_path=[" + ",".join(hydra_override("", str(p))[1:] for p in paths) + "]"

    for members, tta in (([0, 1], False), ([0, 1], True), ([0, 1, 2], False)):
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

    # eval.py refuses a bad list before testing: exit 2, one line, no traceback (a subprocess):
    # here a member trained on normalized inputs (s2's network, its record saying so) beside one
    # trained on raw pixels; the list's other refusals are load_all's, checked in this process
    normalized = torch.load(ckpts[1], map_location="cpu", weights_only=False)
    assert normalized["hyper_parameters"]["data"]["normalize"] is False
    normalized["hyper_parameters"]["data"]["normalize"] = True
    torch.save(normalized, tmp_path / "normalized.ckpt")
    proc = run_eval(listed([ckpts[0], tmp_path / "normalized.ckpt"]),
                    hydra_override("data.data_dir", str(data)),
                    hydra_override("hydra.run.dir", str(tmp_path / "refused")))  # fmt: skip
    assert proc.returncode == 2 and "normalize=True (not False)" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert _metrics(tmp_path / "refused")["status"] == "failed"  # its run dir says why too
    link = tmp_path / "link.ckpt"  # the same file under another name: the same model
    link.symlink_to(ckpts[0])
    refusals = {
        "more than once": [ckpts[0], ckpts[1], ckpts[0]],
        "names no checkpoint": [],
        "hold the same network weights": [ckpts[0], ckpts[1], link],
    }
    for expected, paths in refusals.items():
        with pytest.raises(UserError, match=expected):
            load_all([str(p) for p in paths])


def test_a_list_of_checkpoints_is_for_eval_not_for_resuming():
    from omegaconf import OmegaConf

    from mnist_cnn.config import validate

    with pytest.raises(
        UserError, match=r"ckpt_path=\['a.ckpt', 'b.ckpt'\] is a list: a run resumes"
    ):
        validate(OmegaConf.create({"ckpt_path": ["a.ckpt", "b.ckpt"]}))
    with pytest.raises(UserError, match=r"tta='yes' is invalid: expected true or false"):
        validate(OmegaConf.create({"tta": "yes"}), ignore=("ckpt_path",))
