"""Generated hostile cases, one family per class of issue 26 (A-G) and resumes (H), drawn
from a seed.

Each case is judged by an oracle, not by a listed answer: a value is either refused naming its
setting (exit 2, one `error:` line, no traceback) or works (exit 0, a completed record); a
signal ends a run as an interruption or not at all, never as a traceback or a `running` record;
every file a run writes stays inside its run dir. `python scripts/adversarial_pass.py --seed N`
draws another set of the same families.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.data import REAL_DATA, write_mnist  # noqa: E402

from mnist_cnn.commands import hydra_override as q  # noqa: E402

SHORT = (
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "callbacks=minimal",
    "model=mlp",
)


@dataclass
class Case:
    """One hostile input. `ok(code, out, tmp)` returns None when the behaviour is right, else
    what is wrong; `refused_or_works` is the default oracle."""

    klass: str
    name: str
    script: str
    args: Callable[[Path], list[str]]
    ok: Callable[[int, str, Path], str | None] | None = None
    keep: Callable[[Path], list[Path]] = lambda tmp: []  # files that must stay byte-identical
    signal_at: tuple[float, str, int] | None = None  # (seconds, "launcher"|"rank0"|"rank1", sig)
    env: dict[str, str] = field(default_factory=dict)
    run_dir: Callable[[Path], Path] | None = None  # where its record is, for the oracles


def refused(setting: str) -> Callable[[int, str, Path], str | None]:
    """Exit 2, one error line naming `setting`."""

    def check(code: int, out: str, tmp: Path) -> str | None:
        hydra = ("Error merging override", "Could not override", "Could not append")
        if code == 1 and any(f"{h} ++{setting}" in out or f"{h} {setting}" in out for h in hydra):
            return None  # Hydra's own composition error, naming the override (row C1)
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        if code != 2 or not errors:
            return f"exit {code}, {len(errors)} error lines (want 2 and one naming {setting})"
        parent = setting.rsplit(".", 1)[0]  # a callback's setting: the callback is named
        if setting not in errors[0] and f"{parent} has settings but no _target_" not in errors[0]:
            return f"the error does not name {setting}"
        return None

    return check


def refused_or_works(setting: str, run_dir: Callable[[Path], Path]):
    """Refused naming the setting, or a run that completes."""

    def check(code: int, out: str, tmp: Path) -> str | None:
        if code == 0:
            status = _status(run_dir(tmp))
            return None if status == "completed" else f"exit 0 but the record says {status}"
        if code == 3:  # a value that trains, into a divergence: stopped and named (TRN1)
            status = _status(run_dir(tmp))
            said = "error: training diverged" in out
            return None if said and status == "diverged" else f"exit 3, record {status}"
        return refused(setting)(code, out, tmp)

    return check


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def _yaml(value) -> str:
    """A value as Hydra's override grammar reads it."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and abs(value) == float("inf"):
        return "inf" if value > 0 else "-inf"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


HOSTILE = [
    0,
    -1,
    -7,
    0.0,
    0.5,
    -0.25,
    1.5,
    1e9,
    float("nan"),
    float("inf"),
    "x",
    "",
    True,
    False,
    None,
    [],
    [0],
    {},
]
# set by the project for every run (a user's value would be ignored or double-passed)
PROJECT_SET = ("logger", "callbacks", "plugins", "default_root_dir")


def class_a(rng: random.Random) -> list[Case]:
    """Every Trainer argument and every checked setting, a hostile value each (two for the
    Trainer's): refused naming it, or a run that completes."""
    from mnist_cnn.config import PRECISIONS, RULES
    from mnist_cnn.trainer_args import TRAINER_ARGS

    cases = []
    names = [f"trainer.{n}" for n in TRAINER_ARGS if n not in ("max_epochs",)]
    names += [k for k in RULES if not k.startswith("trainer.")]
    for key in names:
        for value in rng.sample(HOSTILE, 2 if key.startswith("trainer.") else 1):
            label = f"{key}={_yaml(value)}"
            run = f"a-{len(cases)}"
            override = f"++{key}={_yaml(value)}"
            cases.append(
                Case(
                    "A",
                    label,
                    "train.py",
                    lambda t, o=override, r=run: [
                        *_tiny(t),
                        *SHORT,
                        o,
                        q("hydra.run.dir", str(t / "runs" / r)),
                    ],
                    ok=refused_or_works(key, lambda t, r=run: t / "runs" / r),
                )
            )
    for precision in [p for p in PRECISIONS if p != "auto"]:
        run = f"p-{precision}"
        for optimizer in ("adam", "sgd"):
            cases.append(
                Case(
                    "A",
                    f"precision {precision} with {optimizer}",
                    "train.py",
                    lambda t, p=precision, o=optimizer, r=run: [
                        *_tiny(t),
                        *SHORT,
                        f"trainer.precision={p}",
                        f"optimizer={o}",
                        q("hydra.run.dir", str(t / "runs" / f"{r}-{o}")),
                    ],
                    ok=refused_or_works(
                        "trainer.precision", lambda t, r=run, o=optimizer: t / "runs" / f"{r}-{o}"
                    ),
                )
            )
    return cases


