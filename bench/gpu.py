"""The GPU check in one run (bench/gpu.sh calls it): every frontier workload on one GPU, one table.

Rows, each one process as a user starts it: the Keras lab workload (`python train.py`,
precision=auto, so bf16-mixed on a GPU with bf16) and the same in fp32, `experiment=speedrun`
over seeds 1-5, the speedrun's seed 1 again in fp32 (for the drift table), `experiment=frontier`
seed 1, and the plain PyTorch loop (bench/reference.py) with the data on the GPU. Each train.py
run's metrics.json is kept under --save (for `compare.py` across devices).
`--accelerator cpu` runs the same table on the CPU: how the script itself is tested.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def train(name: str, overrides: list[str], save: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        wall, _ = run([sys.executable, "train.py", f"hydra.run.dir={tmp}/run", *overrides])
        metrics = json.loads(Path(tmp, "run", "metrics.json").read_text())
        if save is not None:
            shutil.copy(Path(tmp, "run", "metrics.json"), save / f"{name}.json")
    return {
        "whole": wall,
        "fit": metrics["train_seconds"],
        "test_acc": metrics["test/acc"],
        "precision": metrics["precision"],
        "device": metrics.get("device"),
        "weights": metrics["weights_sha256"][:12],
    }


def plain_loop(data_dir: Path, device: str) -> dict:
    wall, out = run([sys.executable, "bench/reference.py", str(data_dir / "MNIST" / "raw"), device])
    r = json.loads(out.strip().splitlines()[-1])
    return {"whole": wall, "fit": r["fit"], "test_acc": r["test_acc"], "precision": "32-true"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu", choices=("gpu", "cpu"))
    parser.add_argument("--data-dir", type=Path, default=None, help="default: the project's own")
    parser.add_argument("--speedrun-seeds", type=int, default=5)
    parser.add_argument("--save", type=Path, default=None, help="keep each run's metrics.json")
    parser.add_argument("extra", nargs="*", help="overrides for every train.py run (tests)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from mnist_cnn.data.sources import default_data_dir

    data_dir = args.data_dir or default_data_dir()
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    common = [f"trainer.accelerator={args.accelerator}", f"data.data_dir={data_dir}", *args.extra]
    rows: list[tuple[str, dict]] = [
        ("Keras lab workload, precision=auto", train("lab_auto", common, args.save)),
        ("Keras lab workload, fp32", train("lab_fp32", [*common, "trainer=fp32"], args.save)),
    ]
    speed = [
        train(f"speedrun_s{s}", [*common, "experiment=speedrun", f"seed={s}"], args.save)
        for s in range(1, args.speedrun_seeds + 1)
    ]
    rows.append(
        (
            f"experiment=speedrun, median of {len(speed)} seeds",
            {
                "whole": statistics.median(r["whole"] for r in speed),
                "fit": statistics.median(r["fit"] for r in speed),
                "test_acc": statistics.mean(r["test_acc"] for r in speed),
                "precision": speed[0]["precision"],
                "min_acc": min(r["test_acc"] for r in speed),
            },
        )
    )
    # the same seed in fp32: the drift table of docs/performance.md sets it beside the CPU's
    fp32 = train("speedrun_s1_fp32", [*common, "experiment=speedrun", "seed=1", "trainer=fp32"],
                 args.save)  # fmt: skip
    rows.append(("experiment=speedrun, seed 1, fp32", fp32))
    frontier = train("frontier_s1", [*common, "experiment=frontier", "seed=1"], args.save)
    rows.append(("experiment=frontier, seed 1", frontier))
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    rows.append(("plain PyTorch loop (bench/reference.py)", plain_loop(data_dir, device)))
    print("\n| workload | whole s | fit s | test acc | precision | weights |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        acc = f"{100 * r['test_acc']:.2f}%"
        if "min_acc" in r:
            acc += f" (mean; min {100 * r['min_acc']:.2f}%)"
        print(f"| {name} | {r['whole']:.2f} | {r['fit']:.2f} | {acc} | {r['precision']} "
              f"| {r.get('weights', '')} |")  # fmt: skip
    if args.save is not None:
        (args.save / "table.json").write_text(json.dumps(dict(rows), indent=1))


if __name__ == "__main__":
    main()
