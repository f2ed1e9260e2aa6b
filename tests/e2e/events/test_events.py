"""The event engine end to end: real Azurite, a real dev host (its scheduler timer and fire queue
worker), test cryptlets in real regions, and a callback receiver on 127.0.0.1 in the test."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.storage.queue import QueueClient
from eth_account import Account
from eth_account.messages import encode_defunct

from shared.encoding import canonical_json
from shared.envelope import Envelope, verify_envelope
from shared.events import webhooks
from shared.events.history import HistoryRow
from shared.events.subscriptions import Subscription, SubscriptionStore, new_id
from shared.storage import resolve_connection_string, table_client
from tests.e2e.conftest import register
from tests.helpers import wait_for

QUEUE = "fires" + uuid.uuid4().hex[:10]
FABRIC_HOST_SETTINGS = {
    "FABRIC_FIRE_QUEUE": QUEUE,
    "FABRIC_DELIVERY_BACKOFF_MAX_S": "1",
    "FABRIC_CALLBACK_ALLOW": "127.0.0.1",  # the callback receiver is on loopback
}


# -- a callback receiver ---------------------------------------------------------------------------------
class Receiver:
    """HTTP server on 127.0.0.1: ``/ok/...`` records and answers 200, ``/fail/...`` answers 500."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.failures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 500 if self.path.startswith("/fail") else 200
                if status == 200:
                    with receiver.lock:
                        receiver.deliveries.append(
                            {
                                "path": self.path,
                                "raw": raw,
                                "body": json.loads(raw),
                                "signature": self.headers.get("X-Fabric-Signature"),
                                "received_ms": time.time_ns() // 1_000_000,
                            }
                        )
                else:
                    with receiver.lock:
                        receiver.failures += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, subscription_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [d for d in self.deliveries if d["body"]["subscription"] == subscription_id]

    def wait(self, subscription_id: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(subscription_id)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return self.of(subscription_id)


def check_signed(delivery: dict[str, Any], delivery_address: str) -> None:
    """The body is canonical JSON and X-Fabric-Signature is the fabric's personal_sign of it."""
    raw = delivery["raw"]
    assert canonical_json(json.loads(raw)) == raw
    signer = Account.recover_message(encode_defunct(primitive=raw), signature=delivery["signature"])
    assert signer == delivery_address


def check_envelope(envelope: dict[str, Any], cryptlet_address: str) -> None:
    verify_envelope(Envelope.from_dict({k: v for k, v in envelope.items() if k != "events"}), cryptlet_address)


# -- fixtures and helpers ----------------------------------------------------------------------------------
def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as instance:
        yield instance


@pytest.fixture(scope="module")
def engine(fabric_host):
    """Register the test cryptlets once; return (host, addresses, delivery address, stores)."""
    addresses = {name: register(fabric_host, name)["address"] for name in ("event_ticker", "event_counter")}
    with fabric_host.client() as client:
        attestation = client.get("/api/attestation").json()
    store = SubscriptionStore(table_client(fabric_host.storage, f"{fabric_host.table_prefix}subscriptions"))
    history = table_client(fabric_host.storage, f"{fabric_host.table_prefix}history")
    return {
        "host": fabric_host,
        "addresses": addresses,
        "delivery_address": attestation["delivery_address"],
        "store": store,
        "history": history,
    }


def subscribe(
    engine,
    *,
    cryptlet="event_ticker",
    method="tick",
    args=None,
    trigger,
    target,
    deadline_ms=None,
    observe=None,
    created_ms=None,
) -> tuple[Subscription, str | None]:
    """Create a subscription row directly (as the subscription API does); returns it and a webhook secret."""
    sid = new_id()
    secret = sealed = None
    if trigger["type"] == "webhook":
        secret, sealed = webhooks.issue_secret(engine["host"].sealing_secret, sid)
    subscription = Subscription(
        id=sid,
        subscriber="tests",
        cryptlet=cryptlet,
        method=method,
        args=args or {},
        trigger=trigger,
        target=target,
        deadline_ms=deadline_ms or now_ms() + 600_000,
        created_ms=created_ms or now_ms(),
        observe=observe,
        webhook_secret_sealed=sealed,
    )
    engine["store"].create(subscription)
    return subscription, secret


def cancel(engine, subscription_id: str) -> None:
    for _ in range(20):
        subscription, etag = engine["store"].get(subscription_id)
        try:
            engine["store"].update(subscription, etag, status="cancelled")
            return
        except Exception:
            time.sleep(0.05)


def history_rows(engine, subscription_id: str) -> list[HistoryRow]:
    return [
        HistoryRow.from_entity(e)
        for e in engine["history"].query_entities("PartitionKey eq @p", parameters={"p": subscription_id})
    ]


def aligned(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def post_webhook(client, subscription_id: str, secret: str, event: Any, *, bad: bool = False):
    body = json.dumps(event).encode()
    header = webhooks.sign(secret, body if not bad else body + b" ", int(time.time()))
    return client.post(
        f"/api/webhooks/{subscription_id}",
        content=body,
        headers={"X-Webhook-Signature": header, "Content-Type": "application/json"},
    )


# -- tests -------------------------------------------------------------------------------------------------
def test_attestation_publishes_the_delivery_address(engine):
    assert engine["delivery_address"].startswith("0x") and len(engine["delivery_address"]) == 42


def test_one_second_interval_over_ten_seconds_delivers_ten_signed_results(engine, receiver):
    start = (now_ms() // 1000 + 3) * 1000
    subscription, _ = subscribe(
        engine,
        args={"label": "interval"},
        trigger={"type": "interval", "seconds": 1, "start": aligned(start)},
        target={"type": "callback", "url": f"{receiver.url}/ok/interval"},
    )
    time.sleep((start + 10_000 - now_ms()) / 1000 + 1.5)
    cancel(engine, subscription.id)
    window = [d for d in receiver.of(subscription.id) if start <= d["body"]["sequence"] < start + 10_000]
    sequences = [d["body"]["sequence"] for d in window]
    assert sorted(set(sequences)) == [start + 1000 * k for k in range(10)], sequences
    assert len(sequences) == 10, "a fire was delivered twice"
    for delivery in window:
        check_signed(delivery, engine["delivery_address"])
        body = delivery["body"]
        assert body["status"] == "ok" and body["fire"]["reason"] == "schedule"
        check_envelope(body["envelope"], engine["addresses"]["event_ticker"])
        assert body["envelope"]["payload"]["label"] == "interval"
        assert body["envelope"]["timestamp"] >= body["sequence"], "the cryptlet ran before the fire's instant"
        assert delivery["received_ms"] - body["sequence"] < 1000
    rows = {r.sequence: r for r in history_rows(engine, subscription.id)}
    assert all(rows[s].status == "delivered" and rows[s].delivery_signature for s in sequences)


def test_threshold_fires_once_per_crossing(engine, receiver):
    # event_counter.observe replays 38, 41, 42, 39.8, 39.0, 40.5, 39.2, 38, 42 (then 42 forever):
    # above 40 with hysteresis 0.5 -> crossings at observations 1, 5 and 8 only
    subscription, _ = subscribe(
        engine,
        cryptlet="event_counter",
        method="observe",
        trigger={"type": "threshold", "level": 40, "direction": "above", "hysteresis": 0.5},
        observe={"field": "price", "every_s": 1},
        target={"type": "callback", "url": f"{receiver.url}/ok/threshold"},
    )
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        state = engine["store"].get(subscription.id)[0].trigger.get("state", {})
        if state.get("last_value") == 42.0 and len(receiver.of(subscription.id)) >= 3:
            break
        time.sleep(0.2)
    time.sleep(2.5)  # two more observations at 42: no new fire
    cancel(engine, subscription.id)
    deliveries = receiver.of(subscription.id)
    observed = [d["body"]["envelope"]["payload"]["result"]["i"] for d in deliveries]  # a contract's payload
    assert observed == [1, 5, 8], observed
    for delivery in deliveries:
        check_signed(delivery, engine["delivery_address"])
        check_envelope(delivery["body"]["envelope"], engine["addresses"]["event_counter"])
        assert delivery["body"]["fire"]["reason"] == "threshold_crossed"
        # the delivered envelope IS the observation (not a second invocation)
        assert delivery["body"]["envelope"]["payload"]["result"]["price"] == delivery["body"]["fire"]["value"]
    assert len({r.sequence for r in history_rows(engine, subscription.id)}) == 3


def test_deviation_heartbeat_to_the_history_target(engine):
    # runs after the threshold test: the feed now stays at 42, so after "first" only heartbeats fire
    subscription, _ = subscribe(
        engine,
        cryptlet="event_counter",
        method="observe",
        trigger={"type": "deviation_heartbeat", "deviation_fraction": 0.01, "heartbeat_s": 2},
        observe={"field": "price", "every_s": 1},
        target={"type": "history"},
    )
    deadline = time.monotonic() + 30
    rows: list[HistoryRow] = []
    while time.monotonic() < deadline:
        rows = history_rows(engine, subscription.id)
        if len(rows) >= 2 and all(r.status == "delivered" for r in rows):
            break
        time.sleep(0.2)
    cancel(engine, subscription.id)
    reasons = [r.fire["reason"] for r in rows]
    assert reasons[:2] == ["first", "heartbeat"], reasons
    assert all(r.status == "delivered" and r.result == "ok" for r in rows)
    for row in rows:
        check_envelope(row.envelope, engine["addresses"]["event_counter"])
        assert row.envelope["timestamp"] == row.sequence  # the observation's envelope, recorded as is


def test_webhook_with_bad_hmac_is_refused_and_good_one_delivered(engine, receiver):
    subscription, secret = subscribe(
        engine, trigger={"type": "webhook"}, target={"type": "callback", "url": f"{receiver.url}/ok/webhook"}
    )
    with engine["host"].client(key=None) as client:
        bad = post_webhook(client, subscription.id, secret, {"customer": "c1", "rating": "B"}, bad=True)
        assert bad.status_code == 401 and bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["field"] == "X-Webhook-Signature"
        missing = client.post(f"/api/webhooks/{subscription.id}", json={"x": 1})
        assert missing.status_code == 401
        assert history_rows(engine, subscription.id) == []  # nothing was claimed or enqueued
        good = post_webhook(client, subscription.id, secret, {"customer": "c1", "rating": "B"})
        assert good.status_code == 202, good.text
    deliveries = receiver.wait(subscription.id, 1)
    time.sleep(1)
    assert len(receiver.of(subscription.id)) == 1
    body = deliveries[0]["body"]
    check_signed(deliveries[0], engine["delivery_address"])
    assert body["sequence"] == good.json()["sequence"] and body["fire"]["reason"] == "webhook"
    assert body["envelope"]["payload"]["event"] == {"customer": "c1", "rating": "B"}
    check_envelope(body["envelope"], engine["addresses"]["event_ticker"])


def test_cryptlet_refusal_is_delivered_as_a_signed_failed_result(engine, receiver):
    subscription, secret = subscribe(
        engine,
        method="refuse",
        trigger={"type": "webhook"},
        target={"type": "callback", "url": f"{receiver.url}/ok/refused"},
    )
    with engine["host"].client(key=None) as client:
        assert post_webhook(client, subscription.id, secret, {"n": 1}).status_code == 202
    delivery = receiver.wait(subscription.id, 1)[0]
    check_signed(delivery, engine["delivery_address"])
    assert delivery["body"]["status"] == "failed" and delivery["body"]["envelope"] is None
    assert delivery["body"]["error"]["status"] == 400 and delivery["body"]["error"]["field"] == "args"


def test_duplicated_fire_message_has_a_single_effect(engine, receiver):
    subscription, _ = subscribe(
        engine,
        cryptlet="event_counter",
        method="count",
        trigger={"type": "webhook"},
        target={"type": "callback", "url": f"{receiver.url}/ok/duplicate"},
    )
    host = engine["host"]
    with host.client() as client:
        before = client.get("/api/cryptlets/event_counter/state").json()["state"].get("count", 0)
    at = now_ms()
    message = {
        "subscription": subscription.id,
        "sequence": at,
        "key": f"webhook:{at}",
        "at_ms": at,
        "reason": "webhook",
        "args": {"label": "dup"},
    }
    queue = QueueClient.from_connection_string(resolve_connection_string(host.storage), QUEUE)
    encoded = base64.b64encode(json.dumps(message).encode()).decode()
    queue.send_message(encoded)
    queue.send_message(encoded)  # the same fire twice
    receiver.wait(subscription.id, 1)
    # both copies settled: a queue message is deleted only after its function returned (visible or not,
    # an unsettled message is still counted)
    wait_for(lambda: queue.get_queue_properties().approximate_message_count == 0)
    with host.client() as client:
        after = client.get("/api/cryptlets/event_counter/state").json()["state"]["count"]
    assert after == before + 1, "the cryptlet was invoked more than once for one fire"
    rows = history_rows(engine, subscription.id)
    assert [(r.sequence, r.status) for r in rows] == [(at, "delivered")]
    deliveries = receiver.of(subscription.id)
    assert {json.dumps(d["body"]["envelope"], sort_keys=True) for d in deliveries} == {
        json.dumps(rows[0].envelope, sort_keys=True)
    }, "a duplicate delivered a different result"


def test_poison_message_reaches_the_dead_letter_queue_and_is_listed(engine, receiver):
    subscription, secret = subscribe(
        engine, trigger={"type": "webhook"}, target={"type": "callback", "url": f"{receiver.url}/fail/always"}
    )
    host = engine["host"]
    with host.client(key=None) as client:
        accepted = post_webhook(client, subscription.id, secret, {"n": "poison"})
        assert accepted.status_code == 202
    sequence = accepted.json()["sequence"]
    deadline = time.monotonic() + 60
    found = None
    with host.client() as client:
        while time.monotonic() < deadline and found is None:
            listed = client.get("/api/deadletters")
            assert listed.status_code == 200, listed.text
            found = next(
                (m for m in listed.json()["messages"] if m["fire"] and m["fire"]["subscription"] == subscription.id),
                None,
            )
            time.sleep(0.5)
    assert found is not None, "the message never reached the poison queue"
    assert found["fire"]["sequence"] == sequence
    assert found["history"]["attempts"] == 5 and found["history"]["status"] == "invoked"
    row = history_rows(engine, subscription.id)[0]
    assert row.envelope is not None, "the result was recorded once, before the deliveries failed"


def test_expired_subscription_gets_one_signed_expired_delivery(engine, receiver):
    created = now_ms()
    deadline = created + 3000
    subscription, _ = subscribe(
        engine,
        trigger={"type": "interval", "seconds": 1, "start": aligned(created // 1000 * 1000)},
        target={"type": "callback", "url": f"{receiver.url}/ok/expiring"},
        deadline_ms=deadline,
        created_ms=created,
    )
    time.sleep((deadline - now_ms()) / 1000 + 4)
    deliveries = receiver.of(subscription.id)
    expired = [d for d in deliveries if d["body"]["status"] == "expired"]
    assert len(expired) == 1, [d["body"]["status"] for d in deliveries]
    check_signed(expired[0], engine["delivery_address"])
    assert expired[0]["body"]["sequence"] == deadline and expired[0]["body"]["error"]["code"] == "deadline_expired"
    assert all(d["body"]["sequence"] < deadline for d in deliveries if d["body"]["status"] != "expired")
    assert engine["store"].get(subscription.id)[0].status == "expired"


def test_history_api_and_replay_cli(engine, receiver):
    subscription, secret = subscribe(engine, trigger={"type": "webhook"}, target={"type": "history"})
    host = engine["host"]
    with host.client(key=None) as client:
        for n in range(3):
            assert post_webhook(client, subscription.id, secret, {"n": n}).status_code == 202
    with host.client() as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listed = client.get(f"/api/subscriptions/{subscription.id}/history").json()["deliveries"]
            if len(listed) == 3 and all(d["status"] == "delivered" for d in listed):
                break
            time.sleep(0.2)
        assert [d["envelope"]["payload"]["event"]["n"] for d in listed] == [0, 1, 2]
        assert client.get(f"/api/subscriptions/{subscription.id}/history?limit=0").json()["field"] == "limit"
        assert client.get(f"/api/subscriptions/{new_id()}/history").status_code == 404
    ok = host.cli("history", "replay", subscription.id)
    assert ok.returncode == 0, ok.stderr
    # tamper with one recorded envelope: replay names it and fails
    entity = engine["history"].get_entity(subscription.id, f"{listed[1]['sequence']:013d}")
    envelope = json.loads(entity["envelope"])
    envelope["payload"]["event"]["n"] = 99
    entity["envelope"] = json.dumps(envelope)
    engine["history"].update_entity(entity)
    bad = host.cli("history", "replay", subscription.id)
    assert bad.returncode == 1
    assert str(listed[1]["sequence"]) in bad.stderr + bad.stdout


def test_two_hosts_ticking_never_double_fire(engine, receiver):
    host = engine["host"]
    with host.twin():
        start = (now_ms() // 1000 + 3) * 1000
        subscriptions = [
            subscribe(
                engine,
                args={"label": f"twin{i}"},
                trigger={"type": "interval", "seconds": 1, "start": aligned(start)},
                target={"type": "callback", "url": f"{receiver.url}/ok/twin"},
            )[0]
            for i in range(4)
        ]
        time.sleep((start + 6000 - now_ms()) / 1000 + 1.5)
        for subscription in subscriptions:
            cancel(engine, subscription.id)
        time.sleep(2)
    for subscription in subscriptions:
        deliveries = [d for d in receiver.of(subscription.id) if start <= d["body"]["sequence"] < start + 6000]
        sequences = [d["body"]["sequence"] for d in deliveries]
        assert sorted(sequences) == [start + 1000 * k for k in range(6)], sequences  # each once, none twice
        rows = [r for r in history_rows(engine, subscription.id) if start <= r.sequence < start + 6000]
        assert len(rows) == 6 and all(r.status == "delivered" and r.attempts == 1 for r in rows)
