"""The suite's forked starts (helpers/zygote.py) behave as `python SCRIPT ARGS` does: each case is
run both ways and compared, so a difference fails here rather than hiding in another test."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from helpers import zygote

pytestmark = pytest.mark.slow  # the zygotes import torch and Lightning once per test process

PROBE = """\
import json, os, random, signal, sys
import numpy
print(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "mark": os.environ.get("MARK"),
    "helpers": [p for p in sys.path if p.endswith("from_pythonpath")],
    "hash": hash("the same string"), "random": random.random(), "numpy": numpy.random.rand(),
    "main": __name__, "pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0)),
    "umask": os.umask(0),
    "signals": {int(n): str(signal.getsignal(n)) for n in signal.valid_signals()
                if n not in (signal.SIGKILL, signal.SIGSTOP)},
    "blocked": sorted(int(n) for n in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
}))
print("to stderr\\r\\nand a carriage return\\r", file=sys.stderr)
how = os.environ.get("END", "")
if how == "raise":
    raise ValueError("a failure the interpreter prints")
if how == "interrupt":
    raise KeyboardInterrupt
if how == "signal":
    os.kill(os.getpid(), 15)
if how.startswith("exit:"):
    sys.exit(how[5:] if not how[5:].isdigit() else int(how[5:]))
"""


def _both(tmp_path, args: list[str], **env: str):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    (tmp_path / "from_pythonpath").mkdir(exist_ok=True)
    full = {**os.environ, **env, "PYTHONPATH": str(tmp_path / "from_pythonpath")}
    argv = [sys.executable, str(script), *args]
    forked = zygote.run(argv, tmp_path, full, timeout=60)
    real = subprocess.run(argv, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60)
    return forked, real


def _start_the_zygotes(tmp_path) -> None:
    for _ in range(2):  # one command each
        zygote.run([sys.executable, "-c", "pass"], tmp_path, dict(os.environ), timeout=60)


def _fields(proc) -> dict:
    import json

    return json.loads(proc.stdout.splitlines()[0])


@pytest.mark.parametrize(
    "end, code",
    [("", 0), ("exit:3", 3), ("exit:a message", 1), ("raise", 1), ("interrupt", -2),
     ("signal", -signal.SIGTERM)],
)  # fmt: skip
def test_a_forked_start_ends_and_prints_as_a_real_one(tmp_path, end, code):
    rng = random.Random()
    args = ["plain", "with space", "ünïcödé", "new\nline", "".join(rng.choices("$'\"*;|&", k=8))]
    # a long environment: the request comes to the zygote in parts
    forked, real = _both(tmp_path, args, MARK=str(rng.random()), END=end, LONG="x" * 100_000)
    assert forked.returncode == real.returncode == code, (forked.stderr, real.stderr)
    same = ("argv", "cwd", "path0", "mark", "helpers", "main")
    assert {k: _fields(forked)[k] for k in same} == {k: _fields(real)[k] for k in same}
    assert forked.stdout.splitlines()[1:] == real.stdout.splitlines()[1:]
    # the traceback names the zygote's frames above the script's; the last lines are the same
    assert forked.stderr.splitlines()[-2:] == real.stderr.splitlines()[-2:], forked.stderr


def test_a_forked_start_inherits_what_an_exec_d_one_inherits(tmp_path):
    """The CPUs, umask, signals ignored and signals blocked of the process that starts it (the
    suite's workers each keep to a share of the CPUs, set after a zygote may have started);
    every other signal at its default, and Python's own choices on top."""
    _start_the_zygotes(tmp_path)  # before: they must not be where these come from
    cpus, mask = sorted(os.sched_getaffinity(0)), os.umask(0o027)
    ignored = random.choice([signal.SIGHUP, signal.SIGTERM, signal.SIGUSR2, signal.SIGINT])
    before = signal.signal(ignored, signal.SIG_IGN)
    handled = signal.signal(signal.SIGUSR1, lambda *_: None)  # a handler: an exec drops it
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
    try:
        os.sched_setaffinity(0, cpus[-1:])
        forked, real = map(_fields, _both(tmp_path, []))
    finally:
        os.sched_setaffinity(0, cpus)
        os.umask(mask)
        signal.signal(ignored, before)
        signal.signal(signal.SIGUSR1, handled)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGALRM])
    assert forked["cpus"] == real["cpus"] == cpus[-1:]
    assert forked["umask"] == real["umask"] == 0o027
    assert forked["signals"] == real["signals"]
    assert real["signals"][str(int(ignored))] == str(signal.SIG_IGN)
    assert forked["blocked"] == real["blocked"] == [int(signal.SIGALRM)]


def test_each_forked_start_seeds_and_hashes_as_a_new_interpreter(tmp_path):
    """Two runs a test compares must not share the zygote's random state or hash seed."""
    runs = [_fields(_both(tmp_path, [])[0]) for _ in range(4)]
    assert len({r["pid"] for r in runs}) == 4
    assert len({r["random"] for r in runs}) == 4 and len({r["numpy"] for r in runs}) == 4
    assert len({r["hash"] for r in runs}) >= 2  # the two zygotes, used in turn


def test_a_setting_that_acts_at_a_start_gets_a_real_start(tmp_path):
    forked, real = _both(tmp_path, [], PYTHONHASHSEED="7")
    assert _fields(forked)["hash"] == _fields(real)["hash"]  # the seed took effect: exec'd
    assert not zygote.forkable({**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    _start_the_zygotes(tmp_path)
    with pytest.MonkeyPatch.context() as patch:  # set here after the zygotes started: not theirs
        patch.setenv("OMP_NUM_THREADS", "37")
        assert not zygote.forkable(dict(os.environ))
    assert zygote.forkable({**os.environ, "PYTHONPATH": "x", "PYTHONUNBUFFERED": "1"})


def test_a_forked_start_past_its_timeout_is_killed(tmp_path):
    script = tmp_path / "sleeper.py"
    script.write_text("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(600)\n")
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        zygote.run([sys.executable, str(script)], tmp_path, dict(os.environ), timeout=3)
    assert time.monotonic() - started < 30


def test_a_started_script_is_signalled_waited_for_and_polled_as_popen_is(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("import os, time\nprint(os.getsid(0) == os.getpid(), flush=True)\n"
                      "time.sleep(600)\n")  # fmt: skip
    for session in (False, True):
        log = tmp_path / f"log{session}"
        with log.open("w") as out:
            proc = zygote.popen([sys.executable, str(script)], tmp_path, dict(os.environ), out,
                                start_new_session=session)  # fmt: skip
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        assert proc.poll() is None and proc.returncode is None
        deadline = time.monotonic() + 30
        while not log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.read_text() == f"{session}\n"  # a session of its own only when asked
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM == proc.poll()


def test_a_zygote_that_died_is_replaced(tmp_path):
    _start_the_zygotes(tmp_path)
    for gone in list(zygote._pool):
        gone.proc.kill()
        gone.proc.wait()
    forked, real = _both(tmp_path, ["after"])
    assert forked.returncode == real.returncode == 0 and _fields(forked)["argv"][1:] == ["after"]
