"""Rerun the adversarial pass: hostile inputs to every entry point, as a user would type them.

`python scripts/adversarial_pass.py [--seed N]` (or `make adversarial`) builds each hostile input
in a temporary directory, runs the command, and prints one row per case: the exit code against
the one docs/reliability.md promises (or the oracle's verdict, for the cases generated per class
of issue 26 in adversarial_cases.py), whether a traceback was printed, whether files that existed
before are byte-identical after, and the command's peak memory. A summary per class ends it. It
trains only on generated data (seconds); it never touches outputs/.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from adversarial_cases import Case as Generated  # noqa: E402
from adversarial_cases import generated  # noqa: E402
from helpers.data import write_mnist  # noqa: E402  (tests/ on the path: the generated data)

from mnist_cnn.commands import hydra_override as q  # noqa: E402


@dataclass
class Case:
    name: str
    script: str
    args: Callable[[Path], list[str]]
    expect: int
    keep: Callable[[Path], list[Path]] = lambda tmp: []  # files that must stay byte-identical


def digests(paths: list[Path]) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in paths
        for p in ([root] if root.is_file() else sorted(root.rglob("*")))
        if p.is_file()
    }


def setup(tmp: Path) -> None:
    """Every hostile input the cases refer to, generated."""
    import torch

    from mnist_cnn.models.simple_cnn import SimpleCNN

    write_mnist(tmp / "data")
    state = {f"net.{k}": v for k, v in SimpleCNN().state_dict().items()}
    config = {
        "seed": 1,
        "model": {"_target_": "mnist_cnn.models.simple_cnn.SimpleCNN"},
        "data": {"dataset": "MNIST", "eval_batch_size": 0},
        "trainer": {"precision": "32-true"},
    }
    for name, eval_batch_size in (("bad-hparams.ckpt", 0), ("good.ckpt", 256)):
        config["data"]["eval_batch_size"] = eval_batch_size
        torch.save(
            {"state_dict": state, "hyper_parameters": config, "epoch": 0, "global_step": 1},
            tmp / name,
        )
    with zipfile.ZipFile(tmp / "bomb.ckpt", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * 1024)
    raw = bytearray((tmp / "bomb.ckpt").read_bytes())
    at = raw.rfind(b"PK\x01\x02")
    raw[at + 24 : at + 28] = (3 * 1024**3).to_bytes(4, "little")
    (tmp / "bomb.ckpt").write_bytes(bytes(raw))

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(tmp / "payload-ran"),))

    torch.save({"state_dict": {}, "x": Payload()}, tmp / "payload.ckpt")
    (tmp / "truncated.ckpt").write_bytes((tmp / "bad-hparams.ckpt").read_bytes()[:5000])
    # a 3.1 GB sparse IDX file whose size matches its header
    sparse = tmp / "sparse" / "MNIST" / "raw"
    write_mnist(tmp / "sparse")
    count = 4_000_000
    with open(sparse / "train-images-idx3-ubyte", "wb") as f:
        f.write((2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (count, 28, 28)))
        f.truncate(16 + count * 784)
    gz = tmp / "gz" / "MNIST" / "raw"
    write_mnist(tmp / "gz")
    for path in list(gz.iterdir()):
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(path.read_bytes())
        path.unlink()
    run = tmp / "completed-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(os.urandom(100))
    (run / "metrics.json").write_text(json.dumps({"status": "completed"}))
    (run / ".hydra").mkdir()
    (tmp / "a-file").write_text("x")
    (tmp / "hostile-metrics" / "a").mkdir(parents=True)
    (tmp / "hostile-metrics" / "a" / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp / "one-run" / "r").mkdir(parents=True)
    (tmp / "one-run" / "r" / "metrics.json").write_text(
        json.dumps(
            {"status": "completed", "test/acc": 0.9, "test/loss": 0.3, "val/acc": 0.9, "seed": 1,
             "config": {"seed": 1}}
        )
    )  # fmt: skip
    from PIL import Image, ImageDraw

    digit = Image.new("L", (60, 60))
    ImageDraw.Draw(digit).line([(20, 10), (40, 10), (30, 50)], fill=255, width=5)
    digit.save(tmp / "digit.png")


def data(tmp: Path) -> list[str]:
    return [q("data.data_dir", str(tmp / "data")), "model=mlp", "callbacks=minimal"]


def run_dir(tmp: Path, name: str) -> str:
    return q("hydra.run.dir", str(tmp / "runs" / name))


CASES = [
    Case("lr -1", "train.py", lambda t: ["optimizer.lr=-1", run_dir(t, "a")], 2),
    Case("zero conv channels", "train.py", lambda t: ["model.conv1_channels=0"], 2),
    Case("sgd momentum -1", "train.py", lambda t: ["optimizer=sgd", "optimizer.momentum=-1"], 2),
    Case("betas out of range", "train.py", lambda t: ["+optimizer.betas=[0.9,1.5]"], 2),
    Case(
        "onecycle pct_start 1",
        "train.py",
        lambda t: ["scheduler=onecycle", "scheduler.pct_start=1"],
        2,
    ),
    Case("gpu without a gpu", "train.py", lambda t: ["trainer.accelerator=gpu"], 2),
    Case("limit_test_batches 0", "train.py", lambda t: ["+trainer.limit_test_batches=0"], 2),
    Case("limit_train_batches 0", "train.py", lambda t: ["+trainer.limit_train_batches=0"], 2),
    Case("zero devices", "train.py", lambda t: ["trainer.devices=0"], 2),
    Case("two nodes", "train.py", lambda t: ["trainer.num_nodes=2"], 2),
    Case("seed -1", "train.py", lambda t: ["seed=-1"], 2),
    Case("mlp hidden [0]", "train.py", lambda t: ["model=mlp", "model.hidden=[0]"], 2),
    Case("filters top_k 0", "train.py", lambda t: ["callbacks.filters.top_k=0"], 2),
    Case(
        "run dir = a completed run",
        "train.py",
        lambda t: [q("hydra.run.dir", str(t / "completed-run"))],
        2,
        keep=lambda t: [t / "completed-run"],
    ),  # fmt: skip
    Case(
        "sweep into a single run",
        "train.py",
        lambda t: ["-m", "seed=1,2", q("hydra.sweep.dir", str(t / "completed-run"))],
        2,
        keep=lambda t: [t / "completed-run"],
    ),  # fmt: skip
    Case("run dir under /proc", "train.py", lambda t: [q("hydra.run.dir", "/proc/mnist-run")], 2),
    Case(
        "run dir name 300 bytes",
        "train.py",
        lambda t: [q("hydra.run.dir", str(t / ("x" * 300)))],
        2,
    ),
    Case(
        "run dir under a file",
        "train.py",
        lambda t: [q("hydra.run.dir", str(t / "a-file" / "r"))],
        2,
        keep=lambda t: [t / "a-file"],
    ),
    Case("data dir /dev", "train.py", lambda t: ["data.data_dir=/dev", run_dir(t, "dev")], 2),
    Case(
        "only .gz files",
        "train.py",
        lambda t: [q("data.data_dir", str(t / "gz")), "data.download=false", run_dir(t, "gz")],
        2,
    ),
    Case(
        "3 GB sparse IDX",
        "train.py",
        lambda t: [q("data.data_dir", str(t / "sparse")), run_dir(t, "sparse")],
        2,
    ),
    Case(
        "resume: zip bomb",
        "train.py",
        lambda t: [*data(t), q("ckpt_path", str(t / "bomb.ckpt")), run_dir(t, "bomb")],
        2,
    ),
    Case(
        "resume: pickle payload",
        "train.py",
        lambda t: [*data(t), q("ckpt_path", str(t / "payload.ckpt")), run_dir(t, "payload")],
        2,
    ),
    Case(
        "resume: truncated",
        "train.py",
        lambda t: [*data(t), q("ckpt_path", str(t / "truncated.ckpt")), run_dir(t, "trunc")],
        2,
    ),
    Case(
        "finite divergence lr 1e6",
        "train.py",
        lambda t: [*data(t), "optimizer.lr=1e6", "trainer.max_epochs=1", run_dir(t, "div")],
        3,
    ),
    Case(
        "eval: bad hyper_parameters",
        "eval.py",
        lambda t: [
            q("ckpt_path", str(t / "bad-hparams.ckpt")),
            q("data.data_dir", str(t / "data")),
            run_dir(t, "e1"),
        ],
        2,
    ),
    Case(
        "eval: zip bomb",
        "eval.py",
        lambda t: [q("ckpt_path", str(t / "bomb.ckpt")), run_dir(t, "e2")],
        2,
    ),
    Case(
        "eval: no such file",
        "eval.py",
        lambda t: [q("ckpt_path", str(t / "nope.ckpt")), run_dir(t, "e3")],
        2,
    ),
    Case(
        "eval: run dir = a run",
        "eval.py",
        lambda t: [
            q("ckpt_path", str(t / "bad-hparams.ckpt")),
            q("hydra.run.dir", str(t / "completed-run")),
        ],
        2,
        keep=lambda t: [t / "completed-run"],
    ),
    Case(
        "eval: precision half",
        "eval.py",
        lambda t: [
            q("ckpt_path", str(t / "bad-hparams.ckpt")),
            "trainer.precision=half",
            run_dir(t, "e4"),
        ],
        2,
    ),
    Case(
        "predict: bad hyper_parameters",
        "predict.py",
        lambda t: [str(t / "digit.png"), "--ckpt", str(t / "bad-hparams.ckpt")],
        2,
    ),
    Case(
        "predict: payload",
        "predict.py",
        lambda t: [str(t / "digit.png"), "--ckpt", str(t / "payload.ckpt")],
        2,
    ),
    Case(
        "predict: save-inputs a file",
        "predict.py",
        lambda t: [
            str(t / "digit.png"),
            "--ckpt",
            str(t / "good.ckpt"),
            "--save-inputs",
            str(t / "a-file"),
        ],
        2,
        keep=lambda t: [t / "a-file"],
    ),
    Case("compare: baseline 5", "compare.py", lambda t: [str(t / "one-run"), "--baseline", "5"], 2),
    Case(
        "compare: out is a file",
        "compare.py",
        lambda t: [str(t / "one-run"), "--out", str(t / "a-file")],
        2,
        keep=lambda t: [t / "a-file"],
    ),
    Case("compare: deep JSON only", "compare.py", lambda t: [str(t / "hostile-metrics")], 2),
    Case("compare: no such dir", "compare.py", lambda t: [str(t / "nowhere")], 2),
]


def run_case(case, tmp: Path) -> tuple[int, str, float, str]:
    """(exit code, stdout + stderr, seconds, peak MiB) of one case; a signal case is sent its
    signal at its moment, and waited for until every process of its run is gone."""
    command = (
        [sys.executable, "-m"] if case.script == "-m" else [sys.executable, str(ROOT / case.script)]
    )
    command = ["/usr/bin/time", "-f", "%M", *command, *case.args(tmp)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **getattr(case, "env", {})}
    start = time.perf_counter()
    log = tmp / f"case-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
        at = getattr(case, "signal_at", None)
        if at is not None:
            delay, target, signum = at
            time.sleep(delay)
            pid = _target(proc.pid, target)
            if pid is not None:
                os.kill(pid, signum)
        try:
            proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _wait_for_group(proc.pid)
        _wait_for_ranks(tmp)
    seconds = time.perf_counter() - start
    *lines, peak = log.read_text(errors="replace").rstrip("\n").split("\n") or [""]
    code = proc.returncode
    for line in lines[-2:]:  # /usr/bin/time's own lines, before its figure
        if line.startswith("Command terminated by signal"):
            code = -int(line.split()[-1])
    lines = [line for line in lines if not line.startswith(("Command exited", "Command term"))]
    mib = str(int(peak) // 1024) if peak.isdigit() else "?"
    return code, "\n".join(lines), seconds, mib


def _target(launcher: int, target: str) -> int | None:
    """The pid of /usr/bin/time's child (the launcher) or of one of its ranks."""
    children = _children(launcher)
    if not children:
        return None
    main = children[0]
    if target == "launcher":
        return main
    rank = target.removeprefix("rank")
    for pid in _children(main):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return main if rank == "0" else None


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def _wait_for_group(pgid: int, timeout: float = 120) -> None:
    """Ranks may outlive their launcher for a moment: the run is over when its group is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode != 0:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)


def _wait_for_ranks(tmp: Path, timeout: float = 120) -> None:
    """torch's elastic agent starts each rank in a session of its own, outside the launcher's
    group: a rank still saving after its launcher died is found by its command line (every path
    a case names is under tmp), and the record is read once it is gone."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-f", str(tmp)], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            subprocess.run(["pkill", "-9", "-f", str(tmp)])
            return
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="draws the generated cases")
    parser.add_argument("--only", default="", help="classes to run, e.g. ABF (R: rounds 1-2)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="adversarial-"))
    setup(tmp)
    cases = [("R", c) for c in CASES] + [(g.klass, g) for g in generated(args.seed, tmp)]
    cases = [(k, c) for k, c in cases if not args.only or k in args.only]
    rows, fails, tracebacks, per_class = [], 0, 0, {}
    for klass, case in cases:
        kept = case.keep(tmp)
        before = digests(kept)
        code, out, seconds, mib = run_case(case, tmp)
        lines = out.split("\n")
        errors = [line for line in lines if line.startswith("error:")]
        traceback = "Traceback" in out
        intact = digests(kept) == before
        if isinstance(case, Generated):
            why = case.ok(code, out, tmp) if case.ok else None
            want = "oracle"
        else:
            why = None if code == case.expect and len(errors) >= 1 else f"exit {code}"
            want = str(case.expect)
        torchrun = case.script == "-m" and "ChildFailedError" in out  # torchrun's own summary
        traceback = traceback and not torchrun
        why = why or ("a traceback" if traceback else None) or (None if intact else "files changed")
        ok = why is None
        fails += not ok
        tracebacks += traceback
        done, total = per_class.get(klass, (0, 0))
        per_class[klass] = (done + ok, total + 1)
        message = errors[0][:110] if errors else (lines[-1][:110] if lines else "")
        rows.append(
            f"| {klass} | {case.name[:70]} | `{case.script}` | {code} ({want}) | "
            f"{'yes' if traceback else 'no'} | {'yes' if intact else 'NO'} | {mib} | "
            f"{seconds:.1f} | {'ok' if ok else 'FAIL: ' + why} | {message.replace('|', '/')} |"
        )
        print(rows[-1], flush=True)
    print(
        "\n| class | case | script | exit (want) | traceback | earlier files intact | peak MiB | s "
        "| verdict | first error line |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    summary = ", ".join(f"{k} {d}/{t}" for k, (d, t) in sorted(per_class.items()))
    payload = "YES" if (tmp / "payload-ran").exists() else "no"
    print(
        f"\n{len(cases)} cases (seed {args.seed}), {len(cases) - fails} as promised, {fails} "
        f"not, {tracebacks} with a traceback; by class: {summary}; payload ran: {payload}"
    )
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
