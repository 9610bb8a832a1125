"""Benchmark the Keras lab workload on this machine: `python bench/bench.py [--mode M] [--runs N]`.

Modes (each runs its variants alternately, N rounds, and prints medians and ratios):
  reference  python train.py (defaults), the same with trainer=fp32 (where the default is not
             fp32 already), the plain PyTorch loop in bench/reference.py, and the Keras lab's
             notebook (bench/keras_lab.py) when --keras names a Python that has TensorFlow
             (`make bench` builds one in .bench-keras/)
  callbacks  python train.py with the dashboards (default) vs callbacks=minimal: what they cost
  scaling    python train.py at 1, 3 and 10 epochs, then batch sizes 64 to 512 (one run each)
  ddp        one process x 2 threads vs trainer.devices=2 (DDP, 2 processes x 1 thread), same
             seed and global batch: fit throughput, whole seconds, test accuracy
  levers     ms per training step of a plain loop, one speed lever added at a time (bench/levers.py)
  step       train.py's step, layer by layer: a plain loop, a bare Lightning loop, ours, the
             callbacks and logger (bench/step.py, in one process; --runs rounds)
  speedrun   experiment=speedrun as planned here (fastest_of) vs its whole-epoch 8-filter recipe
             (fastest_of=null), seeds 1..N, and the Keras notebook's fit for the ratio (--keras)
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
# issue 28's goals for the seed workload against the Keras lab's notebook, on the machine at hand
GOAL_WHOLE, GOAL_FIT = 0.5, 2.5
GOAL_SPEEDRUN = 0.1  # the speedrun's fit against the Keras notebook's fit of the seed workload
WEIGHTS: list[str] = []  # weights_sha256 of every train.py run at the default settings


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
    if overrides == [o for o in overrides if o.startswith("data.data_dir=")]:
        WEIGHTS.append(m["weights_sha256"])
    phases = m["setup_seconds"] + m["train_seconds"] + m["test_seconds"]
    plan = m.get("plan") or {}
    return {
        "plan": plan.get("probe_seconds", 0.0),
        "whole": wall,
        "startup+rest": wall - phases,
        "setup": m["setup_seconds"],
        "fit": m["train_seconds"],
        "test": m["test_seconds"],
        "peak_MiB": rss,
        "samples/s": TRAIN_SAMPLES * m["epochs"] / m["train_seconds"],
        "test_acc": m["test/acc"],
    }


def run_script(cmd: list[str], samples: int, epochs: int = 3) -> dict:
    """A script that prints one JSON line with its phase seconds (reference.py, keras_lab.py)."""
    wall, rss, out = timed(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return {
        "whole": wall,
        "plan": 0.0,
        "startup+rest": wall - r["data"] - r["fit"] - r["test"],
        "setup": r["data"],
        "fit": r["fit"],
        "test": r["test"],
        "peak_MiB": rss,
        "samples/s": samples * epochs / r["fit"],
        "test_acc": r["test_acc"],
    }


def run_lever(data_dir: Path, flags: list[str]) -> dict:
    cmd = [sys.executable, "bench/levers.py", str(data_dir / "MNIST" / "raw"), *flags]
    _, rss, out = timed(cmd)
    return {**json.loads(out.strip().splitlines()[-1]), "peak_MiB": rss}


def report(results: dict[str, list[dict]]) -> None:
    """Medians per variant; with several variants, the first one's ratio to each of the others."""
    names = list(results)
    keys = list(results[names[0]][0])
    width = max(22, *(len(n) + 2 for n in names))
    print(
        f"\n{'median of ' + str(len(results[names[0]])) + ' runs':<16}"
        + "".join(f"{n:>{width}}" for n in names)
        + "".join(f"{'ratio to ' + str(i + 2):>12}" for i in range(len(names) - 1))
    )
    for key in keys:
        meds = [statistics.median(r[key] for r in results[n]) for n in names]
        row = f"{key:<16}" + "".join(
            f"{v:>{width}.4f}" if key == "test_acc" else f"{v:>{width}.2f}" for v in meds
        )
        row += "".join(f"{meds[0] / m:>12.2f}" if m else f"{'':>12}" for m in meds[1:])
        print(row)


