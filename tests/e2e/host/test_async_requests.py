"""Asynchronous invocations through the queue trigger, with results and poison handling."""

from __future__ import annotations

import base64
import json
import secrets
import time

from azure.storage.queue import QueueClient

from devhost.azurite import DEV_ACCOUNT  # noqa: F401  (documents which account the queues live in)
from shared.encoding import from_hex
from shared.envelope import Envelope, verify_envelope
from shared.events.delivery import signer_of
from shared.host.queued_calls import QueuedRequest, RequestStore
from shared.storage import table_client
from tests.helpers import wait_for


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
        assert (
            http.post("/api/cryptlets/customer_validator/requests", json={"method": "nope"}).json()["field"] == "method"
        )
        assert http.post("/api/cryptlets/missing/requests", json={"method": "x"}).status_code == 404
        assert http.get("/api/requests/0x" + "00" * 32).status_code == 404
        assert http.get("/api/requests/nothex").json()["field"] == "request_id"


def test_request_that_cannot_succeed_is_recorded_failed(fabric_host, registered):
    with fabric_host.client() as http:
        accepted = http.post(
            "/api/cryptlets/customer_validator/requests",
            json={"method": "validate", "args": {"customer": "not an object", "salt": "00"}},
        )
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


def _expiry_is_signed_by_the_fabric(fabric_host, result: dict, request_id: str) -> None:
    assert result["status"] == "expired"
    error = result["error"]
    assert error["status"] == 410 and error["result"]["request_id"] == request_id
    with fabric_host.client() as http:
        delivery_address = http.get("/api/attestation").json()["delivery_address"]
    assert error["signer"] == delivery_address
    assert signer_of(error["result"], from_hex(error["signature"])) == delivery_address


def test_a_queued_request_past_its_deadline_is_not_run_but_fails_signed(fabric_host, registered):
    request_id = "0x" + secrets.token_hex(32)
    message = {
        "request_id": request_id,
        "name": "customer_validator",
        "method": "rules",
        "args": {},
        "deadline_ms": int(time.time() * 1000) - 1,
    }  # e.g. it waited in the queue too long
    QueueClient.from_connection_string(fabric_host.storage, f"{fabric_host.table_prefix}-invocations").send_message(
        base64.b64encode(json.dumps(message).encode()).decode()
    )
    with fabric_host.client() as http:
        result = wait_for(lambda: (r := http.get(f"/api/requests/{request_id}")).status_code == 200 and r.json())
    assert "envelope" not in result
    _expiry_is_signed_by_the_fabric(fabric_host, result, request_id)


def test_a_pending_request_past_its_deadline_reads_as_expired(fabric_host, registered):
    request_id = "0x" + secrets.token_hex(32)
    store = RequestStore(table_client(fabric_host.storage, f"{fabric_host.table_prefix}requests"))
    store.pending(QueuedRequest(request_id, "customer_validator", "rules", {}, int(time.time() * 1000) - 1))
    with fabric_host.client() as http:
        result = http.get(f"/api/requests/{request_id}").json()
    _expiry_is_signed_by_the_fabric(fabric_host, result, request_id)


def test_request_deadlines_are_validated(fabric_host, registered):
    with fabric_host.client() as http:
        for deadline in (int(time.time() * 1000) - 5, "soon", int(time.time() * 1000) + 8 * 86400 * 1000):
            response = http.post(
                "/api/cryptlets/customer_validator/requests", json={"method": "rules", "deadline_ms": deadline}
            )
            assert response.status_code == 400 and response.json()["field"] == "deadline_ms"
        accepted = http.post(
            "/api/cryptlets/customer_validator/requests",
            json={"method": "rules", "deadline_ms": int(time.time() * 1000) + 60_000},
        )
        assert accepted.status_code == 202
        result = wait_for(lambda: (r := http.get(accepted.headers["location"]).json())["status"] != "pending" and r)
    assert result["status"] == "done"
