"""The entry points behind the root scripts: parse, set up the process, call one function, exit.

User mistakes become one line on stderr and exit code 2 (UserError.exit_code), not a traceback;
HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from mnist_cnn.errors import NOTHING_TO_RESUME, Stopped, UserError, exit_while_starting


@contextmanager
def user_errors(on_error: Callable[[UserError], Any] | None = None) -> Iterator[None]:
    """A UserError inside prints one line and exits with its code; on_error runs first (to record
    the failure in the run dir)."""
    try:
        yield
    except UserError as exc:
        if on_error is not None:
            on_error(exc)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def record_failure(exc: BaseException) -> None:
    """The run dir Hydra made says why its run stopped before it began (as a sweep job's does);
    a record the run already began is its own and is left as it is."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.runs import RunRecord

    RunRecord.failed_before_start(HydraConfig.get().runtime.output_dir, exc)


def record_stops(run_dir: str) -> None:
    """From here a signal before the run's record begins leaves the run dir saying so, so that
    a rerun into it is told what it holds: while still starting (the process's handler) and
    after (record_stop). The ranks launch_ranks starts leave that to their launcher, unless it
    died (a SIGKILL, which runs nothing of it): then rank 0 writes it."""
    from mnist_cnn import distributed, process
    from mnist_cnn.runs import RunRecord

    record = partial(RunRecord.stopped_before_start, run_dir)
    if os.environ.get(distributed.LAUNCHED):
        record = partial(_if_orphaned, record)
    process.record_stops_while_starting(record)


def _if_orphaned(record: Callable[..., None], signal_name: str) -> None:
    from mnist_cnn import distributed

    # no wait: a rank signalled while its launcher lives must exit at once, or its peer, seeing
    # it gone, fails first and the launcher reports that failure instead of the signal
    if distributed.launcher_gone(wait_s=0):
        record(signal_name, "the launcher of the ranks died")


def record_stop(exc: Stopped, say: bool = True) -> None:
    """A signal outside a step: the run dir records it where its record had not begun; say:
    the line printed tells what is left (the resume command, or starting again). Call it inside
    the Hydra task, before the exception leaves it: Hydra forgets the run dir on the way out."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn import distributed
    from mnist_cnn.runs import RunRecord

    run_dir = HydraConfig.get().runtime.output_dir
    launched = os.environ.get(distributed.LAUNCHED)  # its launcher records and says it
    if not launched:
        RunRecord.stopped_before_start(run_dir, str(exc))
    record = RunRecord.existing(run_dir)
    command = record.data.get("resume_command") if record is not None else None
    if say and not launched and "nothing to resume" not in exc.where:
        exc.where += f"; resume with: {command}" if command else f"; {NOTHING_TO_RESUME}"


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) inside user_errors()."""
    with user_errors():
        return fn(*args)


@contextmanager
def stopped_by_signal(
    completed: Callable[[], bool] = lambda: False, left: str | None = None
) -> Iterator[None]:
    """errors.Stopped (a signal outside a training or test step) exits 128 + its number, with one
    line; the run's record already says interrupted (record_stop, in the task). completed:
    whether the run had completed when the signal came (then nothing was stopped: exit 0, as its
    record says). left: what the line says is left, for a command that runs no training."""
    try:
        yield
    except Stopped as exc:
        if completed():
            print(f"{exc} received after the run completed: nothing was stopped", file=sys.stderr)
            sys.exit(0)
        said = f"received {exc.where}" if left is None else f"received; {left}"
        print(f"interrupted: {exc} {said}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before any handler of ours (a rank still importing)
        exit_while_starting()


@contextmanager
def a_command(argv: list[str] | None, libraries: str, left: str | None) -> Iterator[None]:
    """Around the work of a command that trains nothing (compare.py, predict.py). Run as a
    command (argv None; called from Python, by tests or a notebook, the process stays the
    caller's): a signal while `libraries` load ends it at once, a later one is one line that says
    what is `left` (None: the Stopped's own `where` says it), exit 128 + the signal; a user error
    is one line; once done, the process exits without the interpreter's teardown, where a signal
    would kill it without a word."""
    from mnist_cnn import process

    command = argv is None
    if command:
        process.starting_up()
        process.install_quick_exit()
    with stopped_by_signal(left=left), user_errors():
        if command:
            importlib.import_module(libraries)  # before a signal raises
            process.started()
        yield
        if command:  # inside: a signal from here is one the exit honours
            process.finish(0)


# run-dir settings Hydra copies into hydra.runtime.output_dir and then resolves again
_DIR_KEYS = ("hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir=")


def check_overrides(argv: list[str]) -> None:
    """Overrides that Hydra fails on with its own traceback, before any of ours runs, refused here
    naming them: a run dir whose name holds a literal `${` (typed as `\\${`: Hydra stores the
    name as hydra.runtime.output_dir and then reads it back as an interpolation), and a config
    group set to null (`scheduler=null`: Hydra's ValueError "Config group override must be a
    string or a list"; in a config file's defaults, `override /scheduler: null` is valid)."""
    from mnist_cnn import REPO_ROOT
    from mnist_cnn.group_checks import REQUIRED_GROUPS

    groups = {path.name for path in (REPO_ROOT / "conf").iterdir() if path.is_dir()}
    for arg in argv:
        key = next((k for k in _DIR_KEYS if arg.lstrip("+~").startswith(k)), None)
        if key is not None and "\\${" in arg:
            raise UserError(
                f"{key}... holds a literal '${{' ({arg}): Hydra reads a run dir's name back as "
                "config, where '${' starts an interpolation; choose a name without '${'"
            )
        name, _, value = arg.lstrip("+").partition("=")
        if name in groups and "null" in (v.strip(" []") for v in value.split(",")):
            fix = (
                f"every run needs one: choose one of conf/{name}/"
                if name in REQUIRED_GROUPS
                else f"run without it with ~{name} (a sweep cannot list null among {name}'s "
                f"options: run ~{name} on its own)"
            )
            raise UserError(
                f"{arg}: Hydra cannot set the config group {name} to null on the command line; "
                + fix
            )
