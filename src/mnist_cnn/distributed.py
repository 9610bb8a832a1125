"""Several processes for one run (DDP): who starts the ranks, and what each rank knows.

A run with trainer.devices > 1 on one machine starts its ranks through torch's own elastic
launcher (what `torchrun --standalone` runs): each rank is a plain `train.py` run in the same run
directory, in an environment Lightning reads as torchelastic's, so Lightning spawns nothing and
never re-runs the script (under `-m`, Lightning's own `ddp` launcher re-runs the whole sweep per
rank). Ranks started from outside (torchrun on several hosts, srun under SLURM) are run as they
are. Rank 0 alone writes metrics.json, checkpoints, figures and TensorBoard events.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mnist_cnn import stop_signals

# set by torchrun / torch's elastic agent, and by srun under SLURM
RANK_VARS = ("RANK", "SLURM_PROCID")
LAUNCHED = "MNIST_CNN_RANK_OF"  # set by launch_ranks for its ranks: the parent run dir
LAUNCHER_PID = "MNIST_CNN_LAUNCHER_PID"  # the process that started them


def follow_launcher() -> None:
    """In a rank launch_ranks started: a SIGTERM when the launcher dies, however it dies (a
    SIGKILL runs no handler of its own). The ranks then save and stop as for any SIGTERM, instead
    of training on and dying later on the launcher's vanished rendezvous store."""
    launcher = os.environ.get(LAUNCHER_PID, "")
    if not launcher.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != int(launcher):  # it died before the line above: no signal would come
        os.kill(os.getpid(), signal.SIGTERM)


def launcher_gone(wait_s: float = 1.0) -> bool:
    """In a rank launch_ranks started: whether the launcher has died (this rank was orphaned).

    The kernel signals the rank when the launcher's spawning thread dies, and may hand it to
    another dying thread of the launcher first: a launcher that is still there is looked at
    again for up to wait_s, until it is gone or a zombie."""
    import time

    launcher = os.environ.get(LAUNCHER_PID, "")
    if not launcher.isdigit():
        return False
    deadline = time.monotonic() + wait_s
    while True:
        if os.getppid() != int(launcher) or _state(int(launcher)) in ("Z", "X", None):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class PeersLost(Exception):
    """This rank failed only because another rank of the run had stopped first."""


def record_peers_lost(message: str) -> None:
    """Says so in this rank's torch elastic error file (TORCHELASTIC_ERROR_FILE, which the
    launcher reads), so that first_cause never names this rank; nothing where there is none."""
    from torch.distributed.elastic.multiprocessing.errors import get_error_handler

    with contextlib.suppress(OSError):  # the launcher's log dir gone: it names the cause anyway
        get_error_handler().record_exception(PeersLost(message))


def first_cause(failures: dict[int, Any]) -> tuple[int, Any]:
    """The rank whose end ended the run, of torch elastic's ProcessFailures by global rank. A
    rank that lost its peers (record_peers_lost) is never it while another failed. Then the
    first to fail; the agent times failures in whole seconds, so on a tie: a rank not ended by
    SIGTERM (the agent's own, sent to the survivors: exit -15 where it lands before a rank's
    handlers, 143 after), then one killed by a signal before its handlers (of two SIGTERMs in
    one second, the one that found a rank too young for handlers was the first sent), then the
    first recorded."""

    def lost_peers(failure: Any) -> bool:
        message = failure.message
        text = message.get("message", "") if isinstance(message, dict) else str(message)
        return text.startswith(f"{PeersLost.__name__}:")

    return min(
        failures.items(),
        key=lambda f: (
            lost_peers(f[1]),
            f[1].timestamp,
            f[1].exitcode in (-signal.SIGTERM, 128 + signal.SIGTERM),
            f[1].exitcode >= 0,
        ),
    )


def _state(pid: int) -> str | None:
    """A process's state letter from /proc (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def rank() -> int:
    """This process's global rank: 0 in a plain run."""
    for name in RANK_VARS:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def started_from_outside() -> bool:
    """Ranks started by torchrun, srun or launch_ranks: this process is one rank of a run."""
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    )


def world_size_from_launcher() -> int | None:
    """The ranks torchrun or srun started for this run (None in a plain run)."""
    if not started_from_outside():
        return None
    for name in ("WORLD_SIZE", "SLURM_NTASKS"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def local_ranks() -> int:
    """Ranks of this run on this machine (they share its CPUs): 1 in a plain run."""
    if not started_from_outside():
        return 1
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        value = os.environ.get(name, "").split("(")[0]  # SLURM writes "2(x3)" for 3 nodes
        if value.isdigit():
            return int(value)
    return 1


def devices_count(devices: Any) -> int | None:
    """The processes a trainer.devices value asks for on this node (None: `auto`)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        return int(devices)
    if isinstance(devices, (list, tuple)) or hasattr(devices, "__len__"):
        return len(devices)
    return None


def world_size(trainer_cfg: Any) -> int:
    """devices x num_nodes as the config asks (1 for `auto` on a CPU)."""
    per_node = devices_count(trainer_cfg.get("devices", 1)) or 1
    return per_node * int(trainer_cfg.get("num_nodes", 1) or 1)


def needs_launch(trainer_cfg: Any) -> bool:
    """More than one process on this node and nobody started the ranks: launch_ranks does."""
    per_node = devices_count(trainer_cfg.get("devices", 1)) or 1
    return per_node > 1 and not started_from_outside()


def trainer_overrides(trainer_cfg: Any) -> dict[str, Any]:
    """In a rank started from outside, the spawning strategies mean plain DDP: the ranks exist
    already, and Lightning must not start more."""
    strategy = trainer_cfg.get("strategy", "auto")
    if started_from_outside() and strategy in ("ddp_spawn", "ddp_fork", "ddp_notebook"):
        return {"strategy": "ddp"}
    return {}


def launch_ranks(nproc: int, argv: list[str], run_dir: str) -> None:
    """`python train.py ARGV` as nproc ranks on this machine, in run_dir; returns when all
    exit 0, raises RankFailed (naming the rank and its exit code) when one does not: the agent
    then stops the others within seconds."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from mnist_cnn.errors import RankFailed, Stopped

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"mnist-cnn-{os.getpid()}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port, picked by the agent (torchrun --standalone)
        max_restarts=0,
        monitor_interval=0.5,
        signals_to_handle=stop_signals.for_torch_elastic(),  # those the agent stops the ranks on
    )
    os.environ[LAUNCHED] = run_dir
    os.environ[LAUNCHER_PID] = str(os.getpid())
    try:
        elastic_launch(config, sys.executable)(*argv)
    except SignalException as exc:  # the agent stopped the ranks (SIGTERM, then SIGKILL)
        raise Stopped(int(exc.sigval), "by the launcher of the run's ranks") from None
    except KeyboardInterrupt:
        raise Stopped(signal.SIGINT, "by the launcher of the run's ranks") from None
    except ChildFailedError as exc:
        first_rank, failure = first_cause(exc.failures)
        raise RankFailed(first_rank, failure.exitcode, len(exc.failures)) from None
    finally:
        os.environ.pop(LAUNCHED, None)
        os.environ.pop(LAUNCHER_PID, None)
