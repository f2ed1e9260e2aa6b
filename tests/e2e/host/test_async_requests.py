"""Asynchronous invocations through the queue trigger: results, poison handling, idempotent request ids,
deadlines (expired only if never run) and the recovery sweep."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time

from azure.storage.queue import QueueClient

from devhost.azurite import DEV_ACCOUNT  # noqa: F401  (documents which account the queues live in)
from shared.encoding import from_hex
from shared.envelope import Envelope, verify_envelope
from shared.events.delivery import signer_of
from shared.host.queued_calls import QueuedRequest, RequestStore
from shared.storage import table_client
from tests.e2e.conftest import register
from tests.helpers import wait_for

FABRIC_HOST_SETTINGS = {"FABRIC_REQUEST_SWEEP_SCHEDULE": "*/2 * * * * *"}
COUNTER = "/api/cryptlets/event_counter"


def finished(http, location: str) -> dict:
    return wait_for(lambda: (r := http.get(location).json())["status"] not in ("pending", "running") and r)


def state_of(http) -> dict:
    return http.get(f"{COUNTER}/state").json()


def queue_drained(fabric_host) -> None:
    """Wait until the invocation queue holds no message, visible or not."""
    queue = QueueClient.from_connection_string(fabric_host.storage, f"{fabric_host.table_prefix}-invocations")
    wait_for(lambda: queue.get_queue_properties().approximate_message_count == 0, timeout=60)


def test_queued_request_completes_with_a_signed_envelope(fabric_host, registered):
    with fabric_host.client() as http:
        accepted = http.post("/api/cryptlets/customer_validator/requests", json={"method": "rules"})
        assert accepted.status_code == 202, accepted.text
        location = accepted.headers["location"]
        assert http.get(location).json()["status"] in ("pending", "running", "done")
        result = wait_for(lambda: (r := http.get(location).json())["status"] not in ("pending", "running") and r)
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
        result = wait_for(lambda: (r := http.get(location).json())["status"] not in ("pending", "running") and r)
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
        result = wait_for(
            lambda: (r := http.get(accepted.headers["location"]).json())["status"] not in ("pending", "running") and r
        )
    assert result["status"] == "done"


def test_a_request_id_is_accepted_once_and_runs_once(fabric_host, registered):
    register(fabric_host, "event_counter")
    request_id = "0x" + secrets.token_hex(32)
    body = {"method": "count", "args": {"label": "once"}, "request_id": request_id}
    with fabric_host.client() as http:
        before = state_of(http)["version"]
        first = http.post(f"{COUNTER}/requests", json=body)
        assert first.status_code == 202, first.text
        again = http.post(f"{COUNTER}/requests", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["request_id"] == request_id and again.json()["status"] in ("pending", "running", "done")
        assert again.headers["location"] == first.headers["location"] == f"/api/requests/{request_id}"
        result = finished(http, first.headers["location"])
        assert result["status"] == "done" and result["attempts"] == 1
        replay = http.post(f"{COUNTER}/requests", json=body)
        assert replay.status_code == 200 and replay.json()["status"] == "done"
        assert replay.json()["envelope"] == result["envelope"]
        queue_drained(fabric_host)
        assert state_of(http)["version"] == before + 1


def test_a_request_id_reused_for_another_call_is_a_conflict(fabric_host, registered):
    request_id = "0x" + secrets.token_hex(32)
    with fabric_host.client() as http:
        body = {"method": "count", "args": {"label": "a"}, "request_id": request_id}
        assert http.post(f"{COUNTER}/requests", json=body).status_code == 202
        for other in (
            {**body, "args": {"label": "b"}},
            {**body, "method": "observe", "args": {}},
        ):
            response = http.post(f"{COUNTER}/requests", json=other)
            assert response.status_code == 409 and response.json()["field"] == "request_id", response.text
        elsewhere = http.post(
            "/api/cryptlets/customer_validator/requests", json={"method": "rules", "request_id": request_id}
        )
        assert elsewhere.status_code == 409 and elsewhere.json()["field"] == "request_id"
        assert finished(http, f"/api/requests/{request_id}")["status"] == "done"


def test_racing_posts_of_one_request_id_enqueue_it_once(fabric_host, registered):
    request_id = "0x" + secrets.token_hex(32)
    body = {"method": "count", "args": {"label": "race"}, "request_id": request_id}
    with fabric_host.client() as http:
        before = state_of(http)["version"]
    codes: list[int] = []

    def post() -> None:
        with fabric_host.client() as client:
            codes.append(client.post(f"{COUNTER}/requests", json=body).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200] * 7 + [202]
    with fabric_host.client() as http:
        assert finished(http, f"/api/requests/{request_id}")["status"] == "done"
        queue_drained(fabric_host)
        assert state_of(http)["version"] == before + 1


def test_a_message_for_a_finished_request_is_dropped_unrun(fabric_host, registered):
    request_id = "0x" + secrets.token_hex(32)
    with fabric_host.client() as http:
        accepted = http.post(f"{COUNTER}/requests", json={"method": "count", "request_id": request_id})
        done = finished(http, accepted.headers["location"])
        assert done["status"] == "done"
        queue_drained(fabric_host)
        version = state_of(http)["version"]
        message = QueuedRequest(request_id, "event_counter", "count", {}, int(time.time() * 1000) + 60_000)
        queue = QueueClient.from_connection_string(fabric_host.storage, f"{fabric_host.table_prefix}-invocations")
        for _ in range(2):  # e.g. the queue redelivers it, or a sweep re-enqueued it
            queue.send_message(base64.b64encode(message.to_message().encode()).decode())
        queue_drained(fabric_host)
        assert state_of(http)["version"] == version
        assert http.get(accepted.headers["location"]).json() == done


def test_a_request_that_may_have_started_is_never_reported_expired(fabric_host, registered):
    """A running request whose worker vanished and whose deadline passed fails ``interrupted``: only a
    request that never started is ``expired``."""
    store = RequestStore(table_client(fabric_host.storage, f"{fabric_host.table_prefix}requests"))
    request_id = "0x" + secrets.token_hex(32)
    now = int(time.time() * 1000)
    assert store.pending(QueuedRequest(request_id, "event_counter", "count", {}, now + 1500))
    row = store.read(request_id)
    store.update(row, "running", attempts=1, lease_until_ms=now - 1, check_after_ms=now + 1500)
    time.sleep(1.6)
    with fabric_host.client() as http:
        assert http.get(f"/api/requests/{request_id}").json()["status"] in ("running", "failed")
        result = wait_for(lambda: (r := http.get(f"/api/requests/{request_id}").json())["status"] != "running" and r)
    assert result["status"] == "failed" and result["error"]["code"] == "interrupted", result
    assert "envelope" not in result


def test_the_sweep_runs_a_pending_request_whose_message_was_lost(fabric_host, registered):
    store = RequestStore(table_client(fabric_host.storage, f"{fabric_host.table_prefix}requests"))
    request_id = "0x" + secrets.token_hex(32)
    now = int(time.time() * 1000)
    assert store.pending(QueuedRequest(request_id, "event_counter", "count", {"label": "lost"}, now + 60_000))
    store.update(store.read(request_id), check_after_ms=now)  # as if RECHECK_MS had passed with no worker
    with fabric_host.client() as http:
        result = finished(http, f"/api/requests/{request_id}")
    assert result["status"] == "done" and result["envelope"]["request_id"] == request_id


def test_an_oversized_request_is_refused_before_queueing(fabric_host, registered):
    with fabric_host.client() as http:
        response = http.post(f"{COUNTER}/requests", json={"method": "count", "args": {"label": "x" * (60 * 1024)}})
    assert response.status_code == 413 and response.json()["field"] == "args", response.text
