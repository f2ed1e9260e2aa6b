"""Asynchronous invocations through the queue trigger, with results and poison handling."""
from __future__ import annotations

import base64
import time

import pytest
from azure.storage.queue import QueueClient

from devhost.azurite import DEV_ACCOUNT  # noqa: F401  (documents which account the queues live in)
from shared.envelope import Envelope, verify_envelope


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def registered(fabric_host):
    with fabric_host.client() as http:
        response = http.post("/api/cryptlets", json={"package": "customer_validator"})
    assert response.status_code in (201, 409), response.text
    with fabric_host.client() as http:
        return http.get("/api/cryptlets/customer_validator").json()


def test_queued_request_completes_with_a_signed_envelope(fabric_host, registered):
    with fabric_host.client() as http:
        accepted = http.post("/api/cryptlets/customer_validator/requests", json={"method": "rules"})
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        assert http.get(location).json()["status"] in ("pending", "done")
        result = wait_for(lambda: (r := http.get(location).json())["status"] != "pending" and r)
    assert result["status"] == "done"
    envelope = Envelope.from_dict(result["envelope"])
    assert verify_envelope(envelope, registered["address"])
    assert result["envelope"]["request_id"] == accepted.json()["request_id"]


def test_bad_requests_are_refused_before_queueing(fabric_host, registered):
    with fabric_host.client() as http:
        assert http.post("/api/cryptlets/customer_validator/requests", json={"method": "nope"}).json()["field"] == "method"
        assert http.post("/api/cryptlets/missing/requests", json={"method": "x"}).status_code == 404
        assert http.get("/api/requests/0x" + "00" * 32).status_code == 404
        assert http.get("/api/requests/nothex").json()["field"] == "request_id"


def test_request_that_cannot_succeed_is_recorded_failed(fabric_host, registered):
    with fabric_host.client() as http:
        accepted = http.post("/api/cryptlets/customer_validator/requests",
                             json={"method": "validate", "args": {"customer": "not an object", "salt": "00"}})
        location = accepted.headers["location"]
        result = wait_for(lambda: (r := http.get(location).json())["status"] != "pending" and r)
    assert result["status"] == "failed" and result["error"]["field"] == "args"


def test_malformed_queue_message_ends_in_the_poison_queue(fabric_host, registered):
    queue = f"{fabric_host.table_prefix}-invocations"
    client = QueueClient.from_connection_string(fabric_host.storage, queue)
    client.send_message(base64.b64encode(b"this is not a request").decode())
    poison = QueueClient.from_connection_string(fabric_host.storage, f"{queue}-poison")

    def poisoned():
        try:
            return [m.content for m in poison.peek_messages(max_messages=32)]
        except Exception:
            return None

    contents = wait_for(poisoned, timeout=180, interval=0.5)
    assert any(base64.b64decode(c) == b"this is not a request" for c in contents)
