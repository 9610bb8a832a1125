"""Fixtures (tiny generated IDX data, the network guard) and the signals the suite starts with."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

# The suite's commands run as from a terminal, whatever started the suite: under `nohup` (SIGHUP
# ignored) or as a script's `&` job (SIGINT ignored) the processes the tests start would inherit
# the ignore, and keep it (mnist_cnn.stop_signals), so the signals the tests send would not
# arrive. Set before anything of the project is imported: it reads them once.
for _signum, _default in (
    (signal.SIGHUP, signal.SIG_DFL),
    (signal.SIGINT, signal.default_int_handler),
):
    if signal.getsignal(_signum) is signal.SIG_IGN:
        signal.signal(_signum, _default)

import pytest  # noqa: E402
from helpers.data import write_mnist  # noqa: E402

# the CPUs pytest started with; a worker of `make test` (two pytest-xdist workers) takes its share
ALL_CPUS = sorted(os.sched_getaffinity(0))


def _tier(item: pytest.Item) -> int:
    marks = {mark.name for mark in item.iter_markers()}
    return 0 if marks & {"cluster", "real_data"} else 1 if "slow" in marks else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tiers first (the SLURM cluster and real MNIST, then the subprocess runs, the
    fast tests last), whole modules at a time: two xdist workers then end together instead of one
    finishing a minute-long test alone at the end. Within a tier, the files' order."""
    tiers: dict[str, int] = {}
    for item in items:
        tiers[item.nodeid.split("::")[0]] = min(
            tiers.get(item.nodeid.split("::")[0], 2), _tier(item)
        )
    items.sort(key=lambda item: tiers[item.nodeid.split("::")[0]])


@pytest.fixture(scope="session", autouse=True)
def measurements_cache(tmp_path_factory):
    """What runs measure of the machine (fastest_of) goes to the session's scratch, not the
    checkout's outputs/; the train.py processes the tests start inherit it."""
    os.environ["MNIST_CNN_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(scope="module", autouse=True)
def cpu_share(request):
    """Under N xdist workers, each worker's tests, and the processes they start, run on 1/N of
    the CPUs: `threads=auto` follows the affinity mask, so two workers never run four threads on
    two cores (spinning OpenMP threads slowed such a run severalfold). The SLURM cluster's
    module keeps every CPU: its node is declared with all of them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    cluster = any(m.name == "cluster" for m in request.node.iter_markers())
    share = ALL_CPUS
    if workers > 1 and len(ALL_CPUS) >= workers and not cluster:
        share = ALL_CPUS[int(worker.removeprefix("gw") or 0) % workers :: workers]
    os.sched_setaffinity(0, share)
    import torch

    torch.set_num_threads(len(share))  # this worker's in-process training, likewise
    yield


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A data.data_dir with 600 train and 200 test generated digits (shared; do not modify)."""
    return write_mnist(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def fresh_data_dir(tmp_path) -> Path:
    """A private copy of the tiny data, for tests that damage files."""
    return write_mnist(tmp_path / "data")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection outside loopback fails the way an offline machine does, at once."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family == socket.AF_UNIX:  # a file on this machine (the zygote's)
            return real_connect(self, address)
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")):
            return real_connect(self, address)
        raise OSError(f"network disabled in tests (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def own_handlers():
    """For a test that calls process.starting_up() in pytest's own process: the handlers of the
    stop signals and the module's state, as they were."""
    from mnist_cnn import process, stop_signals

    saved = {signum: signal.getsignal(signum) for signum in stop_signals.STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    process.started()
