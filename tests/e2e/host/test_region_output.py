"""What cryptlets print, through the real dev host (package ``tests/packages/hostile_spew``): a
cryptlet printing 100 MiB grows the host's log by at most the rate limit and stops no other
cryptlet; forged host log lines (newlines, carriage returns, terminal escapes) arrive escaped, one
line each, prefixed with the cryptlet's name, after the host's own prefix."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time

import pytest

from shared.isolation.region_output import BURST, RATE
from tests.e2e.conftest import register
from tests.e2e.host.test_hostile import invoke, validate_once
from tests.helpers import wait_for

#: The dev host's log format: "%(asctime)s %(levelname)s %(name)s: %(message)s".
HOST_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@pytest.fixture(scope="module")
def registered(fabric_host) -> dict[str, dict]:
    return {package: register(fabric_host, package) for package in ("customer_validator", "hostile_spew")}


def test_a_cryptlet_printing_100_mib_neither_fills_the_host_log_nor_stops_others(fabric_host, registered):
    before = os.path.getsize(fabric_host.log_path)
    outcome = {}
    with fabric_host.client() as http:
        validate_once(http, registered["customer_validator"])  # warm
        start = time.monotonic()

        def spew() -> None:
            with fabric_host.client() as spewing:
                outcome["spew"] = invoke(spewing, "hostile_spew", "spew", {"mib": 100})

        thread = threading.Thread(target=spew)
        thread.start()
        while thread.is_alive():
            validate_once(http, registered["customer_validator"])
        thread.join()
        elapsed = time.monotonic() - start
        assert outcome["spew"].status_code == 200, outcome["spew"].text
        assert outcome["spew"].json()["payload"] == 100
        validate_once(http, registered["customer_validator"])
        tag = "t" + secrets.token_hex(4)
        assert invoke(http, "hostile_spew", "forge", {"tag": tag}).status_code == 200  # a printing cryptlet works
    wait_for(lambda: tag in fabric_host.log(), timeout=10)
    grown = os.path.getsize(fabric_host.log_path) - before
    # 100 MiB printed; the log grew by the rate limit (and the host's own lines), not by the output
    assert grown < BURST + RATE * (elapsed + 2) + (256 << 10), grown


def test_forged_log_lines_arrive_escaped_and_prefixed(fabric_host, registered):
    tag = "t" + secrets.token_hex(4)
    with fabric_host.client() as http:
        response = invoke(http, "hostile_spew", "forge", {"tag": tag})
    assert response.status_code == 200, response.text

    def tagged() -> list[str]:
        return [line for line in fabric_host.log().splitlines() if tag in line]

    lines = sorted(wait_for(lambda: len(tagged()) >= 2 and tagged(), timeout=10))
    assert len(lines) == 2, lines  # one printed line and one log call-out: no more lines than that
    messages = []
    for line in lines:
        match = HOST_LINE.match(line)
        assert match and match.group().endswith(" fabric.region: "), line  # the host's prefix, then ...
        messages.append(line[match.end() :])
        assert "\x1b" not in line and "\r" not in line
    forged = f"2026-01-01 00:00:00,000 INFO fabric: {tag} registered cryptlet trusted"
    printed = [m for m in messages if m.startswith("cryptlet hostile_spew[")]  # ... the cryptlet's name
    logged = [m for m in messages if m.startswith("cryptlet hostile_spew: ")]
    assert len(printed) == len(logged) == 1, messages
    assert printed[0].endswith(f"]: {forged}\\x1b[2K\\x0d{forged}\\x1b[0m")
    assert logged[0] == f"cryptlet hostile_spew: progress\\x0a{forged}\\x1b[1A"
    assert not any(line.startswith(forged) for line in fabric_host.log().splitlines())