def _tiny(tmp: Path) -> list[str]:
    return [q("data.data_dir", str(tmp / "data"))]


ROLES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def class_b(rng: random.Random, tmp: Path) -> list[Case]:
    """Files of every role swapped, truncated or emptied; databases and records that are not
    what they claim."""
    cases = []
    for i, role in enumerate(ROLES):
        for harm in ("truncate", "empty", "other kind", "same kind of the other split"):
            data = tmp / f"b-data-{i}-{harm.replace(' ', '-')}"
            write_mnist(data)
            raw = data / "MNIST" / "raw"
            target = raw / role
            if harm == "truncate":
                body = target.read_bytes()
                target.write_bytes(body[: rng.randrange(1, len(body) - 1)])
            elif harm == "empty":
                target.write_bytes(b"")
            elif harm == "other kind":  # images <-> labels of the same split
                other = role.replace("images-idx3", "X").replace("labels-idx1", "images-idx3")
                other = other.replace("X", "labels-idx1")
                shutil.copy(raw / other, target)
            else:  # this split's images are the other split's: counts no longer match
                if "labels" in role:
                    continue
                other = role.replace("train", "T").replace("t10k", "train").replace("T", "t10k")
                shutil.copy(raw / other, target)
            cases.append(
                Case(
                    "B",
                    f"{role}: {harm}",
                    "train.py",
                    lambda t, d=data: [q("data.data_dir", str(d)), *SHORT],
                    ok=refused(role),
                    keep=lambda t, d=data: [d],
                )
            )
    if (REAL_DATA / "MNIST" / "raw").is_dir():
        for i in range(3):
            a, b = rng.sample(ROLES, 2)
            if ("images" in a) != ("images" in b):
                b = a.replace("train", "T").replace("t10k", "train").replace("T", "t10k")
            data = tmp / f"b-real-{i}"
            raw = data / "MNIST" / "raw"
            raw.mkdir(parents=True)
            for role in ROLES:
                real = {a: b, b: a}.get(role, role)
                (raw / role).symlink_to(REAL_DATA / "MNIST" / "raw" / real)
            cases.append(
                Case(
                    "B",
                    f"real {a} and {b} trade places",
                    "train.py",
                    lambda t, d=data: [q("data.data_dir", str(d)), *SHORT],
                    ok=refused("holds MNIST's"),
                )
            )
    for i in range(3):
        db = tmp / f"b-foreign-{i}.db"
        with sqlite3.connect(db) as conn:
            for _ in range(rng.randint(1, 4)):
                name = "".join(rng.choices("abcdefxyz_", k=rng.randint(3, 10)))
                conn.execute(f'CREATE TABLE IF NOT EXISTS "{name}" (v TEXT)')
        cases.append(
            _search_case(
                "B",
                f"study in another program's SQLite ({i})",
                f"sqlite:///{db}",
                refused("another program"),
                keep=[db],
            )
        )
    for url in ("sqlite://", "sqlite:///:memory:"):
        cases.append(_search_case("B", f"study in memory: {url}", url, refused("in one process")))
    noise = tmp / "b-noise.db"
    noise.write_bytes(rng.randbytes(4096))
    cases.append(
        _search_case(
            "B",
            "study in a file of noise",
            f"sqlite:///{noise}",
            refused("cannot be opened"),
            keep=[noise],
        )
    )
    for i in range(3):
        runs = tmp / f"b-metrics-{i}"
        name = rng.choice(["test/acc", "val/acc", "test/loss"])
        value = rng.choice([rng.uniform(1.01, 200), -rng.uniform(0.01, 3)])
        for seed in (1, 2, 3):
            _metrics(runs / f"s{seed}", seed, {"test/acc": 0.98 + seed / 1000})
        _metrics(runs / "bad", 4, {name: value if "acc" in name else -abs(value)})
        cases.append(
            Case(
                "B",
                f"metrics.json {name} out of range ({i})",
                "compare.py",
                lambda t, r=runs: [str(r), "--out", str(r / "report")],
                ok=lambda code, out, t: (
                    None
                    if code == 0 and "is outside [" in out
                    else f"exit {code}; the bad run not named as out of range"
                ),
            )
        )
    return cases


