"""Process-wide settings, all in one place. Only the entry points (mnist_cnn.cli, the notebook's
first cell) call this module.

Library code (`run`, `evaluate`, callbacks, plots) changes nothing process-wide, so a notebook or
a test can call it without its interpreter changing under it. The figures behind each lever are
in docs/performance.md.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from mnist_cnn import deferred_imports
from mnist_cnn.errors import WHILE_STARTING
from mnist_cnn.stop_signals import honoured

# warnings that say nothing a user of this project can act on
QUIET_WARNINGS = (
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.15 deprecates
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    # the data lives in memory and a batch is one index operation: loader workers only add cost
    r".*does not have many workers.*",
    # a limited run (debug=limit) has fewer steps than the logging interval: nothing to act on
    r".*smaller than the logging interval.*",
    # the model summary cannot count bf16 sizes; the parameter counts it prints stay right
    r"Precision .* is not supported by the model summary.*",
    # a resume mid-epoch: the datamodule skips the batches already trained itself
    # (data/mnist.py resume_at), which Lightning's loader check cannot see
    r".*ended before the epoch ended and your dataloader is not resumable.*",
    # wherever SLURM is installed: this project starts srun's ranks itself (docs/scaling.md)
    r".*The `srun` command is available on your system but is not used.*",
)
# Lightning's info lines that say nothing about this run
QUIET_INFO = (
    "💡 Tip:",
    "Trainer already configured with model summary callbacks",
    "TPU available:",
    "Loading `train_dataloader` to estimate number of stepping batches",
)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_exit_code: int | None = None


def configure(threads: int | str = "auto", parallel_jobs: int = 1, keep_freed: bool = True) -> int:
    """Set everything process-wide that a run wants; returns the torch threads used."""
    quiet_libraries()
    import torch

    count = thread_count(threads, parallel_jobs)
    torch.set_num_threads(count)
    # trainer.deterministic turns on torch's deterministic algorithms, and with them, by default,
    # a NaN fill of every new tensor in case an operation reads memory before writing it: none
    # of our networks does (tests/test_process.py trains each both ways to the same bits), and
    # the fill is an extra pass over every activation and gradient buffer of every step
    torch.utils.deterministic.fill_uninitialized_memory = False
    if keep_freed:
        keep_freed_memory()
    stop_on_signals()
    return count


def quiet_libraries() -> None:
    """Drop the libraries' lines that say nothing about this run (entry points, the notebook)."""
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    _one_console_handler()
    _drop_lines(QUIET_INFO)


_starting = False  # between starting_up() and started(): a signal ends the process at once
_frozen = False  # the objects of the imports frozen (started)
_record_stop: Callable[[str], object] | None = None  # what a stop while starting leaves behind


def record_stops_while_starting(record: Callable[[str], object] | None) -> None:
    """record(the signal's name) runs when a signal ends the start, once there is a run dir."""
    global _record_stop
    _record_stop = record


def _on_signal(signum: int, frame: object) -> None:
    if _starting:
        # nothing is written yet, so nothing is lost by leaving now; an exception raised here
        # could land inside a library's import, which may swallow it in an `except:` around an
        # optional import (the run then trained on as if never stopped) or carry it across C++
        # code that aborts the process ("terminate called after throwing ... KeyboardInterrupt");
        # waiting for a safe point instead could wait on a peer that is gone (a rank's start)
        for stream in (sys.stdout, sys.stderr):
            # an error here: the main thread was writing to it, and its line may be cut
            with contextlib.suppress(Exception):
                stream.flush()
        name = signal.Signals(signum).name
        os.write(2, f"interrupted: {name} received {WHILE_STARTING}\n".encode())
        if _record_stop is not None:  # the run dir Hydra made says so (never a traceback)
            with contextlib.suppress(Exception):
                _record_stop(name)
        os._exit(128 + signum)
    from mnist_cnn.errors import Stopped

    raise Stopped(signum)


