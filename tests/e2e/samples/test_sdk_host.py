"""The SDK's features through the real dev host: the Node sample registered, invoked and verified
exactly like the Python ones; events; contract state kept between calls; egress and timeout set
by policy; min instances warmed again after a restart."""

from __future__ import annotations

import json
import threading
import time

import pytest

from shared.encoding import canonical_json, keccak256
from shared.envelope import Envelope, verify_envelope
from tests.e2e.conftest import register
from tests.helpers import QuietHandler, http_server

#: The warm timer also refreshes pools whose policy changed on another host: run it often here.
FABRIC_HOST_SETTINGS = {"FABRIC_WARM_SCHEDULE": "*/2 * * * * *"}
OBSERVATIONS = [{"at": 0, "up": True}, {"at": 600, "up": False}, {"at": 700, "up": True}]


@pytest.fixture(scope="module")
def registered(fabric_host) -> dict[str, dict]:
    """Two packages here: package name -> registration document."""
    return {name: register(fabric_host, name) for name in ("sla_monitor", "escrow_contract")}


@pytest.fixture(scope="module")
def status_server():
    class Status(QuietHandler):
        def do_GET(self) -> None:
            self.send_json(200, b'{"status": "green"}')

    with http_server(Status) as address:
        yield address


def test_node_sample_registers_invokes_and_verifies_like_python_ones(fabric_host, registered, tmp_path):
    sla = registered["sla_monitor"]
    assert sla["kind"] == "utility" and sorted(sla["events"]) == ["SlaBreached"]
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets/sla_monitor/invoke",
            json={
                "method": "evaluate",
                "args": {"observations": OBSERVATIONS, "period_end": 1000, "target_bp": 9990, "penalty_per_bp": "5"},
            },
        )
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["payload"] == {"availability_bp": 9000, "breached": True, "penalty": "4950"}
    [event] = document.pop("events")
    assert event["topic"] == "sla_monitor.SlaBreached" and event["sequence"] == document["sequence"] + 1
    for signed in (document, event):
        assert verify_envelope(Envelope.from_dict(signed), sla["address"]) == sla["address"]
        path = tmp_path / f"{signed['topic']}.json"
        path.write_text(json.dumps(signed))
        verified = fabric_host.cli("verify", "--allow-software-evidence", str(path))
        assert verified.returncode == 0, verified.stderr
    header = fabric_host.cli("header", "sla_monitor")
    assert header.returncode == 0, header.stderr
    assert "event SlaBreached(uint32 availability_bp, uint32 target_bp, uint256 penalty);" in header.stdout


def test_node_sample_bad_arguments_are_a_400_naming_args(fabric_host, registered):
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets/sla_monitor/invoke",
            json={
                "method": "evaluate",
                "args": {"observations": [], "period_end": 1, "target_bp": 1, "penalty_per_bp": 1},
            },
        )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "args"
    assert "observations must be a non-empty list" in response.json()["detail"]


def test_egress_policy_opens_fetch_to_one_host(fabric_host, registered, status_server):
    url = f"http://{status_server}/status"
    with fabric_host.client() as http:
        denied = http.post("/api/cryptlets/sla_monitor/invoke", json={"method": "probe", "args": {"url": url}})
        assert denied.status_code == 502, denied.text
        assert "egress_denied" in denied.json()["detail"]
        with fabric_host.client(fabric_host.admin_key) as admin:
            policy = admin.put("/api/cryptlets/sla_monitor/policy", json={"egress": [status_server]})
        assert policy.status_code == 200, policy.text
        assert policy.json()["effective"]["egress"] == [status_server]
        allowed = http.post("/api/cryptlets/sla_monitor/invoke", json={"method": "probe", "args": {"url": url}})
        assert allowed.status_code == 200, allowed.text
        payload = allowed.json()["payload"]
        assert payload["up"] is True and payload["status"] == 200
        assert abs(payload["checked_at"] - time.time() * 1000) < 60_000
        other = http.post(
            "/api/cryptlets/sla_monitor/invoke", json={"method": "probe", "args": {"url": "http://127.0.0.2:9/status"}}
        )
    assert other.status_code == 502 and "egress_denied" in other.json()["detail"]


def test_the_region_made_at_key_rotation_gets_the_policy_too(fabric_host, registered, status_server):
    """The rotation region joins the pool first: it must have the same egress list as any other."""
    probe = {"method": "probe", "args": {"url": f"http://{status_server}/status"}}
    with fabric_host.client(fabric_host.admin_key) as admin:
        assert admin.put("/api/cryptlets/sla_monitor/policy", json={"egress": [status_server]}).status_code == 200
    with fabric_host.client() as http:
        rotated = http.post("/api/cryptlets/sla_monitor/keys/rotate", json={})
        assert rotated.status_code == 200, rotated.text
        response = http.post("/api/cryptlets/sla_monitor/invoke", json=probe)
    assert response.status_code == 200, response.text
    assert response.json()["cryptlet"] == rotated.json()["registration"]["address"]


