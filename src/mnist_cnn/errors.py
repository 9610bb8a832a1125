"""Every way a run can end other than completing, with its exit code: the entry points turn these
into one-line messages and exit codes, and mnist_cnn.outcome into the run record's status."""

import signal
import sys
from pathlib import Path
from typing import NoReturn

# a signal before the run's handlers, while Python still loads the libraries: nothing to resume
WHILE_STARTING = "while starting, before anything was saved"
NOTHING_TO_RESUME = "nothing to resume: run the command again"


class UserError(Exception):
    """A mistake the user can fix (bad setting, bad file); the message names it and the fix."""

    exit_code = 2


class InvalidSettings(UserError):
    """Every invalid value of a config at once; `problems` holds them one by one."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(where + "; ".join(problems))
        self.problems = problems


class TrainingDiverged(UserError):
    """The training loss stopped being a finite number; the weights are not worth saving."""

    exit_code = 3

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class Stopped(BaseException):
    """SIGINT, SIGTERM or SIGHUP (a closed terminal or SSH session) outside a training or test
    step, where Python would die without a word or Lightning would exit 1: the run's record says
    interrupted and the process exits with the shell's 128 + the signal's number. Not an
    Exception, so no `except Exception` on the way swallows it. Inside fit and test,
    mnist_cnn.callbacks.resume.GracefulInterrupt handles these signals (a checkpoint first)."""

    def __init__(self, signum: int, where: str = "outside a training or test step") -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum
        self.where = where


class Pruned(Exception):
    """An Optuna trial stopped by the study's pruner after an epoch: not a failure. The run's
    record says `pruned` with the epochs it completed (counted from 1, as the progress lines
    count); the sweep job returns this (picklable) to the sweeper."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"pruned after epoch {epoch} (val/acc {value:.4f})")
        self.epoch = epoch
        self.value = value

    def __reduce__(self):
        return (Pruned, (self.epoch, self.value))


class RankFailed(UserError):
    """A rank of a multi-process run exited with an error; the launcher stopped the others."""

    def __init__(self, rank: int, exit_code: int, failed: int) -> None:
        others = f" ({failed - 1} more rank(s) failed after it)" if failed > 1 else ""
        how = (
            f"was killed by {signal.Signals(-exit_code).name}"
            if exit_code < 0 and -exit_code in signal.valid_signals()
            else f"exited with code {exit_code}"
        )
        super().__init__(
            f"rank {rank} {how}{others}; the other ranks were stopped. "
            "Its own error is in the lines above and in the run's train.log"
        )
        self.rank = rank
        self.exit_code = exit_code if 0 < exit_code < 256 else 1
        # stopped by SIGINT, SIGTERM or SIGHUP: killed before its handlers were set (while
        # starting up), or exited 128 + the signal through them
        codes = {code: signum for signum, code in EXIT_CODES.items()}
        self.signum = -exit_code if -exit_code in EXIT_CODES else codes.get(exit_code)


# the shell's 128 + signal number; SIGHUP: the terminal or SSH session that started the run closed
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class Interrupted(BaseException):
    """A signal stopped the run; its exit code is the shell's 128 + signal number. Not an
    Exception (as Stopped): raised from a signal handler, it can land inside a library's `except
    Exception` (inspect.getfullargspec turns any into TypeError('unsupported callable'))."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 1)


class TrainingInterrupted(Interrupted):
    """Fit stopped on a signal after saving `checkpoint`."""

    def __init__(self, signum: int, checkpoint: Path, why: str = "") -> None:
        super().__init__(signum, f"{signal.Signals(signum).name} received{why}")
        self.checkpoint = checkpoint


class InterruptedDuringTest(Interrupted):
    """The test stage stopped on a signal; `checkpoint` (set by the caller) holds the weights."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum, f"{signal.Signals(signum).name} received during the test")
        self.checkpoint: Path | None = None


def exit_while_starting() -> NoReturn:
    """Ctrl-C before any handler of ours (Python still importing, a rank not yet started): one
    line and the shell's 130, not a traceback."""
    print(f"interrupted: SIGINT received {WHILE_STARTING}", file=sys.stderr)
    sys.exit(130)
