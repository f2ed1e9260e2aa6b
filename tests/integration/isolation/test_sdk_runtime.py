"""The SDK and the two runtimes inside real regions: Python SDK classes (context, events, contract
state) and the exec runtime (a Node program and a bare executable speaking the container
protocol), signed by the container exactly like plain Python cryptlets."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cryptlet_sdk import MAX_EVENTS, MAX_STATE_BYTES
from shared.encoding import canonical_json, keccak256
from shared.envelope import Domain, Envelope, verify_envelope
from shared.errors import RegionError
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider, ProcessRegion
from shared.packages.digest import package_digest

ROOT = Path(__file__).resolve().parents[3]
SLA = ROOT / "cryptlet_packages" / "sla_monitor"
ESCROW = Path(__file__).resolve().parents[2] / "packages" / "escrow_contract"
REGISTRATION = {"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32}
REQUEST = "0x" + "01" * 32
BLOCK = 1 + MAX_EVENTS
AS_ROOT = os.geteuid() == 0
OBSERVATIONS = [{"at": 0, "up": True}, {"at": 600, "up": False}, {"at": 700, "up": True}]


def ready(provider: ProcessProvider, package: Path, **kwargs) -> tuple[ProcessRegion, str]:
    region = provider.create_region(
        package, package_digest(package), domain=Domain(), call_out=HostCallOuts(package.name), **kwargs
    )
    address = region.call("generate_key")["address"]
    region.call("bind", registration=REGISTRATION)
    return region, address


def invoke(region: ProcessRegion, method: str, sequence: int, **params):
    return region.call("invoke", method=method, sequence=sequence, sequences=BLOCK, request_id=REQUEST, **params)


def verified(document: dict, address: str) -> Envelope:
    envelope = Envelope.from_dict(document)
    assert verify_envelope(envelope, address) == address
    return envelope


def package_from(tmp_path: Path, name: str, manifest: dict, files: dict[str, str]) -> Path:
    package = tmp_path / name
    package.mkdir()
    (package / "cryptlet.json").write_text(json.dumps({"name": name, "version": "1.0.0", **manifest}))
    for file, text in files.items():
        (package / file).write_text(text)
    return package


# -- exec runtime: the Node sample ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sla(provider):
    region, address = ready(provider, SLA)
    yield region, address
    region.close()


def test_node_program_result_and_event_are_signed_by_the_container(sla):
    region, address = sla
    reply = invoke(
        region,
        "evaluate",
        100,
        args={"observations": OBSERVATIONS, "period_end": 1000, "target_bp": 9990, "penalty_per_bp": "5"},
    )
    result = verified(reply["envelope"], address)
    assert (result.topic, result.sequence) == ("sla_monitor.evaluate", 100)
    assert result.payload == {"availability_bp": 9000, "breached": True, "penalty": "4950"}
    [event] = [verified(doc, address) for doc in reply["events"]]
    assert (event.topic, event.sequence, event.request_id.hex()) == ("sla_monitor.SlaBreached", 101, REQUEST[2:])
    assert event.payload == {"availability_bp": 9000, "target_bp": 9990, "penalty": "4950"}


def test_node_program_bad_arguments_keep_the_region(sla):
    region, _ = sla
    with pytest.raises(RegionError) as caught:
        invoke(
            region, "evaluate", 200, args={"observations": "nope", "period_end": 1, "target_bp": 1, "penalty_per_bp": 1}
        )
    assert caught.value.extra["region_code"] == "bad_arguments"
    assert "observations must be a non-empty list" in caught.value.detail
    assert region.alive
    reply = invoke(
        region,
        "evaluate",
        300,
        args={"observations": [{"at": 0, "up": True}], "period_end": 10, "target_bp": 9000, "penalty_per_bp": 1},
    )
    assert reply["envelope"]["payload"]["breached"] is False and "events" not in reply


def test_node_fetch_is_refused_without_egress(sla):
    region, _ = sla
    with pytest.raises(RegionError) as caught:
        invoke(region, "probe", 400, args={"url": "http://127.0.0.1:9/status"})
    assert "egress_denied" in caught.value.detail
    assert region.alive


def test_program_runs_beside_the_container_not_as_a_stray(sla):
    region, _ = sla
    [program] = region.companions
    assert Path(f"/proc/{program}/cmdline").read_bytes().split(b"\0")[-2].endswith(b"main.js")
    assert os.getsid(program) == region.pid  # same session: killed with the region


# -- exec runtime: any executable ---------------------------------------------------------------
PY_PROGRAM = r'''#!/usr/bin/python3
"""A cryptlet as a bare executable: the container protocol by hand, in any language."""
import json, os, sys

for line in sys.stdin:
    msg = json.loads(line)
    if msg["op"] == "shutdown":
        break
    if msg["op"] == "init":
        reply = {"id": msg["id"], "ok": True}
    elif msg["args"].get("mode") == "snoop":  # try to read the container's (non-dumpable) memory and env
        found = {}
        for what in ("environ", "mem", "maps"):
            try:
                with open(f"/proc/{os.getppid()}/{what}", "rb") as f:
                    found[what] = len(f.read(64))
            except OSError as exc:
                found[what] = type(exc).__name__
        reply = {"id": msg["id"], "ok": True, "result": found}
    elif msg["args"].get("mode") == "garbage":
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
        continue
    elif msg["args"].get("mode") == "die":
        sys.exit(3)
    else:
        sys.stdout.write(json.dumps({"callout": 1, "op": "time"}) + "\n")
        sys.stdout.flush()
        now = json.loads(sys.stdin.readline())["result"]["unix_ms"]
        reply = {"id": msg["id"], "ok": True, "result": {"echo": msg["args"], "now": now},
                 "events": [{"event": "Echoed", "fields": {"n": 1}}]}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
'''
EXEC_MANIFEST = {
    "kind": "utility",
    "runtime": "exec",
    "entry": "bin/echo",
    "interface": {
        "methods": {"run": {"inputs": [{"name": "mode", "type": "string"}]}},
        "events": {"Echoed": {"inputs": [{"name": "n", "type": "uint8"}]}},
    },
}


@pytest.fixture
def echo_package(tmp_path) -> Path:
    package = package_from(tmp_path, "echo_exec", EXEC_MANIFEST, {})
    (package / "bin").mkdir()
    (package / "bin" / "echo").write_text(PY_PROGRAM)
    (package / "bin" / "echo").chmod(0o755)
    return package


def test_a_bare_executable_is_a_cryptlet(provider, echo_package):
    region, address = ready(provider, echo_package)
    try:
        reply = invoke(region, "run", 10, args={"mode": "echo"})
        assert verified(reply["envelope"], address).payload["echo"] == {"mode": "echo"}
        assert [verified(doc, address).topic for doc in reply["events"]] == ["echo_exec.Echoed"]
    finally:
        region.close()


@pytest.mark.skipif(not AS_ROOT, reason="a non-root host has no per-region uid; see docs/isolation.md")
def test_the_program_cannot_read_the_container_that_holds_the_key(provider, echo_package):
    region, _ = ready(provider, echo_package)
    try:
        found = invoke(region, "run", 10, args={"mode": "snoop"})["envelope"]["payload"]
        assert found == {"environ": "PermissionError", "mem": "PermissionError", "maps": "PermissionError"}
    finally:
        region.close()


@pytest.mark.parametrize("mode, code", [("garbage", "cryptlet_protocol"), ("die", "cryptlet_exited")])
def test_a_broken_program_ends_its_region_with_a_clear_code(provider, echo_package, mode, code):
    region, _ = ready(provider, echo_package)
    try:
        with pytest.raises(RegionError) as caught:
            invoke(region, "run", 10, args={"mode": mode})
        assert caught.value.extra["region_code"] == code
        assert not region.alive
    finally:
        region.close()


@pytest.mark.parametrize(
    "manifest, detail",
    [
        ({"entry": "missing.js", "interpreter": "node"}, "not a file of the package"),
        ({"entry": "bin/echo"}, "not executable"),
    ],
)
def test_exec_entry_problems_are_named(provider, tmp_path, manifest, detail):
    package = package_from(tmp_path, "bad_exec", {**EXEC_MANIFEST, **manifest}, {})
    (package / "bin").mkdir()
    (package / "bin" / "echo").write_text(PY_PROGRAM)  # not executable
    with pytest.raises(RegionError) as caught:
        provider.create_region(package, package_digest(package), domain=Domain())
    assert caught.value.extra["region_code"] == "entry_not_found"
    assert detail in caught.value.detail


# -- Python SDK: contract state and events --------------------------------------------------------
def test_contract_state_transitions_are_signed_and_returned(provider):
    region, address = ready(provider, ESCROW)
    try:
        first = invoke(region, "deposit", 10, args={"party": "alice", "amount": 5}, state={}, state_version=0)
        payload = verified(first["envelope"], address).payload
        assert payload["result"] == {"balance": 5}
        assert first["state"] == {"alice": 5}
        assert payload["state"] == {
            "version": 1,
            "hash": "0x" + keccak256(canonical_json({"alice": 5})).hex(),
            "previous": "0x" + keccak256(canonical_json({})).hex(),
        }
        assert [verified(d, address).payload for d in first["events"]] == [{"party": "alice", "amount": 5}]
        read = invoke(region, "balance", 40, args={"party": "alice"}, state=first["state"], state_version=1)
        assert "state" not in read  # unchanged: nothing to store
        assert read["envelope"]["payload"]["state"]["version"] == 1
        assert read["envelope"]["payload"]["state"]["hash"] == payload["state"]["hash"]
        with pytest.raises(RegionError) as caught:  # a failing call changes nothing
            invoke(region, "deposit", 70, args={"party": "bob", "amount": -1}, state=first["state"], state_version=1)
        assert caught.value.extra["region_code"] == "bad_arguments"
        with pytest.raises(RegionError) as caught:
            invoke(region, "emit_many", 100, args={"count": MAX_EVENTS + 1}, state={}, state_version=0)
        assert f"at most {MAX_EVENTS} events" in caught.value.detail
        big = {"k": "x" * MAX_STATE_BYTES}
        with pytest.raises(RegionError) as caught:
            invoke(region, "deposit", 130, args={"party": "carol", "amount": 1}, state=big, state_version=3)
        assert caught.value.extra["region_code"] == "state_too_large"
        with pytest.raises(RegionError) as caught:  # the class's other functions are not callable
            invoke(region, "not_a_method", 160, args={}, state={}, state_version=0)
        assert caught.value.extra["region_code"] == "unknown_method"
    finally:
        region.close()


SDK_CODE = """
from cryptlet_sdk import UtilityCryptlet, method

