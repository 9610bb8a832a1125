"""Optuna searches through `train.py -m`, for real: trials of the tiny data, two workers at once
on SQLite and on a throwaway PostgreSQL server, pruning, a worker killed and started again, and
every bad setting refused before a trial starts or the database changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from helpers.data import ROOT
from helpers.runs import run_train, start_script
from optuna.trial import TrialState

from mnist_cnn.commands import hydra_override

pytestmark = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _search(data_dir: Path, sweep_dir: Path, storage: str | None, *extra: str) -> list[str]:
    """A tiny search's command line: 1 epoch of the tiny digits per trial, no dashboards."""
    args = [
        "-m",
        "hydra/sweeper=optuna",  # the sweeper defaults, then this search space
        f"data.data_dir={data_dir}",
        "trainer.max_epochs=1",
        "data.batch_size=32",
        "callbacks=minimal",
        "hydra.sweeper.study_name=tiny",
        "+hydra.sweeper.params.optimizer.lr='tag(log, interval(0.0003, 0.003))'",
        "hydra.sweeper.pruner=null",
        hydra_override("hydra.sweep.dir", str(sweep_dir)),
        *extra,
    ]
    if storage is not None:
        args.append(hydra_override("hydra.sweeper.storage", storage))
    return args


def _popen(args: list[str], log: Path):
    with log.open("w") as out:
        return start_script(
            "train.py", *args, stdout=out, env={"PYTHONUNBUFFERED": "1"}, start_new_session=True
        )


