"""The suite's `python SCRIPT ARGS` without paying for the imports every time.

A `train.py` start spends seconds importing torch, Lightning, torchmetrics and torchvision, and
the suite starts a couple of hundred of them: on a slow CPU most of `make test` was imports. A
zygote (zygote_server.py) is a Python process that imports those libraries once and then, for
each command, forks a child that becomes `python SCRIPT ARGS`: its own pid, argv, working dir,
environment, stdin, stdout and stderr, the CPUs, umask and signals an exec would leave it, the
script run as `__main__`, the exit status (or the signal that ended it) handed back as
subprocess hands it back. This module is the tests' side: run (subprocess.run) and popen
(subprocess.Popen). What the child does not repeat is loading the libraries, which no test here
is about; the tests of a start itself (signals while importing, what a start leaves out) start
`python` for real, as does every command whose environment acts at a start (`forkable`).

Two zygotes per test process, used in turn, each with its own hash seed: two runs a test
compares come from interpreters that order sets and dicts of strings differently, as two real
starts do. MNIST_TEST_EXEC=1 starts every command as a real `python` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import locale
import os
import random
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from helpers.zygote_server import CATCHABLE

# what a command's environment may set that only acts when an interpreter starts
STARTUP_ONLY = ("PYTHON", "MALLOC_", "LD_", "OMP_", "MKL_", "KMP_", "GOMP_")
FORKABLE = ("PYTHONPATH", "PYTHONUNBUFFERED")  # applied by the child itself
EXEC = os.environ.get("MNIST_TEST_EXEC") == "1"
SERVER = Path(__file__).with_name("zygote_server.py")


def forkable(env: dict[str, str]) -> bool:
    """False where the command's environment differs from the zygote's in a setting that acts
    only at an interpreter's start (the zygote has started already)."""
    if EXEC:
        return False
    started = _started_env if _started_env is not None else os.environ  # what a zygote has
    startup = {k for k in set(env) | set(started) if k.startswith(STARTUP_ONLY)} - set(FORKABLE)
    return all(env.get(key) == started.get(key) for key in startup)


class _Zygote:
    def __init__(self, hash_seed: int):
        self.dir = Path(tempfile.mkdtemp(prefix="zygote-"))
        self.path = self.dir / "socket"
        base = _started_env if _started_env is not None else os.environ
        env = {**base, "PYTHONHASHSEED": str(hash_seed), "PYTHONUNBUFFERED": "1"}
        with open(self.dir / "log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER), str(self.path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
            )  # fmt: skip
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            line = self.proc.stdout.readline()
            if line != b"ready\n":
                self.proc.kill()
                raise RuntimeError(f"the zygote did not start: {(self.dir / 'log').read_text()}")
            self.ready = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # its end of file: the zygote leaves
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


_pool: list[_Zygote] = []
_started_env: dict[str, str] | None = None  # the environment the zygotes started with
_turn = itertools.count()


def _next_zygote() -> _Zygote:
    global _started_env
    if not _pool:
        _started_env = dict(os.environ)  # a test may change this process's later
        seeds = random.SystemRandom().sample(range(1, 2**32 - 1), 2)
        _pool.extend(_Zygote(seed) for seed in seeds)  # both import at once
        atexit.register(lambda: [z.close() for z in _pool])
    turn = next(_turn) % len(_pool)
    if _pool[turn].proc.poll() is not None:  # gone (killed, out of memory): a new one
        _pool[turn].close()
        _pool[turn] = _Zygote(random.SystemRandom().randrange(1, 2**32 - 1))
    _pool[turn].wait_ready()
    return _pool[turn]


