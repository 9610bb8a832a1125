"""Fixtures only: tiny generated IDX data and the network guard (helpers live in tests/helpers)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers.data import write_mnist


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
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")):
            return real_connect(self, address)
        raise OSError(f"network disabled in tests (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded)
