"""Hostile cryptlets against the real dev host: each is contained with a clear error while another
cryptlet keeps being served (packages in ``tests/packages/hostile_*``)."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import httpx
import pytest

from shared.envelope import Envelope, verify_envelope
from tests.e2e.conftest import register

FABRIC_HOST_SETTINGS = {"FABRIC_REGION_TIMEOUT_S": "2"}  # the looping cryptlet is stopped after 2 s
HOSTILE = ("hostile_loop", "hostile_memory", "hostile_fork", "hostile_snoop", "hostile_garbage")
CUSTOMER = {"name": "Bo", "email": "bo@example.com", "country": "NL", "birth_date": "2001-02-03", "credit_score": 640}
PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def registered(fabric_host) -> dict[str, dict]:
    """Several packages here: package name -> registration document."""
    return {package: register(fabric_host, package) for package in ("customer_validator", *HOSTILE)}


def invoke(http: httpx.Client, name: str, method: str = "run", args: dict | None = None) -> httpx.Response:
    return http.post(f"/api/cryptlets/{name}/invoke", json={"method": method, "args": args or {}})


def validate_once(http: httpx.Client, registration: dict) -> None:
    """One well-behaved invocation: it must succeed and be signed by the registered key."""
    response = invoke(
        http, "customer_validator", "validate", {"customer": CUSTOMER, "salt": "0x" + os.urandom(32).hex()}
    )
    assert response.status_code == 200, response.text
    assert verify_envelope(Envelope.from_dict(response.json()), registration["address"])


# (cryptlet, method) -> (region_code, words of the one-line detail)
EXPECTED = {
    ("hostile_loop", "run"): ("timeout", "did not answer invoke within 2.0s; it was stopped"),
    ("hostile_memory", "run"): ("out_of_memory", "ran out of memory"),
    ("hostile_fork", "bomb"): ("process_limit", "process limit"),
    ("hostile_fork", "spawn_and_return"): ("stray_processes", "process(es) running after invoke; it was stopped"),
    ("hostile_garbage", "run"): ("protocol", "broke the container protocol"),
}


def test_hostile_cryptlets_are_contained_while_another_is_served(fabric_host, registered):
    outcomes: dict[tuple[str, str], httpx.Response] = {}

    def attack(name: str, method: str) -> None:
        with fabric_host.client() as http:
            outcomes[(name, method)] = invoke(http, name, method)

    threads = [threading.Thread(target=attack, args=key) for key in EXPECTED]
    served = 0
    with fabric_host.client() as http:
        validate_once(http, registered["customer_validator"])  # warm
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):  # meanwhile: the well-behaved cryptlet keeps answering
            validate_once(http, registered["customer_validator"])
            served += 1
        for thread in threads:
            thread.join()
        assert served >= 3, "the well-behaved cryptlet was not served while the hostile ones ran"
        for key, (region_code, words) in EXPECTED.items():
            response = outcomes[key]
            assert response.status_code == 502, (key, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            problem = response.json()
            assert problem["code"] == "region_failed" and problem["region_code"] == region_code, (key, problem)
            assert words in problem["detail"] and "\n" not in problem["detail"], (key, problem)
        # The pool replaced every stopped region: the hostile ones fail the same clear way again,
        # and the well-behaved one is still served.
        again = invoke(http, "hostile_garbage")
        assert again.status_code == 502 and again.json()["region_code"] == "protocol"
        validate_once(http, registered["customer_validator"])


def test_snooping_cryptlet_finds_no_host_secrets(fabric_host, registered):
    with fabric_host.client() as http:
        response = invoke(http, "hostile_snoop")
        assert response.status_code == 200, response.text
        validate_once(http, registered["customer_validator"])
    loot = response.json()["payload"]
    text = json.dumps(loot)
    assert set(loot["environ"]) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR"}
    assert fabric_host.storage not in text  # the storage connection string (with its endpoints)
    for secret in (fabric_host.sealing_secret.hex(), base64.b64encode(fabric_host.sealing_secret).decode()):
        assert secret not in text  # the platform sealing secret, in any form the host holds it
    assert fabric_host.key not in text  # the function key
    assert loot["connected"] == []  # no network: not Azurite, not the dev host, not the internet
    if os.geteuid() == 0:
        assert loot["uid"] != 0  # it ran as its own unprivileged uid
        assert f"/proc/{fabric_host.process.pid}/environ" not in loot["found"]  # the host's environment
    # Files only the host's user may read stay unread (e.g. `make run`'s dev secrets).
    for private in (PROJECT_ROOT / ".devdata").glob("*"):
        if private.is_file() and not private.stat().st_mode & 0o044:
            assert private.read_text().strip() not in text
