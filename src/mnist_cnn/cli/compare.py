"""`python compare.py PATH [PATH ...] [--out DIR]`: compare runs across seeds and configs.

PATH is a run dir, a sweep dir or a glob. Prints a Markdown table (mean ± std, 95% CI, Welch's
t-test between groups, same-seed bit-identity) and writes comparison.{json,csv,png}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_cnn.cli import a_command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="compare.py", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run or sweep dirs, globs, metrics.json files")
    parser.add_argument("--out", type=Path, help="where to write comparison.* (default: beside)")
    parser.add_argument("--baseline", type=int, help="test each group against group N (0-based)")
    parser.add_argument(
        "--label",
        help="name groups by these comma-separated config keys (e.g. model._target_)",
    )
    parser.add_argument(
        "--include-subsets",
        action="store_true",
        help="pool runs tested on part of the test set (limited batches) with the others",
    )
    args = parser.parse_args(argv)
    with a_command(argv, "mnist_cnn.compare_report", left="run the command again"):
        run(args)


def run(args: argparse.Namespace) -> None:
    from mnist_cnn.compare import compare
    from mnist_cnn.compare_report import default_out_dir, markdown, write
    from mnist_cnn.console import out

    labels = [k.strip() for k in args.label.split(",")] if args.label else None
    result = compare(
        args.paths, baseline=args.baseline, label_keys=labels, include_subsets=args.include_subsets
    )
    out(markdown(result))
    written = write(result, args.out or default_out_dir(result))
    out(f"\nWrote {', '.join(str(p) for p in written)}")