def _trials(storage: str, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _run_dirs(*sweep_dirs: Path) -> dict[int, Path]:
    """trial number -> its run dir, over every worker's sweep dir (each number once)."""
    found: dict[int, Path] = {}
    for sweep in sweep_dirs:
        for d in sweep.glob("tiny-trial-*"):
            number = int(d.name.rsplit("-", 1)[1])
            assert number not in found, f"trial {number} ran twice: {found[number]} and {d}"
            found[number] = d
    return found


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


SEEDED = "hydra.sweeper.sampler.seed=7"  # one seed for both workers: still no repeated draws


def _two_workers(data_dir: Path, tmp: Path, storage: str, n_trials: int = 4) -> list[Path]:
    sweeps = [tmp / "worker0", tmp / "worker1"]
    procs = [
        _popen(
            _search(data_dir, s, storage, f"hydra.sweeper.n_trials={n_trials}", SEEDED),
            tmp / f"{k}.log",
        )
        for k, s in enumerate(sweeps)
    ]
    for k, proc in enumerate(procs):
        assert proc.wait(timeout=600) == 0, (tmp / f"{k}.log").read_text()[-3000:]
    return sweeps


def _check_shared_study(storage: str, sweeps: list[Path], n_trials: int) -> None:
    trials = _trials(storage)
    assert sorted(t.number for t in trials) == list(range(n_trials))  # never the same trial twice
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    lrs = [t.params["optimizer.lr"] for t in trials]
    assert len(set(lrs)) == n_trials, f"workers repeated a draw: {lrs}"
    dirs = _run_dirs(*sweeps)
    assert sorted(dirs) == list(range(n_trials))
    assert all(len(list(s.glob("tiny-trial-*"))) >= 1 for s in sweeps), "one worker did all"
    for t in trials:
        m = _metrics(dirs[t.number])
        assert m["status"] == "completed" and m["val/acc"] == pytest.approx(t.value)
        assert m["optuna"]["trial"] == t.number and m["optuna"]["state"] == "complete"
        assert m["optuna"]["params"] == t.params and "***" not in m["optuna"]["study"]
    best = max(trials, key=lambda t: t.value)
    for sweep in sweeps:  # each worker writes what it knows at its end: the study's best so far
        written = (sweep / "best.yaml").read_text()
        assert "best_value:" in written and "best_params:" in written
        assert (sweep / "optuna_history.png").stat().st_size > 1000
    last = max(sweeps, key=lambda s: (s / "best.yaml").stat().st_mtime)
    assert f"best_trial: {best.number}" in (last / "best.yaml").read_text()
    assert str(dirs[best.number]) in (last / "best.yaml").read_text()


def test_two_workers_share_one_sqlite_study(tiny_data_dir, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweeps = _two_workers(tiny_data_dir, tmp_path, storage)
    _check_shared_study(storage, sweeps, 4)
    # compare.py reads a study's runs: one group per trial's lr, no failure
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), *map(str, sweeps)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "optimizer.lr=" in proc.stdout and "Excluded" not in proc.stdout


@pytest.fixture
def postgres():
    """A real PostgreSQL server in a throwaway cluster on a loopback port, stopped afterwards."""
    script = ROOT / "scripts" / "postgres.sh"
    cluster = Path(tempfile.mkdtemp(prefix="mnist-pg-"))
    cluster.chmod(0o755)  # the server's own user must reach its directory
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = subprocess.run(
        ["bash", str(script), "start", str(cluster / "db"), str(port)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert start.returncode == 0, f"PostgreSQL did not start: {start.stderr[-3000:]}"
    try:
        yield start.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(script), "stop", str(cluster / "db")], timeout=120)
        shutil.rmtree(cluster, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(tiny_data_dir, tmp_path, postgres):
    sweeps = _two_workers(tiny_data_dir, tmp_path, postgres)
    _check_shared_study(postgres, sweeps, 4)


def _pruning_search(data_dir: Path, tmp: Path, n_trials: int, lrs: str, *extra: str):
    """A search of `n_trials` two-epoch trials over optimizer.lr=choice(lrs), pruned below
    val/acc 0.5 (lr 1e-7 learns nothing in two epochs: val/acc stays near chance)."""
    storage = f"sqlite:///{tmp / 'study.db'}"
    sweep = tmp / "sweep"
    # a budget plans the epochs itself: trainer.max_epochs beside it is refused
    budget = any(e.startswith("budget_seconds=") for e in extra)
    epochs = [] if budget else ["trainer.max_epochs=2"]
    search = _search(data_dir, sweep, storage, f"hydra.sweeper.n_trials={n_trials}")
    proc = run_train(
        *[a for a in search if not (budget and a.startswith("trainer.max_epochs="))],
        *epochs,
        f"hydra.sweeper.params.optimizer.lr='choice({lrs})'",
        "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.5}",
        *extra,
        timeout=600,
    )
    return proc, storage, sweep


def test_a_bad_region_is_pruned_and_listed_apart(tiny_data_dir, tmp_path):
    proc, storage, sweep = _pruning_search(
        tiny_data_dir, tmp_path, 6, "0.003, 0.0000001",
        "hydra.sweeper.sampler={_target_:optuna.samplers.RandomSampler,seed:0}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(storage)
    dirs = _run_dirs(sweep)
    bad = [t for t in trials if t.params["optimizer.lr"] < 1e-6]
    good = [t for t in trials if t.params["optimizer.lr"] > 1e-6]
    assert bad and good, "the seeded sampler should draw both regions"
    for t in bad:
        assert t.state == TrialState.PRUNED
        m = _metrics(dirs[t.number])
        assert m["status"] == "pruned" and m["epoch"] == 1 and m["optuna"]["state"] == "pruned"
        assert "test/acc" not in m  # pruned trials are never tested
    assert all(t.state == TrialState.COMPLETE for t in good)
    out = proc.stdout + proc.stderr
    assert "Pruned by the search" in out and "Excluded" not in out
    assert f"best_value: {max(t.value for t in good)}" in (sweep / "best.yaml").read_text()


def test_a_search_whose_every_trial_was_pruned_ends_as_searches_do(tiny_data_dir, tmp_path):
    """Nothing completed, nothing failed: exit 0, the summary says every trial was pruned."""
    proc, storage, _ = _pruning_search(tiny_data_dir, tmp_path, 2, "0.0000001, 0.0000002")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert {t.state for t in _trials(storage)} == {TrialState.PRUNED}
    assert "every trial (2) was pruned by the search" in out and "no trial completed" in out


def test_a_trial_pruned_on_two_ranks_is_one_pruned_trial(tiny_data_dir, tmp_path):
    """Under DDP both ranks stop at the pruner's word: one PRUNED trial that counts toward the
    budget, no failure, no traceback, the search exits 0 and its summary lists it apart."""
    proc, storage, sweep = _pruning_search(
        tiny_data_dir, tmp_path, 2, "0.003, 0.0000001",
        "trainer.devices=2",
        "+trainer.limit_train_batches=0.5",  # a partial search: still compared, still exit 0
        "hydra.sweeper.sampler={_target_:optuna.samplers.RandomSampler,seed:1}",  # bad, good
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    trials = _trials(storage)
    assert len(trials) == 2, [t.state for t in trials]
    states = {t.number: t.state for t in trials}
    assert [states[0], states[1]] == [TrialState.PRUNED, TrialState.COMPLETE]  # one after the other
    dirs = _run_dirs(sweep)
    for t in trials:
        m = _metrics(dirs[t.number])
        want = "pruned" if t.state == TrialState.PRUNED else "completed"
        assert m["status"] == want and m["world_size"] == 2, m.get("error")
    assert "Traceback" not in out and "failed" not in out.lower()
    assert "pruned after epoch 1" in out and "Pruned by the search" in out
    assert "Runs on part of the data (trainer.limit_train_batches=0.5)" in out


def _wait_running(storage: str, log: Path, proc, timeout: float = 300) -> None:
    """Until the study has a RUNNING trial that has finished its first epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with _quiet_missing():
            running = any(t.state == TrialState.RUNNING for t in _trials(storage))
            if running and re.search(r"epoch 1/\d+:", log.read_text()):  # an epoch is done
                return
        time.sleep(0.5)
    raise AssertionError(f"no trial started training in {timeout} s: {log.read_text()[-3000:]}")


class _quiet_missing:
    """The study does not exist until the worker has created it; reading it meanwhile, this
    process may race the worker creating the database's tables (the same race the project's
    open_storage retries: an IntegrityError on the schema's version row, or a table that appeared
    meanwhile)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from sqlalchemy.exc import IntegrityError, OperationalError

        if kind is not None and issubclass(kind, OperationalError):  # "table ... already exists"
            return "already exists" in str(exc)
        return kind is not None and issubclass(kind, (KeyError, IntegrityError))


@pytest.mark.reliability("RD5")
@pytest.mark.parametrize("state", [TrialState.FAIL, TrialState.COMPLETE, TrialState.PRUNED])
def test_a_run_for_a_finished_trial_is_refused_naming_how_the_study_goes_on(tmp_path, state):
    """The interrupted trial's record used to carry a resume command; run, it trained the trial
    to its end and then died on optuna's UpdateFinishedTrialError (exit 1), the trial having been
    marked failed and its parameters queued again when the worker stopped."""
    from mnist_cnn.errors import UserError
    from mnist_cnn.search.trials import trial_params

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    with pytest.raises(
        UserError, match=rf"optuna.trial=0 of study 'tiny' has finished \({state.name}\)"
    ) as refused:
        trial_params(storage, "tiny", 0)
    assert f"hydra.sweeper.storage={storage}" in str(refused.value)
    assert trial_params(storage, "tiny", 1) == running.params  # a running trial is its own


@pytest.mark.reliability("SIG5")
def test_a_search_on_parallel_workers_stopped_by_kill_queues_its_trials_again(
    tiny_data_dir, tmp_path
):
    """`kill PID` reaches the launching process only: it relays the signal to its workers, each
    trial stops, and the study queues their parameters again (as a serial search's)."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = _search(tiny_data_dir, tmp_path / "sweep", storage, "hydra.sweeper.n_trials=4")
    args += ["hydra.sweeper.n_jobs=2", "hydra/launcher=parallel", "trainer.max_epochs=30"]
    log = tmp_path / "search.log"
    proc = _popen(args, log)
    _wait_running(storage, log, proc)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    said = log.read_text()
    assert "Traceback" not in said
    trials = _trials(storage)
    state = [t.state for t in trials]
    # the two trials of the batch: failed, their parameters queued again; none left RUNNING
    assert state.count(TrialState.FAIL) == 2 and state.count(TrialState.WAITING) == 2, state
    assert TrialState.RUNNING not in state and len(trials) == 4
    failed = sorted(t.number for t in trials if t.state == TrialState.FAIL)
    queued = sorted(t.user_attrs["requeued_from"] for t in trials if t.state == TrialState.WAITING)
    assert queued == failed
    listed = ", ".join(map(str, failed))
    assert f"SIGTERM received in trial(s) {listed} of the search; its parameters are queued" in said


@pytest.mark.reliability("RD3")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_worker_resumes_the_study(tiny_data_dir, tmp_path, sig):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    beat = ["hydra.sweeper.heartbeat_seconds=1", "hydra.sweeper.grace_seconds=3"]
    args = _search(tiny_data_dir, tmp_path / "first", storage, "hydra.sweeper.n_trials=3", *beat)
    # the first worker's trials long enough (a tiny epoch is 0.1 s) that one is caught running
    args += ["trainer.max_epochs=30"]
    log = tmp_path / "first.log"
    proc = _popen(args, log)
    _wait_running(storage, log, proc)
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=120)
    assert code == (-9 if sig == signal.SIGKILL else 143), log.read_text()[-3000:]
    before = {t.number: (t.state, t.params) for t in _trials(storage)}
    killed = [n for n, (state, _) in before.items() if state == TrialState.RUNNING]
    if sig == signal.SIGTERM:  # marked at once: failed, its parameters queued again
        assert not killed
        failed = [n for n, (state, _) in before.items() if state == TrialState.FAIL]
        assert len(failed) == 1
        (killed_number,) = failed
        # the worker and the trial's record say the study goes on, not the trial
        said = log.read_text()
        assert f"in trial {killed_number} of the search; its parameters are queued again" in said
        records = [json.loads(p.read_text()) for p in (tmp_path / "first").glob("*/metrics.json")]
        (stopped,) = [r for r in records if r["optuna"]["trial"] == killed_number]
        assert "resume_command" not in stopped and stopped["optuna"]["state"] == "fail"
        assert f"hydra.sweeper.storage={storage}" in stopped["error"], stopped["error"]
    else:  # SIGKILL: left RUNNING; the next worker, started at once, waits out its grace
        (killed_number,) = killed
    done_before = {n for n, (state, _) in before.items() if state == TrialState.COMPLETE}

    # SIGKILL: the study's last slot is the killed trial's, so the worker restarted at once
    # has nothing else to run first: it must wait out the grace period, say so, and rerun it
    n_again = 3 if sig == signal.SIGTERM else len(before)
    again = _search(
        tiny_data_dir, tmp_path / "second", storage, f"hydra.sweeper.n_trials={n_again}", *beat
    )
    proc = run_train(*again, "trainer.max_epochs=3", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if sig == signal.SIGKILL:  # it said why it waited, and for how long at most
        assert f"running elsewhere (trial {killed_number}); waiting" in proc.stdout, proc.stdout
        assert "failed 3 s after its last heartbeat" in proc.stdout
    assert "no trial completed" not in proc.stdout
    trials = _trials(storage)
    numbers = [t.number for t in trials]
    queued = [n for n, (state, _) in before.items() if state == TrialState.WAITING]
    assert len(queued) == (1 if sig == signal.SIGTERM else 0)  # SIGTERM: re-queued at once
    # trial numbers never reused: the old ones, then one new number per trial still to run
    expected = len(before) - len(queued) + n_again - len(done_before)
    assert len(numbers) == len(set(numbers)) == expected
    state = {t.number: t.state for t in trials}
    assert state[killed_number] == TrialState.FAIL
    assert sum(s == TrialState.COMPLETE for s in state.values()) == n_again
    # completed trials are not rerun: the second worker ran only new numbers
    assert not done_before & {
        int(d.name.rsplit("-", 1)[1]) for d in (tmp_path / "second").glob("tiny-*")
    }
    # the interrupted trial's parameters ran again under a new number
    rerun = [t for t in trials if t.number > killed_number and t.params == before[killed_number][1]]
    assert rerun and rerun[0].state == TrialState.COMPLETE


BAD = {
    "unparsable storage": (["hydra.sweeper.storage=nosuchdb://x"], "hydra.sweeper.storage"),
    "unreachable server": (
        ["hydra.sweeper.storage='postgresql+psycopg://u@127.0.0.1:1/x'"],
        "cannot be opened",
    ),
    "empty range": (
        ["hydra.sweeper.params.optimizer.lr='interval(0.1, 0.1)'"],
        "empty range",
    ),
    "misspelled parameter": (
        ["+hydra.sweeper.params.optimizer.lrr='interval(0.001, 0.01)'"],
        "did you mean optimizer.lr",
    ),
    "no trials": (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0"),
    "other direction": (["hydra.sweeper.direction=minimize"], "to maximize, not to minimize"),
    "other space": (
        ["hydra.sweeper.params.optimizer.lr='interval(0.001, 0.01)'"],
        "another search space",
    ),
}


@pytest.fixture(scope="module")
def first_workers_study(tiny_data_dir, tmp_path_factory) -> Path:
    """An existing study (maximize, lr on a log scale), as a first worker left it: one search
    of one trial, copied by each test that needs it."""
    root = tmp_path_factory.mktemp("first-worker")
    storage = f"sqlite:///{root / 'study.db'}"
    first = run_train(*_search(tiny_data_dir, root / "first", storage, "hydra.sweeper.n_trials=1"))
    assert first.returncode == 0, first.stderr[-3000:]
    return root / "study.db"


@pytest.mark.parametrize("case", list(BAD))
def test_bad_search_settings_are_refused_before_anything_runs(
    tiny_data_dir, tmp_path, first_workers_study, case
):
    db = tmp_path / "study.db"
    shutil.copyfile(first_workers_study, db)
    storage = f"sqlite:///{db}"
    before = db.read_bytes()
    overrides, expected = BAD[case]
    sweep = tmp_path / "second"
    proc = run_train(*_search(tiny_data_dir, sweep, storage), *overrides, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert db.read_bytes() == before  # the database is as it was
    assert not list(sweep.glob("tiny-trial-*"))  # no trial started


def test_a_search_whose_every_trial_fails_ends_after_n_trials(tiny_data_dir, tmp_path):
    """A trial whose run fails is an outcome and counts toward n_trials (a killed worker's trial,
    queued again, does not). Before, the worker asked for another trial after each failure:
    a budget beside the search's trainer.max_epochs, refused in every trial, made 3,360 trial
    dirs in nine minutes. Now: n_trials failures, each naming its error, then exit 1."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = tmp_path / "sweep"
    proc = run_train(
        *_search(tiny_data_dir, sweep, storage, "hydra.sweeper.n_trials=3"), "budget_seconds=3",
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    trials = _trials(storage)
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert all(t.user_attrs.get("run_failed") for t in trials)
    dirs = _run_dirs(sweep)
    assert sorted(dirs) == [0, 1, 2]
    for d in dirs.values():
        m = _metrics(d)
        assert m["status"] == "failed" and "gives trainer.max_epochs=1 too" in m["error"]
    assert "Study tiny: no trial completed" in proc.stdout and "Traceback" not in proc.stderr


def test_the_lock_holds_a_current_optuna():
    lock = (ROOT / "uv.lock").read_text()
    version = re.search(r'name = "optuna"\nversion = "(\d+)\.', lock)
    assert version and int(version.group(1)) >= 4, "uv.lock must hold Optuna 4 or newer"
    assert 'name = "hydra-optuna-sweeper"' not in lock  # it caps Optuna below 3


@pytest.mark.parametrize(
    "plan",
    [
        "budget_seconds=3",
        "fastest_of={light:{model.conv1_channels:4,trainer.limit_train_batches:0.5},"
        "heavy:{model.conv1_channels:96}}",
    ],
    ids=["budget", "fastest_of"],
)
def test_trials_that_plan_from_the_machine_report_only_their_own_epochs(
    tiny_data_dir, tmp_path, plan
):
    """Each trial plans before it trains (a budget: its epochs; fastest_of: its candidate, measured
    once for the search); the probes report nothing to the study, so a trial is pruned at its own
    epoch 1 and a completed trial's intermediate values are its epochs, one each."""
    proc, storage, sweep = _pruning_search(
        tiny_data_dir, tmp_path, 2, "0.003, 0.0000001", plan,
        hydra_override("paths.cache_dir", str(tmp_path / "cache")),
        "hydra.sweeper.sampler={_target_:optuna.samplers.RandomSampler,seed:1}",  # bad, good
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    trials = _trials(storage)
    dirs = _run_dirs(sweep)
    assert sorted(t.state for t in trials) == sorted([TrialState.PRUNED, TrialState.COMPLETE])
    for t in trials:
        m = _metrics(dirs[t.number])
        assert m["plan"], m.get("error")
        if t.state == TrialState.PRUNED:
            assert (
                m["status"] == "pruned" and m["epoch"] == 1 and list(t.intermediate_values) == [0]
            )
        else:
            assert m["status"] == "completed" and m["val/acc"] == pytest.approx(t.value)
            assert sorted(t.intermediate_values) == list(range(m["epochs"]))
    if plan.startswith("budget"):
        assert all(_metrics(d)["plan"]["epochs"] >= 1 for d in dirs.values())
    else:  # measured by the first trial, read by the others
        first, *rest = (_metrics(dirs[n])["plan"] for n in sorted(dirs))
        assert {c["measured"] for c in first["fastest_of"].values()} == {"now"}
        assert all(
            c["measured"].startswith("cached") for p in rest for c in p["fastest_of"].values()
        )
        assert {p["chosen"] for p in (first, *rest)} == {"light"}