def cpu_kind() -> str:
    """The CPU kinds docs/performance.md names: AMX, AVX512-BF16, AVX-512, AVX2."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    for flag, kind in (("amx_tile", "Intel, AVX-512 + AVX512-BF16 + AMX"),
                       ("avx512_bf16", "AVX-512 + AVX512-BF16"), ("avx512f", "AVX-512"),
                       ("avx2", "AVX2 only")):  # fmt: skip
        if flag in flags:
            return kind
    return "no AVX2"


def against_keras(results: dict[str, list[dict]]) -> None:
    """train.py's whole-process and fit ratios to the Keras notebook, beside the goals."""
    ours, keras = results["train.py"], results["Keras notebook"]
    whole = statistics.median(r["whole"] for r in ours) / statistics.median(
        r["whole"] for r in keras
    )
    fit = statistics.median(r["fit"] for r in keras) / statistics.median(r["fit"] for r in ours)
    met = {True: "met", False: "not met"}
    print(
        f"\nthe seed workload against the Keras notebook ({cpu_kind()}): whole process "
        f"{whole:.2f}x its time (goal <= {GOAL_WHOLE}x: {met[whole <= GOAL_WHOLE]}), "
        f"fit {fit:.2f}x faster (goal >= {GOAL_FIT}x: {met[fit >= GOAL_FIT]})"
    )


