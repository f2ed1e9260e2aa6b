"""Three dev host processes on one storage account, as Azure Functions scales one app out: key
operations from any host, envelope sequence numbers unique across hosts, and a contract cryptlet's
state changed from two hosts at once."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from shared.envelope import Envelope, verify_envelope
from shared.keys.history import KeyHistory
from shared.ledger.chain import Ledger
from shared.storage import table_client
from tests.e2e.conftest import FabricHost, register
from tests.helpers import wait_for

CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}
BLOCK = 17  # SEQUENCE_BLOCK: an envelope and up to 16 events
THREADS, CALLS = 8, 50  # per host: 1,200 envelopes from three hosts


@pytest.fixture(scope="module")
def hosts(fabric_host: FabricHost) -> Iterator[list[FabricHost]]:
    """``fabric_host`` and two more instances of the same app on the same storage."""
    with contextlib.ExitStack() as stack:
        yield [fabric_host, stack.enter_context(fabric_host.twin()), stack.enter_context(fabric_host.twin())]


@pytest.fixture(scope="module")
def validator(fabric_host: FabricHost) -> dict:
    return register(fabric_host, "customer_validator")


def validate(http: httpx.Client) -> httpx.Response:
    return http.post(
        "/api/cryptlets/customer_validator/invoke",
        json={"method": "validate", "args": {"customer": CUSTOMER, "salt": "0x" + secrets.token_hex(32)}},
    )


def on_hosts(hosts: list[FabricHost], work: Callable[[int, httpx.Client], Any], threads: int = 1) -> list[Any]:
    """Run ``work(host index, client)`` in ``threads`` threads per host at once; their results in order."""
    start = threading.Barrier(len(hosts) * threads)

    def run(index: int) -> Any:
        with hosts[index // threads].client() as http:
            start.wait(timeout=60)
            return work(index // threads, http)

    with ThreadPoolExecutor(len(hosts) * threads) as pool:
        return list(pool.map(run, range(len(hosts) * threads)))


def ledger_of(host: FabricHost) -> Ledger:
    return Ledger(table_client(host.storage, f"{host.table_prefix}ledger", create=False), "registry")


def assert_blocks_disjoint(sequences: list[int], what: str) -> None:
    """Every reserved block ``[s, s + BLOCK)`` is distinct from every other."""
    ordered = sorted(sequences)
    overlaps = [(a, b) for a, b in zip(ordered, ordered[1:], strict=False) if b - a < BLOCK]
    assert not overlaps, f"{len(overlaps)} overlapping {what} blocks, e.g. {overlaps[:3]}"


# -- sequence numbers ---------------------------------------------------------------------------
def test_three_hosts_never_sign_overlapping_sequence_numbers(hosts, validator) -> None:
    address = validator["address"].lower()

    def calls(_: int, http: httpx.Client) -> list[int]:
        sequences = []
        for _ in range(CALLS):
            response = validate(http)
            assert response.status_code == 200, response.text
            assert verify_envelope(Envelope.from_dict(response.json())).lower() == address
            sequences.append(response.json()["sequence"])
        return sequences

    results = on_hosts(hosts, calls, threads=THREADS)  # 3 x THREADS callers at a time
    sequences = [s for batch in results for s in batch]
    assert len(sequences) == 3 * THREADS * CALLS
    assert_blocks_disjoint(sequences, "envelope")
    for batch in results:  # one caller's envelopes: later calls, higher numbers
        assert batch == sorted(batch)


def test_envelopes_and_events_from_three_hosts_have_distinct_sequences(hosts) -> None:
    escrow = register(hosts[0], "escrow_contract")

    def deposits(index: int, http: httpx.Client) -> list[tuple[int, list[int]]]:
        seen = []
        for i in range(12):
            response = http.post(
                "/api/cryptlets/escrow_contract/invoke",
                json={"method": "deposit", "args": {"party": f"host{index}", "amount": i + 1}},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert [verify_envelope(Envelope.from_dict(e)).lower() for e in body["events"]] == [
                escrow["address"].lower()
            ]
            seen.append((body["sequence"], [e["sequence"] for e in body["events"]]))
        return seen

    results = [pair for batch in on_hosts(hosts, deposits, threads=3) for pair in batch]
    assert len(results) == 108
    assert all(events == [sequence + 1] for sequence, events in results)  # an event takes the next number
    everything = [s for sequence, events in results for s in (sequence, *events)]
    assert len(set(everything)) == len(everything) == 216
    assert_blocks_disjoint([sequence for sequence, _ in results], "envelope")


# -- contract state -----------------------------------------------------------------------------
def test_contract_called_on_two_hosts_at_once_advances_once_per_call(hosts) -> None:
    register(hosts[0], "event_counter")
    pair = hosts[:2]

    def count(index: int, http: httpx.Client) -> list[dict]:
        out = []
        for i in range(12):
            response = http.post(
                "/api/cryptlets/event_counter/invoke", json={"method": "count", "args": {"label": f"{index}-{i}"}}
            )
            assert response.status_code == 200, response.text
            out.append(response.json()["payload"])
        return out

    payloads = [p for batch in on_hosts(pair, count, threads=4) for p in batch]  # 96 calls, 8 at a time
    assert sorted(p["state"]["version"] for p in payloads) == list(range(1, 97))  # each call: one version
    assert sorted(p["result"]["count"] for p in payloads) == list(range(1, 97))
    with hosts[1].client() as http:
        stored = http.get("/api/cryptlets/event_counter/state").json()
    assert stored["version"] == 96 and stored["state"]["count"] == 96

    # queued calls, accepted on both hosts and run by the queue workers of all three
    def enqueue(index: int, http: httpx.Client) -> list[str]:
        locations = []
        for i in range(20):
            accepted = http.post(
                "/api/cryptlets/event_counter/requests", json={"method": "count", "args": {"label": f"q{index}-{i}"}}
            )
            assert accepted.status_code == 202, accepted.text
            locations.append(accepted.headers["location"])
        return locations

    locations = [loc for batch in on_hosts(pair, enqueue) for loc in batch]
    with hosts[0].client() as http:

        def finished() -> list[dict] | None:
            results = [http.get(location).json() for location in locations]
            return results if all(r["status"] != "pending" for r in results) else None

        results = wait_for(finished, timeout=180, interval=1.0)
        stored = http.get("/api/cryptlets/event_counter/state").json()
    failed = [r for r in results if r["status"] != "done"]
    assert not failed, failed[:3]
    assert sorted(r["envelope"]["payload"]["state"]["version"] for r in results) == list(range(97, 137))
    assert stored["version"] == 136 and stored["state"]["count"] == 136


# -- key operations -----------------------------------------------------------------------------
def signer_on(host: FabricHost) -> str:
    with host.client() as http:
        response = validate(http)
    assert response.status_code == 200, response.text
    return verify_envelope(Envelope.from_dict(response.json())).lower()


def test_key_operations_from_three_hosts_all_succeed_and_the_ledger_verifies(hosts, validator) -> None:
    own = ["customer_validator", "sla_monitor", "property_privacy"]  # one cryptlet per host
    extra = ["market_watcher", "option_pricer", "egress_probe"]  # registered in the middle of it all
    shared = "event_ticker"  # rotated by all three hosts at once
    documents = on_hosts(hosts, lambda i, _: register(hosts[i], [shared, *own[1:]][i]))  # appends from 3 hosts
    first = {d["name"]: d["address"].lower() for d in [validator, *documents]}
    assert all(signer_on(host) == first["customer_validator"] for host in hosts)  # every host's pool: key 1

    def operate(i: int, http: httpx.Client) -> dict[str, str]:
        name = own[i]

        def post(path: str, body: dict | None = None, status: int = 200) -> dict:
            response = http.post(path, json=body) if body is not None else http.post(path)
            assert response.status_code == status, f"host {i} {path}: {response.text}"
            return response.json()

        rotated = post(f"/api/cryptlets/{name}/keys/rotate")["registration"]["address"]
        post(f"/api/cryptlets/{shared}/keys/rotate")
        post("/api/cryptlets", {"package": extra[i]}, status=201)
        revoked = post(f"/api/cryptlets/{name}/keys/revoke", {"reason": "compromised"})  # the current key
        assert [e["kind"] for e in revoked["entries"]] == ["cryptlet.key_revoked", "cryptlet.key_rotated"]
        assert revoked["entries"][0]["payload"]["address"].lower() == rotated.lower()
        post(f"/api/cryptlets/{shared}/keys/rotate")
        post(f"/api/cryptlets/{name}/keys/revoke", {"address": first[name], "reason": "superseded"})  # a past key
        return {"rotated": rotated.lower(), "current": revoked["registration"]["address"].lower()}

    outcomes = on_hosts(hosts, operate)

    retirements = on_hosts(hosts, lambda _, http: http.post(f"/api/cryptlets/{shared}/retire"))
    assert sorted(r.status_code for r in retirements) == [200, 404, 404], [r.text for r in retirements]
    assert all(r.json()["field"] == "name" for r in retirements if r.status_code == 404)

    ledger = ledger_of(hosts[0])
    head = ledger.verify()  # raises at the first bad entry
    entries = ledger.read(1, head.size)
    history = KeyHistory()
    for entry in entries:
        history.apply(entry)
    for i, name in enumerate(own):
        records = history.keys_of(name)
        assert [r.address.lower() for r in records] == [first[name], outcomes[i]["rotated"], outcomes[i]["current"]]
        assert [r.status for r in records] == ["revoked", "revoked", "active"]
    shared_keys = history.keys_of(shared)
    assert len(shared_keys) == 7 and [r.status for r in shared_keys] == ["superseded"] * 6 + ["retired"]
    rotations = [e for e in entries if e.kind == "cryptlet.key_rotated" and e.payload["name"] == shared]
    assert [e.payload["previous_address"] for e in rotations] == [r.address for r in shared_keys[:-1]]  # one line
    assert {e.payload["name"] for e in entries if e.kind == "cryptlet.registered"} >= {*own, *extra, shared}
    lists = []
    for host in hosts:  # every host answers with the same key history
        with host.client() as http:
            lists.append([http.get(f"/api/cryptlets/{name}/keys").json()["keys"] for name in [*own, shared]])
    assert lists[0] == lists[1] == lists[2]

    # the other hosts pick up host 0's new key of customer_validator (registration cache, then pool)
    current = outcomes[0]["current"]
    for host in hosts:
        wait_for(lambda host=host: signer_on(host) == current, timeout=15, interval=0.5)
