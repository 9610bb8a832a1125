"""The zygote itself, `python zygote_server.py SOCKET` (started by zygote.py): it imports the
libraries once, then for each request on SOCKET forks a child that becomes `python SCRIPT ARGS`
with what the request carries, and reports the child's pid and, once it ends, its exit status."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import selectors
import signal
import socket
import sys
import threading
from pathlib import Path

CATCHABLE = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}, key=int)
PRELOAD = (
    "torch",
    "torch._dynamo",  # the first optimizer a run makes imports it
    "lightning.pytorch",
    "hydra",
    "matplotlib.pyplot",
    "torch.utils.tensorboard",
    "mnist_cnn.train",
    "mnist_cnn.eval",
    "mnist_cnn.predict",
    "mnist_cnn.cli.train",
    "mnist_cnn.cli.eval",
    "mnist_cnn.cli.predict",
)


def _serve(path: str) -> None:
    import gc
    import importlib

    # what every start has: sys.path less the script's dir and PYTHONPATH, which each child sets
    base_path = [p for p in sys.path[1:] if p not in _pythonpath(os.environ)]
    from mnist_cnn import deferred_imports

    gc.disable()  # as a start does while it imports (process.starting_up)
    deferred_imports.defer_scipy_signal()
    for name in PRELOAD:
        importlib.import_module(name)
    gc.freeze()  # the children share these pages until they write to them
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "leave")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in sel.select():
            if key.data == "leave":
                return
            if key.data == "accept":
                conn, _ = listener.accept()
                request, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
                while not request.endswith(b"\n"):  # a stream: a long request comes in parts
                    request += conn.recv(1 << 16)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    listener.close()
                    conn.close()
                    _become(json.loads(request), fds, base_path)  # never returns
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"{pid}\n".encode())
                sel.register(os.pidfd_open(pid), selectors.EVENT_READ, (conn, pid))
            else:
                conn, pid = key.data
                sel.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):  # the test side gone (timed out)
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                conn.close()


def _pythonpath(env) -> list[str]:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _become(request: dict, fds: list[int], base_path: list[str]) -> None:
    """The forked child turns into `python SCRIPT ARGS` and never returns to the loop."""
    import gc
    import runpy

    import numpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    if request["session"]:
        os.setsid()
    os.sched_setaffinity(0, request["cpus"])
    os.umask(request["umask"])
    _signals_as_at_a_start(request["ignored"], request["blocked"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script, *args = request["argv"]
    sys.argv = [script, *args]
    sys.path[:] = [str(Path(script).resolve().parent), *_pythonpath(os.environ), *base_path]
    random.seed()  # the entropy a new interpreter seeds from, not the zygote's state
    numpy.random.seed()
    gc.unfreeze()  # a start has frozen nothing yet, and gc on (process.started freezes)
    gc.enable()
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException:  # noqa: BLE001 - what the interpreter does with it, below
        kind = sys.exc_info()[0]
        sys.excepthook(*sys.exc_info())
        code = -signal.SIGINT if kind is KeyboardInterrupt else 1
    _leave(code)


def _signals_as_at_a_start(ignored: list[int], blocked: list[int]) -> None:
    """An exec keeps the signals ignored and blocked in the process that starts it and resets
    the rest to their defaults; then Python ignores SIGPIPE and SIGXFSZ and raises
    KeyboardInterrupt on a SIGINT it was not started ignoring."""
    for signum in CATCHABLE:
        signal.signal(signum, signal.SIG_IGN if signum in ignored else signal.SIG_DFL)
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_IGN)
    if signal.SIGINT not in ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _exit_status(code: object) -> int:
    """What the interpreter makes of sys.exit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _leave(code: int) -> None:
    """The interpreter's exit up to its module-by-module teardown, which is left out: the
    zygote's libraries are all loaded, and tearing them down took seconds where a real start
    that stopped early has little to tear down (a completed run skips it: process.finish)."""
    threading._shutdown()  # the non-daemon threads, as the interpreter waits for them
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code < 0:  # the uncaught KeyboardInterrupt: the interpreter ends by the signal
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


if __name__ == "__main__":
    _serve(sys.argv[1])