def starting_up() -> None:
    """The entry point's first call: until started(), SIGINT, SIGTERM and SIGHUP end the process
    at once with one line and the shell's 128 + the signal (see _on_signal for why), and the
    cyclic garbage collector waits: importing torch, Lightning and matplotlib creates hundreds of
    thousands of objects that live as long as the process, and every full collection during the
    imports walked all of them again to find next to nothing. scipy.signal waits for a use."""
    global _starting
    _starting = True
    gc.disable()
    stop_on_signals()
    deferred_imports.defer_scipy_signal()


def started() -> None:
    """The libraries are loaded: from here a signal raises errors.Stopped where it lands, and
    the run's own handlers take over in fit and test. What the imports made is moved out of the
    collector's sight (gc.freeze: later full collections walk only what the run creates), once:
    a sweep calls this for every job, and a job's leftovers must stay collectable."""
    global _starting, _frozen
    _starting = False
    if not _frozen:
        gc.freeze()
        # back in sight at exit, so the interpreter's last collections free them (nanobind, in
        # triton, reports its objects as leaked at exit otherwise)
        atexit.register(gc.unfreeze)
        _frozen = True
    gc.enable()


def stop_on_signals() -> None:
    """Signals outside a training or test step raise errors.Stopped (see there)."""
    if threading.current_thread() is threading.main_thread():  # the only place Python allows it
        for signum in honoured():  # one started ignored stays so (stop_signals)
            signal.signal(signum, _on_signal)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def thread_count(threads: int | str, parallel_jobs: int = 1) -> int:
    """threads='auto' gives each of parallel_jobs runs an equal share of the usable CPUs."""
    if threads == "auto":
        return max(1, available_cpus() // max(1, parallel_jobs))
    return int(threads)


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc reuse freed blocks up to limit_bytes instead of handing them back to the kernel:
    a step frees and re-allocates the same activations, which glibc serves by default with fresh
    mmap()s, unmapped on free (page faults, pages zeroed again, every step). Numerics untouched.
    No library exposes mallopt, hence ctypes. False where there is no glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(p, limit_bytes) for p in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))


def _drop_lines(prefixes: tuple[str, ...]) -> None:
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    for old in [f for f in logger.filters if getattr(f, "quiet_prefixes", None)]:
        logger.removeFilter(old)

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith(prefixes)

    keep.quiet_prefixes = prefixes  # type: ignore[attr-defined]
    logger.addFilter(keep)


def _one_console_handler() -> None:
    """Under Hydra the root logger prints to the console and to <run>/<task>.log; the console
    handler that `import lightning` adds to its logger would print each of its lines twice."""
    if not logging.getLogger().handlers:
        return
    import lightning  # noqa: F401  (its import adds the handler; removed below)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # not Hydra's file handler
                logger.removeHandler(handler)
        logger.propagate = True


def install_quick_exit() -> None:
    """Register the handler that `finish` arms. Call it first, before torch is imported: atexit
    runs handlers last-registered-first, so this one runs after every library's own."""
    atexit.unregister(_skip_teardown)
    atexit.register(_skip_teardown)


def finish(code: int = 0) -> NoReturn:
    """End a completed single run without the interpreter's module-by-module teardown (with
    torch and Lightning loaded, over a second after every file is written): sys.exit's shutdown
    (non-daemon threads, atexit handlers) ends in the handler install_quick_exit registered."""
    global _exit_code
    _exit_code = code
    # everything is written: a signal now interrupts no run (raising Stopped inside an atexit
    # handler would only print a traceback); a second one means the exit itself is stuck
    if threading.current_thread() is threading.main_thread():
        for signum in honoured():
            signal.signal(signum, lambda signum, _: signal.signal(signum, signal.SIG_DFL))
    sys.exit(code)


def _skip_teardown() -> None:
    if _exit_code is None:  # errors, interrupts, sweeps: the usual exit
        return
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.active_children():  # children still to reap: let Python do it
        return
    logging.shutdown()  # in case logging's own handler was registered before ours
    leave_now(_exit_code)


def leave_now(code: int) -> NoReturn:
    """End the process at once, its output flushed (nothing of it is left to run or save)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader gone: nothing more to say to it
            stream.flush()
    os._exit(code)
