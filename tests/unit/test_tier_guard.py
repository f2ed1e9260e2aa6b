"""The unit tier's guard (tests/unit/conftest.py) is on: processes and connections are refused here."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.unit.conftest import ImpureUnitTest


def test_starting_a_process_fails_even_where_exceptions_are_caught():
    with pytest.raises(ImpureUnitTest, match="unit tests start no processes"):
        try:
            subprocess.run(["true"], check=True)
        except Exception:  # code under test that swallows errors cannot hide the attempt
            pass


def test_connecting_anywhere_fails():
    with socket.socket() as sock, pytest.raises(ImpureUnitTest, match=r"tried to connect to \('127.0.0.1', 9\)"):
        sock.connect(("127.0.0.1", 9))
    with socket.socket() as sock, pytest.raises(ImpureUnitTest):
        sock.connect_ex(("127.0.0.1", 9))
