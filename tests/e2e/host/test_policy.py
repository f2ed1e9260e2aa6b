"""Per-cryptlet policy over the real dev host: admin-only, validated, a ledger event, effective, enforced, durable."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.host.composition import build_host
from shared.host.models import Call
from shared.ledger.chain import LedgerEntry
from shared.settings import Settings

SLOW = "slow_echo"
MANIFEST = {
    "name": SLOW,
    "version": "1.0.0",
    "kind": "utility",
    "runtime": "python",
    "entry": "main:Slow",
    "config": {"description": "Test cryptlet: sleeps, then reports its region's pid.", "isolation": False},
    "interface": {"methods": {"pid": {"inputs": [{"name": "seconds", "type": "json"}]}}},
}
CODE = '''"""Test cryptlet: sleeps, then reports which region (process) ran the call."""
import os
import time


class Slow:
    def pid(self, seconds) -> dict:
        time.sleep(float(seconds))
        return {"pid": os.getpid()}
'''


@pytest.fixture(scope="module")
def slow(fabric_host) -> str:
    package = Path(fabric_host.packages_dir) / SLOW
    package.mkdir()
    (package / "cryptlet.json").write_text(json.dumps(MANIFEST))
    (package / "main.py").write_text(CODE)
    with fabric_host.client() as http:
        response = http.post("/api/cryptlets", json={"package": SLOW})
    assert response.status_code == 201, response.text
    return SLOW


def admin(fabric_host):
    return fabric_host.client(key=fabric_host.admin_key)


def concurrent_pids(fabric_host, calls: int, seconds: float) -> tuple[set[int], float]:
    def one(_: int) -> int:
        with fabric_host.client() as http:
            response = http.post(f"/api/cryptlets/{SLOW}/invoke", json={"method": "pid", "args": {"seconds": seconds}})
        assert response.status_code == 200, response.text
        return response.json()["payload"]["pid"]

    started = time.monotonic()
    with ThreadPoolExecutor(calls) as pool:
        pids = set(pool.map(one, range(calls)))
    return pids, time.monotonic() - started


def test_setting_a_policy_needs_the_admin_key(fabric_host, slow):
    with fabric_host.client() as http:  # the function key is not enough
        assert http.put(f"/api/cryptlets/{slow}/policy", json={"max_instances": 1}).status_code == 401
    with fabric_host.client(key=None) as http:
        assert http.put(f"/api/cryptlets/{slow}/policy", json={"max_instances": 1}).status_code == 401
    with fabric_host.client() as http:  # reading needs only the function key
        assert http.get(f"/api/cryptlets/{slow}/policy").status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"max_instances": 0}, "$.max_instances"),
        ({"max_instances": "two"}, "$.max_instances"),
        ({"egress": ["api.example.com", "not a host!"]}, "$.egress[1]"),
        ({"isolation": "yes"}, "$.isolation"),
        ({"min_instances": 3, "max_instances": 2}, "$.min_instances"),
        ({"colour": "red"}, "$.colour"),
        ([1, 2], "$"),
    ],
)
def test_an_invalid_policy_is_a_400_naming_the_path(fabric_host, slow, body, field):
    with admin(fabric_host) as http:
        response = http.put(f"/api/cryptlets/{slow}/policy", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field


def test_policy_of_an_unknown_cryptlet_is_404(fabric_host):
    with admin(fabric_host) as http:
        assert http.put("/api/cryptlets/no_such_thing/policy", json={"max_instances": 1}).status_code == 404


def test_max_instances_limits_concurrent_regions(fabric_host, slow):
    # default FABRIC_REGIONS_PER_CRYPTLET (2): concurrent calls use more than one region
    pids, _ = concurrent_pids(fabric_host, 4, 0.4)
    assert len(pids) == 2
    with admin(fabric_host) as http:
        response = http.put(f"/api/cryptlets/{slow}/policy", json={"max_instances": 1, "note": "serialise"})
    assert response.status_code == 200, response.text
    assert response.json()["effective"]["max_instances"] == 1
    pids, elapsed = concurrent_pids(fabric_host, 4, 0.4)
    assert len(pids) == 1, pids  # one region served every call, one after another
    assert elapsed >= 4 * 0.4
    with admin(fabric_host) as http:
        response = http.put(f"/api/cryptlets/{slow}/policy", json={"max_instances": 3, "min_instances": 3})
    assert response.status_code == 200, response.text
    pids, _ = concurrent_pids(fabric_host, 3, 0.6)
    assert len(pids) == 3


def test_policy_is_a_verified_ledger_entry_and_overrides_the_manifest(fabric_host, slow):
    policy = {
        "isolation": True,
        "egress": ["api.example.com", "*.chain.example:8545"],
        "max_instances": 2,
        "min_instances": 1,
        "note": "admin override",
    }
    with admin(fabric_host) as http:
        response = http.put(f"/api/cryptlets/{slow}/policy", json=policy)
    assert response.status_code == 200, response.text
    body = response.json()
    entry = LedgerEntry.from_dict(body["entry"])
    assert entry.kind == "policy.set"
    assert entry.computed_hash() == entry.entry_hash
    assert entry.payload == {
        "scope": f"cryptlet:{slow}",
        "note": "admin override",
        "policy": {k: v for k, v in policy.items() if k != "note"},
    }
    with fabric_host.client() as http:
        stored = http.get(f"/api/ledger/entries/{entry.sequence}").json()
        view = http.get(f"/api/cryptlets/{slow}/policy").json()
        described = http.get(f"/api/cryptlets/{slow}").json()
    assert LedgerEntry.from_dict(stored).entry_hash == entry.entry_hash
    assert view["manifest"] == {"isolation": False}
    assert view["policy"] == policy
    assert view["ledger"]["sequence"] == entry.sequence
    effective = {
        "isolation": True,
        "egress": policy["egress"],
        "min_instances": 1,
        "max_instances": 2,
        "egress_enforced": True,
        "timeout_s": 10.0,
    }
    assert view["effective"] == effective
    assert described["effective"] == effective
    assert fabric_host.cli("ledger", "verify").returncode == 0


def test_policy_persists_for_a_new_fabric_instance(fabric_host, slow):
    with admin(fabric_host) as http:
        response = http.put(f"/api/cryptlets/{slow}/policy", json={"max_instances": 1, "egress": ["x.example"]})
    assert response.status_code == 200, response.text
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": fabric_host.storage,
            "FABRIC_SEALING_SECRET": base64.b64encode(fabric_host.sealing_secret).decode(),
            "FABRIC_PACKAGES_DIR": str(fabric_host.packages_dir),
            "FABRIC_TABLE_PREFIX": fabric_host.table_prefix,
        }
    )
    host = build_host(settings)  # what a restarted (or another) host sees
    try:
        view = host.policies.get(slow)
        assert view["policy"] == {"max_instances": 1, "egress": ["x.example"]}
        assert view["effective"]["max_instances"] == 1
        pool = host.pools.get(host.registry.get(slow))
        assert pool.max_size == 1
        host.invocations.invoke(slow, Call("pid", {"seconds": 0}))
        assert pool.size == 1
    finally:
        host.close()


def test_cli_policy_set_and_get(fabric_host, slow):
    denied = fabric_host.cli("policy", "set", slow, "--max-instances", "2")  # function key only
    assert denied.returncode == 1 and len(denied.stderr.strip().splitlines()) == 1
    assert "Traceback" not in denied.stderr
    done = fabric_host.cli(
        "policy",
        "set",
        slow,
        "--max-instances",
        "2",
        "--egress",
        "a.example",
        "--egress",
        "b.example",
        "--isolation",
        "--admin-key",
        fabric_host.admin_key,
    )
    assert done.returncode == 0, done.stderr
    shown = fabric_host.cli("policy", "get", slow)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["effective"]["max_instances"] == 2
    assert view["effective"]["egress"] == ["a.example", "b.example"]
    assert view["effective"]["isolation"] is True
    bad = fabric_host.cli("policy", "set", slow, "--max-instances", "0", "--admin-key", fabric_host.admin_key)
    assert bad.returncode == 1 and "max_instances" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