def test_a_policy_set_on_another_host_reaches_this_one(fabric_host, registered, status_server):
    url = f"http://{status_server}/status"
    probe = {"method": "probe", "args": {"url": url}}
    with fabric_host.client(fabric_host.admin_key) as admin:
        assert admin.put("/api/cryptlets/sla_monitor/policy", json={"egress": [status_server]}).status_code == 200
    with fabric_host.client() as http:
        assert http.post("/api/cryptlets/sla_monitor/invoke", json=probe).status_code == 200  # regions running
        with fabric_host.twin() as other, other.client(fabric_host.admin_key) as admin:
            assert admin.put("/api/cryptlets/sla_monitor/policy", json={"egress": []}).status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the warm timer (every 2 s here) replaces the stale pool
            response = http.post("/api/cryptlets/sla_monitor/invoke", json=probe)
            if response.status_code != 200:
                break
            time.sleep(0.5)
    assert response.status_code == 502 and "egress_denied" in response.json()["detail"]


def test_policy_timeout_bounds_each_call(fabric_host):
    with fabric_host.client() as http:
        assert http.post("/api/cryptlets", json={"package": "hostile_loop"}).status_code == 201
        with fabric_host.client(fabric_host.admin_key) as admin:
            policy = admin.put("/api/cryptlets/hostile_loop/policy", json={"timeout_s": 1})
        assert policy.status_code == 200 and policy.json()["effective"]["timeout_s"] == 1
        started = time.monotonic()
        response = http.post("/api/cryptlets/hostile_loop/invoke", json={"method": "run", "args": {}})
        elapsed = time.monotonic() - started
    assert response.status_code == 504 or response.status_code == 502, response.text
    assert "within 1.0s" in response.json()["detail"]
    assert elapsed < 8  # the host default is 10 s


def test_contract_state_is_kept_signed_and_readable(fabric_host, registered):
    escrow = registered["escrow_contract"]
    with fabric_host.client() as http:
        assert http.get("/api/cryptlets/escrow_contract/state").json()["version"] == 0
        for amount in (5, 7):
            response = http.post(
                "/api/cryptlets/escrow_contract/invoke",
                json={"method": "deposit", "args": {"party": "alice", "amount": amount}},
            )
            assert response.status_code == 200, response.text
        document = response.json()
        state = http.get("/api/cryptlets/escrow_contract/state").json()
        read = http.post(
            "/api/cryptlets/escrow_contract/invoke", json={"method": "balance", "args": {"party": "alice"}}
        ).json()
        not_contract = http.get("/api/cryptlets/sla_monitor/state")
    assert verify_envelope(Envelope.from_dict(document), escrow["address"]) == escrow["address"]
    assert document["payload"]["result"] == {"balance": 12}
    assert state == {
        "name": "escrow_contract",
        "state": {"alice": 12},
        "version": 2,
        "hash": "0x" + keccak256(canonical_json({"alice": 12})).hex(),
    }
    assert document["payload"]["state"]["hash"] == state["hash"]
    assert [e["payload"] for e in document["events"]] == [{"party": "alice", "amount": 7}]
    assert read["payload"] == {
        "result": {"balance": 12},
        "state": {**document["payload"]["state"], "previous": state["hash"]},
    }
    assert not_contract.status_code == 400 and not_contract.json()["field"] == "name"


def test_concurrent_contract_calls_apply_every_change_once(fabric_host, registered):
    def deposit() -> int:
        with fabric_host.client() as http:
            return http.post(
                "/api/cryptlets/escrow_contract/invoke",
                json={"method": "deposit", "args": {"party": "bob", "amount": 1}},
            ).status_code

    threads = [threading.Thread(target=lambda: codes.append(deposit())) for _ in range(8)]
    codes: list[int] = []
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 8
    with fabric_host.client() as http:
        assert http.get("/api/cryptlets/escrow_contract/state").json()["state"]["bob"] == 8


def test_min_instances_are_warm_again_after_a_restart(fabric_host, registered):
    with fabric_host.twin() as restarted:  # same storage and settings: a restart (or a new instance)
        deadline = time.monotonic() + 30
        with restarted.client() as http:
            while True:
                view = http.get("/api/cryptlets/escrow_contract/policy").json()
                if view["running_regions"] >= 1 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    assert view["effective"]["min_instances"] == 1  # the manifest's minimumInstances
    assert view["running_regions"] == 1, restarted.log()[-2000:]
