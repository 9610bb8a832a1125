"""predict: the digit in each image, its confidence and the top 3, from a trained checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mnist_cnn import checkpoints, images
from mnist_cnn.config import partial_run
from mnist_cnn.errors import UserError


def newest_checkpoint(outputs: Path) -> tuple[Path, float | None]:
    """The checkpoint the most recently finished full training run under outputs/ tested (its
    last.ckpt, or with test_ckpt=best its best), else its other one, and the test accuracy of
    those weights (None for the other: untested); debug runs (limited batches, fast_dev_run)
    are never chosen."""
    candidates = []
    for metrics_file in outputs.rglob("metrics.json"):
        m = _read_metrics(metrics_file)
        if m is None or m.get("status") != "completed" or m.get("task") == "eval" or _debug(m):
            continue
        saved = m.get("checkpoints")
        saved = saved if isinstance(saved, dict) else {}
        tested = "best" if m.get("test_weights") == "best" else "last"
        for name in (tested, *({"last", "best"} - {tested})):
            if isinstance(saved.get(name), str):
                path = metrics_file.parent / saved[name]
                if path.is_file():
                    acc = m.get("test/acc") if name == tested else None
                    candidates.append((metrics_file.stat().st_mtime, str(path), acc))
                    break
    if not candidates:
        raise UserError(
            f"no completed training run with a checkpoint under {outputs} (debug runs are not "
            "used); train one (make train) or give --ckpt PATH"
        )
    _, path, acc = max(candidates, key=lambda c: (c[0], c[1]))
    return Path(path), acc


def _read_metrics(path: Path) -> dict[str, Any] | None:
    """A run's metrics.json as a dict; None for anything else (unreadable, another shape)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _debug(metrics: dict[str, Any]) -> bool:
    config = metrics.get("config")
    return partial_run(config.get("trainer") if isinstance(config, dict) else None) is not None


MAX_NAME = 200  # bytes of a saved input's name, under every filesystem's 255


def _prepare_folder(folder: Path) -> None:
    if os.path.lexists(folder) and not folder.is_dir():
        raise UserError(f"--save-inputs {folder}: not a directory; give a folder (new or existing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise UserError(f"--save-inputs {folder}: cannot create it ({reason})") from None


def load_network(ckpt_path: str | os.PathLike):
    """(the network in eval mode, its config) from a checkpoint, refused if unsafe or not ours."""
    ckpt = checkpoints.load(ckpt_path)
    return ckpt.build_net(in_channels=1, image_size=images.SIZE).eval(), ckpt.config()


# images read and predicted at a time: one forward pass each, memory bounded by a batch
BATCH = 256


def predict(
    net, config: dict[str, Any], paths: list[Path], save_inputs: Path | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """(one result per readable image, one message per image that could not be read)."""
    from mnist_cnn.data.datasets import class_names, mean_std

    dataset = config["data"].get("dataset", "MNIST")
    mean, std = mean_std(dataset, config["data"].get("normalize", False))
    names = class_names(dataset)
    if save_inputs:
        _prepare_folder(save_inputs)
    files = images.image_files(paths)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for start in range(0, len(files), BATCH):
        read: list[tuple[Path, Any]] = []
        for path in files[start : start + BATCH]:
            try:
                digit = images.to_mnist(images.load_grey(path), source=str(path))
            except UserError as exc:
                failures.append(str(exc))
                continue
            if save_inputs:
                _save_input(digit, save_inputs, len(results) + len(read), path, failures)
            read.append((path, digit))
        results += _classify(net, read, mean, std, names)
    return results, failures


def _save_input(digit, folder: Path, index: int, path: Path, failures: list[str]) -> None:
    from mnist_cnn.runs import save_png

    # basename only, cut to fit a file name: it never climbs out of the folder asked for
    name = f"{index:04d}_{path.stem}"[:MAX_NAME].encode()[:MAX_NAME].decode(errors="ignore")
    try:
        save_png(digit, folder / f"{name}.png")
    except UserError as exc:  # this image's copy only; its prediction still counts
        failures.append(f"--save-inputs: {exc}")


def _classify(net, read: list[tuple[Path, Any]], mean, std, names) -> list[dict[str, Any]]:
    """One forward pass over a batch of prepared 28x28 digits; a result per digit, in order."""
    if not read:
        return []
    import numpy as np
    import torch

    from mnist_cnn.data.batches import scale_images

    x = scale_images(torch.from_numpy(np.stack([d for _, d in read]))[:, None], mean, std)
    with torch.no_grad():
        top = torch.topk(torch.softmax(net(x), dim=1), 3)
    out = []
    for (path, _), values, indices in zip(read, top.values, top.indices, strict=True):
        out.append(
            {
                "path": str(path),
                "digit": int(indices[0]),
                "label": names[int(indices[0])],
                "confidence": float(values[0]),
                "top3": [
                    {"digit": int(i), "label": names[int(i)], "confidence": float(p)}
                    for p, i in zip(values, indices, strict=True)
                ],
            }
        )
    return out