def _metrics(run: Path, seed: int, values: dict) -> None:
    run.mkdir(parents=True)
    record = {
        "status": "completed",
        "seed": seed,
        "test/acc": 0.98,
        "test/loss": 0.05,
        "val/acc": 0.98,
        "config": {"seed": seed, "data": {"dataset": "MNIST"}},
        **values,
    }
    (run / "metrics.json").write_text(json.dumps(record))


def _search_case(klass, name, storage, ok, keep=()) -> Case:
    return Case(
        klass,
        name,
        "train.py",
        lambda t: [
            "-m",
            "hydra/sweeper=optuna",
            *_tiny(t),
            *SHORT,
            "+hydra.sweeper.params.optimizer.lr='tag(log, interval(0.0003, 0.003))'",
            q("hydra.sweeper.storage", storage),
            q("hydra.sweep.dir", str(t / "sweeps" / name.replace(" ", "-"))),
        ],
        ok=ok,
        keep=lambda t: list(keep),
    )


ALPHABET = " $~{}[],='\"%\\:*?#&;|<>!`@^()+"


def class_c(rng: random.Random) -> list[Case]:
    """Run dirs named from a hostile alphabet, through every writer of a run. A literal `${` is
    refused up front (Hydra reads a run dir's name back as config)."""
    cases = []
    for i in range(4):
        name = "".join(rng.choices(ALPHABET + "ab", k=rng.randint(4, 12))).replace("/", "")
        name = f"c{i}-{name}"
        if rng.random() < 0.5:
            name = f"${{HOME}}{name}" if i % 2 else f"~{name}$PATH"
        where = lambda t, i=i, n=name: t / "c" / str(i) / n  # noqa: E731
        ok = refused("hydra.run.dir") if "${" in name else _inside(where)
        cases.append(
            Case(
                "C", f"run dir {name!r}", "train.py",
                lambda t, w=where: [*_tiny(t), *SHORT, "callbacks=default", "model=simple_cnn",
                                    q("hydra.run.dir", str(w(t)))],
                ok=ok,
            )
        )  # fmt: skip
    return cases


def _inside(run_dir: Callable[[Path], Path]):
    """Completed, with its events and figures under its own dir and nothing beside it."""

    def check(code: int, out: str, tmp: Path) -> str | None:
        d = run_dir(tmp)
        if code != 0 or _status(d) != "completed":
            return f"exit {code}, record {_status(d)}"
        if not list((d / "tensorboard").rglob("events.out.tfevents.*")):
            return "no event file inside the run dir"
        stray = [p.name for p in d.parent.iterdir() if p != d]
        return f"written beside the run dir: {stray}" if stray else None

    return check


def class_d(rng: random.Random) -> list[Case]:
    """Signals to every process of a run at a random moment."""
    cases = []
    long = ["trainer.max_epochs=30", "callbacks=minimal", "model=mlp", "data.batch_size=32"]
    for target, sig, devices in (
        ("launcher", signal.SIGINT, 1),
        ("launcher", signal.SIGTERM, 1),
        ("launcher", signal.SIGHUP, 1),
        ("launcher", signal.SIGTERM, 2),
        ("rank0", signal.SIGTERM, 2),
        ("rank1", signal.SIGTERM, 2),
        ("rank1", signal.SIGINT, 2),
        ("launcher", signal.SIGKILL, 2),
    ):
        delay = round(rng.uniform(4.0, 9.0), 1)
        run = f"d-{target}-{sig.name}-{devices}"
        cases.append(
            Case(
                "D",
                f"{sig.name} to the {target} ({devices} rank{'s' * (devices > 1)}) at {delay} s",
                "train.py",
                lambda t, r=run, n=devices: [
                    *_tiny(t),
                    *long,
                    f"trainer.devices={n}",
                    q("hydra.run.dir", str(t / "runs" / r)),
                ],
                ok=_stopped(lambda t, r=run: t / "runs" / r, sig),
                signal_at=(delay, target, sig),
            )
        )
    return cases


def _stopped(run_dir: Callable[[Path], Path], sig: int):
    def check(code: int, out: str, tmp: Path) -> str | None:
        status = _status(run_dir(tmp))
        if status == "running":
            return "the record still says running"
        if sig == signal.SIGKILL:  # the launcher died at once; its ranks must stop cleanly
            return None if status in ("interrupted", "completed") else f"record {status}"
        if code not in (0, 128 + sig):
            return f"exit {code} (want {128 + sig}, or 0 had it finished)"
        want = "completed" if code == 0 else "interrupted"
        return None if status == want else f"record {status} (want {want})"

    return check


