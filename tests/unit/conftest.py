"""The unit tier is pure: a test here that starts a process or opens a network connection fails.

Autouse guard: ``subprocess.Popen`` (so also ``subprocess.run``) and ``socket.socket.connect`` /
``connect_ex`` raise :class:`ImpureUnitTest`, naming what was attempted. Storage (Azurite) is only
reachable over a socket, so it is refused too. Such a test belongs in ``tests/integration`` or
``tests/e2e``.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


class ImpureUnitTest(BaseException):
    """A unit test tried to start a process or to connect somewhere (a BaseException, so that code
    under test that catches ``Exception`` cannot hide it)."""


@pytest.fixture(autouse=True)
def no_processes_no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def no_process(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        self._child_created = False  # so that Popen.__del__ of this never-started object stays quiet
        raise ImpureUnitTest(
            f"unit tests start no processes (tried to run {args!r}); move the test to tests/integration or tests/e2e"
        )

    def no_connect(self: socket.socket, address: Any, *rest: Any) -> None:
        raise ImpureUnitTest(
            f"unit tests open no network connections (tried to connect to {address!r}); "
            "move the test to tests/integration or tests/e2e"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", no_connect)
    yield
