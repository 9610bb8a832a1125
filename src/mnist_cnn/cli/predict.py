"""`python predict.py PATH... [--ckpt PATH] [--json] [--save-inputs DIR]`: read digits in images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mnist_cnn import REPO_ROOT
from mnist_cnn.cli import a_command
from mnist_cnn.errors import UserError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="predict.py",
        description="Read the digit in each image (files or folders) with a trained checkpoint.",
    )
    parser.add_argument("paths", nargs="+", help="image files or folders of images")
    parser.add_argument(
        "--ckpt",
        type=Path,
        help="checkpoint (default: the newest completed full training run under outputs/)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--save-inputs", type=Path, metavar="DIR", help="save the 28x28 each image became, as PNG"
    )
    args = parser.parse_args(argv)
    left = "run the command again"
    if args.save_inputs:
        left = f"--save-inputs {args.save_inputs} may hold some of the inputs; {left}"
    with a_command(argv, "mnist_cnn.predict", left):
        run(args)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from mnist_cnn.console import out
    from mnist_cnn.predict import load_network, newest_checkpoint, predict

    if args.ckpt:
        ckpt_path, about = args.ckpt.expanduser().resolve(), "given with --ckpt"
    else:
        ckpt_path, acc = newest_checkpoint(REPO_ROOT / "outputs")
        tested = f"test accuracy {100 * acc:.2f}%" if isinstance(acc, (int, float)) else "untested"
        about = f"the newest completed training run, {tested}; --ckpt PATH chooses another"
    net, config = load_network(ckpt_path)  # refused (payload, corrupt) before anything else
    print(f"checkpoint: {ckpt_path} ({about})", file=sys.stderr)
    results, failures = predict(net, config, [Path(p) for p in args.paths], args.save_inputs)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    out(json.dumps(results, indent=2) if args.json else table(results))
    if failures:
        raise UserError(
            f"{len(failures)} problem(s) (above); the {len(results)} images read are predicted"
        )
    return results


def table(results: list[dict[str, Any]]) -> str:
    width = max([len(r["path"]) for r in results] + [4])
    lines = [f"{'path':<{width}}  digit  confidence  top 3"]
    for r in results:
        top3 = ", ".join(f"{t['label']} {100 * t['confidence']:.1f}%" for t in r["top3"])
        lines.append(
            f"{r['path']:<{width}}  {r['label']:>5}  {100 * r['confidence']:9.2f}%  {top3}"
        )
    return "\n".join(lines)