def speedrun(data: list[str], raw: str, runs: int, keras: Path | None) -> None:
    """The speedrun as planned on this machine against its fixed recipe, seeds 1..runs, and the
    Keras notebook's fit of the seed workload (the goal is a ratio to it)."""
    variants = {"planned (fastest_of)": [], "8 filters, 1 epoch": ["fastest_of=null"]}
    results: dict[str, list[dict]] = {name: [] for name in variants}
    if keras:
        results["Keras notebook"] = []
    for i in range(runs):
        for name, extra in variants.items():
            overrides = [*data, "experiment=speedrun", f"seed={i + 1}", *extra]
            results[name].append(run_train(overrides))
            r = results[name][-1]
            print(f"run {i + 1} {name}: fit {r['fit']:.2f} s, plan {r['plan']:.2f} s, "
                  f"test acc {r['test_acc']:.4f}", flush=True)  # fmt: skip
        if keras:
            results["Keras notebook"].append(
                run_script([str(keras), "bench/keras_lab.py", raw, "3"], TRAIN_SAMPLES)
            )
            print(f"run {i + 1} Keras notebook: fit {results['Keras notebook'][-1]['fit']:.1f} s")
    for rows in results.values():
        for r in rows:
            r.pop("samples/s")  # the speedrun trains part of an epoch
    report(results)
    planned = statistics.median(r["fit"] for r in results["planned (fastest_of)"])
    accs = [r["test_acc"] for r in results["planned (fastest_of)"]]
    print(f"\nthe planned speedrun ({cpu_kind()}): fit {planned:.2f} s (median), test accuracy "
          f"mean {statistics.mean(accs):.4f}, min {min(accs):.4f} over seeds 1-{runs}")  # fmt: skip
    if keras:
        ratio = planned / statistics.median(r["fit"] for r in results["Keras notebook"])
        met = "met" if ratio <= GOAL_SPEEDRUN else "not met"
        print(f"against the Keras notebook's fit: {ratio:.3f}x (goal <= {GOAL_SPEEDRUN}x: {met})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=("reference", "callbacks", "scaling", "levers", "step", "ddp", "speedrun"),
        default="reference",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument(
        "--keras", type=Path, help="a Python with TensorFlow: adds the Keras notebook's run"
    )
    args = parser.parse_args()
    if args.keras and not args.keras.is_file():
        sys.exit(f"--keras {args.keras}: no such interpreter; `make bench` builds .bench-keras/")
    data = [f"data.data_dir={args.data_dir}"]
    raw = str(args.data_dir / "MNIST" / "raw")
    from mnist_cnn.precision import resolve_precision

    precision, why = resolve_precision("auto")
    print(f"CPU: {cpu_kind()}; torch threads: {os.cpu_count()} cores; data: {args.data_dir}",
          flush=True)  # fmt: skip
    print(f"train.py's precision=auto on this machine: {precision} ({why})", flush=True)
    if args.mode == "speedrun":
        speedrun(data, raw, args.runs, args.keras)
        return
    if args.mode == "scaling":
        for epochs in (1, 3, 10):
            report({f"epochs={epochs}": [run_train([*data, f"trainer.max_epochs={epochs}"])]})
        for batch in (64, 128, 256, 512):
            report({f"batch={batch}": [run_train([*data, f"data.batch_size={batch}"])]})
        return
    if args.mode == "step":
        step = [sys.executable, str(ROOT / "bench" / "step.py"), "--rounds", str(args.runs)]
        sys.exit(subprocess.run([*step, *data]).returncode)
    if args.mode == "levers":
        ours = ["--channels-last", "--pool-first", "--read-square"]
        steps = [
            ("fp32 NCHW, textbook order", []),
            ("+ channels_last", ["--channels-last"]),
            ("+ pool before ReLU", ["--channels-last", "--pool-first"]),
            ("+ 26x26 read square", ours),
            ("+ keep_freed_memory", [*ours, "--keep-freed"]),
            ("+ torch.compile", [*ours, "--keep-freed", "--compile"]),
            ("+ bf16 autocast", [*ours, "--keep-freed", "--bf16"]),
        ]
        results = {name: [] for name, _ in steps}
        for _ in range(args.runs):
            for name, flags in steps:
                results[name].append(run_lever(args.data_dir, flags))
        print(
            f"\n{'median of ' + str(args.runs) + ' runs':<28}{'ms/step':>9}{'vs first':>10}"
            f"{'1st step s':>12}{'weights checksum':>22}"
        )
        first = statistics.median(r["ms_per_step"] for r in results[steps[0][0]])
        for name, runs in results.items():
            ms = statistics.median(r["ms_per_step"] for r in runs)
            print(
                f"{name:<28}{ms:>9.1f}{first / ms:>9.2f}x"
                f"{statistics.median(r['first_step_s'] for r in runs):>12.2f}"
                f"{runs[0]['checksum']:>22.10f}"
            )
        return
    reference = {
        "train.py": lambda: run_train(data),
        "train.py trainer=fp32": lambda: run_train([*data, "trainer=fp32"]),
        "plain PyTorch loop": lambda: run_script(
            [sys.executable, "bench/reference.py", raw, "3"], TRAIN_SAMPLES
        ),
    }
    if precision == "32-true":  # the default already is fp32 here: the row would repeat it
        del reference["train.py trainer=fp32"]
    if args.keras:
        reference["Keras notebook"] = lambda: run_script(
            [str(args.keras), "bench/keras_lab.py", raw, "3"], TRAIN_SAMPLES
        )
    variants = {
        "reference": reference,
        "ddp": {
            "1 process x 2 threads": lambda: run_train([*data, "threads=2"]),
            "2 processes x 1 thread": lambda: run_train([*data, "trainer.devices=2"]),
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
    if "Keras notebook" in results:
        against_keras(results)
    if len(WEIGHTS) > 1:
        same = "bit-identical" if len(set(WEIGHTS)) == 1 else "NOT bit-identical"
        print(
            f"\ntrain.py at the defaults, {len(WEIGHTS)} runs: weights {same} "
            f"({len(set(WEIGHTS))} distinct weights_sha256)"
        )


if __name__ == "__main__":
    main()
