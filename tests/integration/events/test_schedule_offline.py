"""The schedule module in a fresh interpreter (a subprocess): offline, and light to import.
(The schedule tests themselves are pure: tests/unit/events/test_schedule.py.)"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT as ROOT


def test_calendar_works_offline_and_schedule_import_stays_light() -> None:
    """No network: a fresh interpreter with every proxy pointed nowhere and sockets refused computes
    the NYSE close; importing shared.events.schedules alone does not import pandas."""
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise OSError('network disabled')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "import shared.events.schedules as s\n"
        "assert 'pandas' not in sys.modules and 'exchange_calendars' not in sys.modules\n"
        "from datetime import datetime, UTC\n"
        "t = s.CronTrigger('0 0 0 * * *', 'America/New_York', 'XNYS', at='close')\n"
        "print(t.next_after(datetime(2026, 11, 26, tzinfo=UTC)).isoformat())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    assert out.stdout.strip() == "2026-11-27T18:00:00+00:00"