class C(UtilityCryptlet):
    @method
    def run(self, event="Ping"):
        self.context.log("running")
        self.context.emit(event, at=self.context.now_ms())
        return {"ok": True}

    def helper(self):
        return 1
"""


def sdk_package(tmp_path: Path, code: str, methods=("run",), kind="utility") -> Path:
    return package_from(
        tmp_path,
        "sdk_probe",
        {
            "kind": kind,
            "runtime": "python",
            "entry": "main:C",
            "interface": {
                "methods": {m: {} for m in methods},
                "events": {"Ping": {"inputs": [{"name": "at", "type": "uint64"}]}},
            },
        },
        {"main.py": code},
    )


def test_sdk_utility_events_must_be_declared(provider, tmp_path):
    region, address = ready(provider, sdk_package(tmp_path, SDK_CODE))
    try:
        reply = invoke(region, "run", 10, args={})
        [event] = reply["events"]
        assert verified(event, address).topic == "sdk_probe.Ping"
        with pytest.raises(RegionError) as caught:
            invoke(region, "run", 40, args={"event": "Pong"})
        assert "'Pong' is not declared in interface.events" in caught.value.detail
    finally:
        region.close()


@pytest.mark.parametrize(
    "methods, kind, detail",
    [
        (("run", "helper"), "utility", "C.helper is in interface.methods but is not a method marked with @method"),
        (("run",), "contract", "C is a utility cryptlet but the manifest says kind 'contract'"),
    ],
)
def test_sdk_class_must_match_its_manifest(provider, tmp_path, methods, kind, detail):
    package = sdk_package(tmp_path, SDK_CODE, methods, kind)
    with pytest.raises(RegionError) as caught:
        provider.create_region(package, package_digest(package), domain=Domain())
    assert caught.value.extra["region_code"] == "load_failed"
    assert detail in caught.value.detail


def test_plain_classes_still_work(provider, tmp_path):
    target = tmp_path / "customer_validator"
    shutil.copytree(ROOT / "cryptlet_packages" / "customer_validator", target)
    region, address = ready(provider, target)
    try:
        reply = invoke(region, "rules", 10, args={})
        assert verified(reply["envelope"], address).payload["min_age_years"] == 18
    finally:
        region.close()
