"""predict: the digit in each image, its confidence and the top 3, from a trained checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mnist_cnn import checkpoints, images
from mnist_cnn.cli import exit_on_user_error
from mnist_cnn.data.sources import REPO_ROOT
from mnist_cnn.errors import UserError


def newest_checkpoint(outputs: Path) -> Path:
    """The last.ckpt (else best) of the most recently finished training run under outputs/."""
    candidates = []
    for metrics_file in outputs.rglob("metrics.json"):
        try:
            m = json.loads(metrics_file.read_text())
        except (OSError, ValueError):
            continue
        if m.get("status") != "completed" or m.get("task") == "eval":
            continue
        saved = m.get("checkpoints") or {}
        for name in ("last", "best"):
            if saved.get(name):
                path = metrics_file.parent / saved[name]
                if path.is_file():
                    candidates.append((metrics_file.stat().st_mtime, path))
                    break
    if not candidates:
        raise UserError(
            f"no completed training run with a checkpoint under {outputs}; "
            "train one (make train) or give --ckpt PATH"
        )
    return max(candidates)[1]


def predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    ckpt_path = (args.ckpt or newest_checkpoint(REPO_ROOT / "outputs")).resolve()
    ckpt = checkpoints.load(ckpt_path)  # refused (payload, corrupt) before anything else loads
    import torch

    from mnist_cnn.data.batches import MEAN_STD, scale_images

    config = checkpoints.config_of(ckpt, ckpt_path)
    net = checkpoints.build_net(ckpt, ckpt_path, in_channels=1, image_size=images.SIZE).eval()
    dataset = config["data"].get("dataset", "MNIST")
    mean, std = MEAN_STD[dataset] if config["data"].get("normalize") else (None, None)
    names = _class_names(dataset)

    results, failures = [], []
    for path in images.image_files([Path(p) for p in args.paths]):
        try:
            digit = images.to_mnist(images.load_grey(path), source=str(path))
        except UserError as exc:
            failures.append(str(exc))
            continue
        if args.save_inputs:
            from mnist_cnn.runs import save_png

            args.save_inputs.mkdir(parents=True, exist_ok=True)
            # basename only: an output name never climbs out of the folder asked for
            out = args.save_inputs / f"{len(results):04d}_{path.stem}.png"
            save_png(digit, out)
        x = scale_images(torch.from_numpy(digit)[None, None], mean, std)
        with torch.no_grad():
            probs = torch.softmax(net(x), dim=1)[0]
        top = torch.topk(probs, 3)
        results.append(
            {
                "path": str(path),
                "digit": int(top.indices[0]),
                "label": names[int(top.indices[0])],
                "confidence": float(top.values[0]),
                "top3": [
                    {"digit": int(i), "label": names[int(i)], "confidence": float(p)}
                    for p, i in zip(top.values, top.indices, strict=True)
                ],
            }
        )
    _report(results, failures, args.json, ckpt_path)
    if failures:
        raise UserError(f"{len(failures)} of {len(failures) + len(results)} images failed (above)")
    return results


def _class_names(dataset: str) -> list[str]:
    from torchvision import datasets

    return [c.split(" - ")[0] for c in getattr(datasets, dataset).classes]


def _report(results, failures, as_json: bool, ckpt_path: Path) -> None:
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    print(f"checkpoint: {ckpt_path}", file=sys.stderr)
    width = max([len(r["path"]) for r in results] + [4])
    print(f"{'path':<{width}}  digit  confidence  top 3")
    for r in results:
        top3 = ", ".join(f"{t['label']} {100 * t['confidence']:.1f}%" for t in r["top3"])
        print(f"{r['path']:<{width}}  {r['label']:>5}  {100 * r['confidence']:9.2f}%  {top3}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="predict.py",
        description="Read the digit in each image (files or folders) with a trained checkpoint.",
    )
    parser.add_argument("paths", nargs="+", help="image files or folders of images")
    parser.add_argument(
        "--ckpt", type=Path, help="checkpoint (default: newest completed run under outputs/)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--save-inputs", type=Path, metavar="DIR", help="save the 28x28 each image became, as PNG"
    )
    exit_on_user_error(predict, parser.parse_args(argv))
