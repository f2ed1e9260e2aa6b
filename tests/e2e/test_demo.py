"""`make demo` end to end: the demo script brings up Azurite and the dev host and verifies an envelope."""

from __future__ import annotations

import subprocess
import sys

from devhost.ports import free_port
from tests.conftest import PROJECT_ROOT


def test_demo_verifies_an_envelope_and_stops_everything(tmp_path):
    data = tmp_path / "devdata"
    result = subprocess.run(
        [sys.executable, "-m", "cryptlet_cli.demo", "--data", str(data), "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "verified: customer_validator" in result.stdout
    assert "verified: sla_monitor" in result.stdout  # the JavaScript (exec runtime) sample, and its event
    assert "event     sla_monitor.SlaBreached" in result.stdout
    assert "stopped the dev host and Azurite." in result.stdout
    assert "Traceback" not in result.stderr
    assert (data / "sealing-secret").stat().st_mode & 0o077 == 0  # dev secrets are private to the user
    again = subprocess.run(
        [sys.executable, "-m", "cryptlet_cli.demo", "--data", str(data), "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "registered earlier" in again.stdout
