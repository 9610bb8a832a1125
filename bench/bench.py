"""Benchmark the seed workload on this machine: `python bench/bench.py [--mode M] [--runs N]`.

Modes (each runs its variants alternately, N rounds, and prints medians and ratios):
  reference  python train.py (defaults) vs the plain PyTorch loop in bench/reference.py
  callbacks  python train.py with the dashboards (default) vs callbacks=minimal: what they cost
  scaling    python train.py at 1, 3 and 10 epochs, then batch sizes 64 to 512 (one run each)
Figures: whole-process wall seconds, phase seconds, fit throughput, peak RSS, test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from mnist_cnn.data.sources import default_data_dir  # noqa: E402

TRAIN_SAMPLES = 54_000


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run cmd; return wall seconds, peak RSS in MiB (of that process alone) and its stdout."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def run_train(overrides: list[str], epochs: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "train.py", f"hydra.run.dir={tmp}/run", *overrides]
        wall, rss, _ = timed(cmd)
        m = json.loads(Path(tmp, "run", "metrics.json").read_text())
    phases = m["setup_seconds"] + m["train_seconds"] + m["test_seconds"]
    return {
        "whole": wall,
        "startup+rest": wall - phases,
        "setup": m["setup_seconds"],
        "fit": m["train_seconds"],
        "test": m["test_seconds"],
        "peak_MiB": rss,
        "samples/s": TRAIN_SAMPLES * m["epochs"] / m["train_seconds"],
        "test_acc": m["test/acc"],
    }


def run_reference(data_dir: Path, epochs: int = 3) -> dict:
    cmd = [sys.executable, "bench/reference.py", str(data_dir / "MNIST" / "raw"), str(epochs)]
    wall, rss, out = timed(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return {
        "whole": wall,
        "startup+rest": wall - r["data"] - r["fit"] - r["test"],
        "setup": r["data"],
        "fit": r["fit"],
        "test": r["test"],
        "peak_MiB": rss,
        "samples/s": TRAIN_SAMPLES * epochs / r["fit"],
        "test_acc": r["test_acc"],
    }


def report(results: dict[str, list[dict]]) -> None:
    names = list(results)
    keys = list(results[names[0]][0])
    print(
        f"\n{'median of ' + str(len(results[names[0]])) + ' runs':<16}"
        + "".join(f"{n:>22}" for n in names)
        + (f"{'ratio':>10}" if len(names) == 2 else "")
    )
    for key in keys:
        meds = [statistics.median(r[key] for r in results[n]) for n in names]
        row = f"{key:<16}" + "".join(
            f"{v:>22.4f}" if key == "test_acc" else f"{v:>22.2f}" for v in meds
        )
        if len(names) == 2 and meds[1]:
            row += f"{meds[0] / meds[1]:>10.2f}"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", choices=("reference", "callbacks", "scaling"), default="reference"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    data = [f"data.data_dir={args.data_dir}"]
    print(f"torch threads: {os.cpu_count()} cores; data: {args.data_dir}", flush=True)
    if args.mode == "scaling":
        for epochs in (1, 3, 10):
            report({f"epochs={epochs}": [run_train([*data, f"trainer.max_epochs={epochs}"])]})
        for batch in (64, 128, 256, 512):
            report({f"batch={batch}": [run_train([*data, f"data.batch_size={batch}"])]})
        return
    variants = {
        "reference": {
            "train.py": lambda: run_train(data),
            "plain PyTorch loop": lambda: run_reference(args.data_dir),
        },
        "callbacks": {
            "dashboards on": lambda: run_train(data),
            "callbacks=minimal": lambda: run_train([*data, "callbacks=minimal"]),
        },
    }[args.mode]
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for i in range(args.runs):  # alternate, so drift in machine speed hits both alike
        for name, fn in variants.items():
            results[name].append(fn())
            r = results[name][-1]
            print(
                f"run {i + 1} {name}: whole {r['whole']:.1f} s, fit {r['fit']:.1f} s, "
                f"test acc {r['test_acc']:.4f}",
                flush=True,
            )
    report(results)


if __name__ == "__main__":
    main()