class Forked:
    """The subprocess.Popen of a forked start, as far as the tests use one: pid, poll, wait,
    send_signal, terminate, kill, returncode (negative: the signal that ended it)."""

    def __init__(self, argv: list[str], conn: socket.socket):
        self.args, self.returncode, self._conn, self._buffer = argv, None, conn, b""
        self.pid = int(self._line(None))
        self.stdout = self.stderr = None  # text files where popen was given subprocess.PIPE

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        """What is left of the piped stdout and stderr, once the process ended."""
        files = [f for f in (self.stdout, self.stderr) if f is not None]
        read: dict = {}
        threads = [threading.Thread(target=lambda f=f: read.update({f: f.read()})) for f in files]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(timeout)
        return read.get(self.stdout), read.get(self.stderr)

    def _line(self, timeout: float | None) -> bytes | None:
        """The zygote's next line; None when none came within timeout (seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._conn], [], [], left)[0]:
                return None
            data = self._conn.recv(4096)
            if not data:
                raise RuntimeError("the zygote closed the connection: see its log")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def poll(self) -> int | None:
        return self.wait(timeout=0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            line = self._line(timeout)
            if line is None:
                if timeout == 0:  # poll()
                    return None
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = int(line)
            self._conn.close()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def popen(argv: list[str], cwd: Path, env: dict[str, str], stdout=None, stderr=None,
          start_new_session: bool = False):  # fmt: skip
    """subprocess.Popen(argv, cwd, env, stdout, stderr, start_new_session, text=True) of a
    Python script; stdout and stderr: None (this process's), a file, an fd, subprocess.PIPE
    or subprocess.DEVNULL, and stderr also subprocess.STDOUT."""
    if not forkable(env):
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=True,
            start_new_session=start_new_session,
        )  # fmt: skip
    pipes = {}  # the stream's name -> (our end, the child's end)
    for name, given in (("stdout", stdout), ("stderr", stderr)):
        if given == subprocess.PIPE:
            pipes[name] = os.pipe()
    null = os.open(os.devnull, os.O_WRONLY)
    out = pipes["stdout"][1] if "stdout" in pipes else _fd(stdout, 1, null)
    err = pipes["stderr"][1] if "stderr" in pipes else _fd(stderr, 2, null, out)
    try:
        started = _fork(argv, cwd, env, out, err, start_new_session)
    finally:
        for fd in [null] + [child_end for _, child_end in pipes.values()]:
            os.close(fd)
    encoding = locale.getpreferredencoding(False)
    for name, (ours, _) in pipes.items():
        setattr(started, name, open(ours, encoding=encoding))  # noqa: SIM115 - as Popen's
    return started


def _fd(stream, inherited: int, null: int, out: int | None = None) -> int:
    """The fd a Popen argument names: None is this process's own, DEVNULL, STDOUT, a file."""
    named = {None: inherited, subprocess.DEVNULL: null, subprocess.STDOUT: out}
    if stream in named:
        return named[stream]
    return stream if isinstance(stream, int) else stream.fileno()


def _fork(argv, cwd, env, out: int, err: int, session: bool = False) -> Forked:
    null = os.open(os.devnull, os.O_RDONLY)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(_next_zygote().path))
        request = {
            "argv": argv[1:], "cwd": str(cwd), "env": env, "session": session,
            # what a child inherits from the process that starts it, which is this one
            "cpus": sorted(os.sched_getaffinity(0)), "umask": _umask(),
            "ignored": [int(n) for n in CATCHABLE if signal.getsignal(n) is signal.SIG_IGN],
            "blocked": [int(n) for n in signal.pthread_sigmask(signal.SIG_BLOCK, [])],
        }  # fmt: skip
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [null, out, err])
        return Forked(argv, conn)
    except BaseException:
        conn.close()
        raise
    finally:
        os.close(null)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float, stdout_fd=None):
    """subprocess.run(argv, cwd, env, capture_output=True, text=True, timeout) of a Python
    script; stdout_fd: stdout goes there, uncaptured."""
    if not forkable(env):
        out = subprocess.PIPE if stdout_fd is None else stdout_fd
        return subprocess.run(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True,
            timeout=timeout,
        )  # fmt: skip
    err_r, err_w = os.pipe()
    out_r, out_w = os.pipe() if stdout_fd is None else (None, stdout_fd)
    try:
        started = _fork(argv, cwd, env, out_w, err_w)
    finally:
        for fd in (err_w,) + ((out_w,) if out_r is not None else ()):
            os.close(fd)
    try:
        read = _read_until_closed([r for r in (out_r, err_r) if r is not None], timeout)
    except subprocess.TimeoutExpired:
        started.kill()
        started.wait()
        raise subprocess.TimeoutExpired(argv, timeout) from None
    code = started.wait()
    out = _text(read[out_r]) if out_r is not None else None
    return subprocess.CompletedProcess(argv, code, out, _text(read[err_r]))


def _text(data: bytes | None) -> str | None:
    """As subprocess's text mode decodes: the locale's encoding, universal newlines."""
    if data is None:
        return None
    decoded = data.decode(locale.getpreferredencoding(False))
    return decoded.replace("\r\n", "\n").replace("\r", "\n")


def _read_until_closed(fds: list[int], timeout: float) -> dict[int, bytes]:
    """Each fd's bytes until every writer has closed it (the child and any process it started
    that kept them), as subprocess's communicate() reads."""
    chunks = {fd: [] for fd in fds}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                for fd in list(sel.get_map()):
                    os.close(fd)
                raise subprocess.TimeoutExpired("", timeout)
            for key, _ in sel.select(left):
                data = os.read(key.fd, 1 << 16)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
                    os.close(key.fd)
    return {fd: b"".join(parts) for fd, parts in chunks.items()}