def class_e(rng: random.Random, tmp: Path) -> list[Case]:
    """Library edges: a read-only study, data dirs that are link loops, launcher mismatches."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cases = []
    study = tmp / "e-study.db"
    optuna.create_study(study_name="search", storage=f"sqlite:///{study}")
    cases.append(
        _search_case(
            "E",
            "a read-only study (mode=ro)",
            f"sqlite:///file:{study}?mode=ro&uri=true",
            refused("read-only"),
            keep=[study],
        )
    )
    loop = tmp / "e-loop"
    loop.symlink_to(loop)
    nowhere = tmp / "e-nowhere"
    nowhere.symlink_to(tmp / "no-such-dir")
    raw_loop = tmp / "e-raw-loop" / "MNIST"
    raw_loop.mkdir(parents=True)
    (raw_loop / "raw").symlink_to(raw_loop / "raw")
    for name, path in (
        ("a link loop", loop),
        ("a link to nothing", nowhere),
        ("raw linking to itself", tmp / "e-raw-loop"),
    ):
        for script in ("train.py", "eval.py"):
            extra = [q("ckpt_path", str(tmp / "good.ckpt"))] if script == "eval.py" else []
            cases.append(
                Case(
                    "E",
                    f"{script}: data dir {name}",
                    script,
                    lambda t, p=path, e=extra: [q("data.data_dir", str(p)), *e],
                    ok=refused("data"),
                )
            )
    for nodes in (2, 3):
        cases.append(
            Case(
                "E",
                f"torchrun --nnodes=1 with trainer.num_nodes={nodes}",
                "-m",
                lambda t, n=nodes: [
                    "torch.distributed.run",
                    "--nnodes=1",
                    "--nproc-per-node=1",
                    str(ROOT / "train.py"),
                    *_tiny(t),
                    *SHORT,
                    f"trainer.num_nodes={n}",
                ],
                ok=_torchrun_refused,
            )
        )
    return cases


def _torchrun_refused(code: int, out: str, tmp: Path) -> str | None:
    """torchrun's own exit code and failure summary are torchrun's: the rank says one line
    naming the settings and exits 2, which the summary reports."""
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    if not errors or "trainer.num_nodes" not in errors[0]:
        return "no error line naming trainer.num_nodes"
    return None if "exitcode  : 2" in out else "the rank did not exit 2"


def class_f(rng: random.Random, tmp: Path) -> list[Case]:
    """Identity by content: one network under two names; runs on two datasets compared."""
    cases = []
    good = tmp / "good.ckpt"
    link = tmp / "f-link.ckpt"
    link.symlink_to(good)
    copy = tmp / "f-copy.ckpt"
    shutil.copy(good, copy)
    for name, members in (
        ("a checkpoint and a link to it", [good, link]),
        ("a checkpoint and a copy of it", [copy, good]),
    ):
        listed = "[" + ",".join(f"'{m}'" for m in members) + "]"
        cases.append(
            Case(
                "F",
                f"ensemble of {name}",
                "eval.py",
                lambda t, m=listed: [f"ckpt_path={m}", *_tiny(t)],
                ok=refused("same network weights"),
            )
        )
    runs = tmp / "f-datasets"
    for dataset, base in (("MNIST", 0.99), ("FashionMNIST", 0.91)):
        for seed in (1, 2, 3):
            _metrics(
                runs / f"{dataset}-{seed}",
                seed,
                {
                    "test/acc": base + rng.uniform(-0.003, 0.003),
                    "config": {"seed": seed, "data": {"dataset": dataset}},
                },
            )
    cases.append(
        Case(
            "F",
            "compare MNIST with Fashion-MNIST runs",
            "compare.py",
            lambda t: [str(runs), "--out", str(runs / "report")],
            ok=lambda code, out, t: (
                None
                if code == 0 and "different datasets" in out
                else f"exit {code}; no word that the datasets differ"
            ),
        )
    )
    return cases


def class_g(rng: random.Random, tmp: Path) -> list[Case]:
    """Bulk input: a folder of hundreds of PNGs with one bad file among them."""
    from PIL import Image

    folder = tmp / "g-pngs"
    folder.mkdir()
    n = rng.randint(300, 900)
    digit = Image.open(tmp / "digit.png")
    for i in range(n):
        digit.rotate(rng.uniform(-20, 20)).save(folder / f"{i:05d}.png")
    bad = folder / f"{rng.randrange(n):05d}.png"
    bad.write_bytes(b"not a png")
    return [
        Case(
            "G",
            f"predict.py on {n} PNGs, one bad",
            "predict.py",
            lambda t: [str(folder), "--ckpt", str(tmp / "good.ckpt")],
            ok=lambda code, out, t: (
                None
                if code == 2
                and out.count("error:") == 2
                and bad.name in out
                and out.count("%") >= 3 * (n - 1)
                else f"exit {code}; {out.count('error:')} error lines"
            ),
        )
    ]


def class_h(rng: random.Random, tmp: Path) -> list[Case]:
    """A resume with one setting of the run changed, drawn from every setting the checkpoint's
    config holds but those a run applies as it is: refused naming that setting, before the
    checkpoint is loaded (resumable.py)."""
    import torch
    from omegaconf import OmegaConf

    from mnist_cnn.resumable import compared_settings
    from mnist_cnn.train import compose_config

    recipe = ["experiment=bn_cnn", "data.folds=3", "data.fold=1"]
    cfg = compose_config([*_tiny(tmp), *recipe], tmp / "runs" / "h-stored")
    checkpoint = tmp / "h-resumable.ckpt"
    stored = OmegaConf.to_container(cfg, resolve=True)
    torch.save({"state_dict": {}, "hyper_parameters": stored, "epoch": 0, "global_step": 1},
               checkpoint)  # fmt: skip
    changed = {}
    for key, value, _ in compared_settings(cfg, cfg):
        if key.endswith("_target_") or key in ("data.seed", "fastest_of"):
            continue
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if isinstance(value, bool):
            changed[key] = not value
        elif isinstance(value, int):
            changed[key] = value + rng.randint(1, 3)
        elif isinstance(value, float):
            changed[key] = value * rng.choice([0.5, 2.0]) if value else 0.25
    cases = []
    for key in rng.sample(sorted(changed), min(8, len(changed))):
        run = f"h-{len(cases)}"
        override = f"++{key}={_yaml(changed[key])}"
        cases.append(
            Case(
                "H",
                f"resume with {key}={_yaml(changed[key])}",
                "train.py",
                lambda t, o=override, r=run: [
                    *_tiny(t),
                    *recipe,
                    o,
                    q("ckpt_path", str(checkpoint)),
                    q("hydra.run.dir", str(t / "runs" / r)),
                ],  # fmt: skip
                ok=refused(key),
                keep=lambda t: [checkpoint],
            )
        )
    return cases


def class_i(rng: random.Random, tmp: Path) -> list[Case]:
    """eval.py given a setting a test never reads, drawn from training's settings, or a
    callback that acts only while a run trains: refused naming it (it was accepted, unused)."""
    from mnist_cnn.callbacks.kinds import TRAINING_ONLY as CALLBACKS
    from mnist_cnn.preflight import TRAINING_ONLY

    good = tmp / "good.ckpt"
    cases = []
    for key in rng.sample(TRAINING_ONLY, 5):
        value = rng.choice([1, 3, 0.5]) if key.startswith("trainer.") else rng.choice([7, 64])
        if key == "data.augment":
            value = {"degrees": rng.choice([5, 10])}
        override = f"++{key}={_yaml(value)}"
        cases.append(Case(
            "I", f"eval.py {key}={_yaml(value)}", "eval.py",
            lambda t, o=override: [q("ckpt_path", str(good)), *_tiny(t), o],
            ok=refused(key), keep=lambda t: [good],
        ))  # fmt: skip
    name = rng.choice(sorted(CALLBACKS))
    target = f"lightning.pytorch.callbacks.{name}"
    cases.append(Case(
        "I", f"eval.py with Lightning's {name}", "eval.py",
        lambda t: [q("ckpt_path", str(good)), *_tiny(t), f"+callbacks.x._target_={target}"],
        ok=refused("callbacks.x"), keep=lambda t: [good],
    ))  # fmt: skip
    return cases


def generated(seed: int, tmp: Path) -> list[Case]:
    """Every family, drawn from one seed (setup() has written the shared inputs into tmp)."""
    rng = random.Random(seed)
    os.environ.setdefault("MNIST_LAB_FAST", "1")
    return [
        *class_a(rng),
        *class_b(rng, tmp),
        *class_c(rng),
        *class_d(rng),
        *class_e(rng, tmp),
        *class_f(rng, tmp),
        *class_g(rng, tmp),
        *class_h(rng, tmp),
        *class_i(rng, tmp),
    ]
