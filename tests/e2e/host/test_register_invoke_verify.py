"""The walking skeleton end to end: register -> invoke -> verify, over HTTP and the CLI."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from shared.encoding import from_hex
from shared.envelope import SECP256K1_N, Envelope
from shared.keys import sealing
from shared.storage import table_client

CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}


@pytest.fixture(scope="module")
def envelope(fabric_host, registered):
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets/customer_validator/invoke",
            json={"method": "validate", "args": {"customer": CUSTOMER, "salt": "0x" + "ab" * 32}},
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_registration_returns_identity_and_ledger_reference(registered):
    assert registered["name"] == "customer_validator"
    assert registered["address"].startswith("0x") and len(registered["address"]) == 42
    public = from_hex(registered["public_key"], length=65)
    assert Account._keys.PublicKey(public[1:]).to_checksum_address() == registered["address"]
    assert len(from_hex(registered["digest"], length=32)) == 32
    assert registered["ledger"]["sequence"] >= 1
    assert len(from_hex(registered["ledger"]["entry_hash"], length=32)) == 32


def test_invocation_returns_an_envelope_signed_by_the_registered_key(registered, envelope):
    assert envelope["payload"]["approved"] is True
    assert envelope["cryptlet"] == registered["address"]
    assert envelope["digest"] == registered["digest"]
    assert envelope["registration"]["entry_hash"] == registered["ledger"]["entry_hash"]
    # The reference EIP-712 implementation recovers the same signer from the typed data.
    typed = Envelope.from_dict(envelope).typed_data()
    signer = Account.recover_message(encode_typed_data(full_message=typed), signature=from_hex(envelope["signature"]))
    assert signer == registered["address"]
    assert "customer" not in json.dumps(envelope["payload"])  # the record itself is not disclosed
    assert CUSTOMER["email"] not in json.dumps(envelope)


def test_cli_register_list_invoke_verify(fabric_host, registered, tmp_path):
    listed = fabric_host.cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)] == ["customer_validator"]
    out = tmp_path / "envelope.json"
    invoked = fabric_host.cli(
        "invoke",
        "customer_validator",
        "validate",
        "--args",
        json.dumps({"customer": {**CUSTOMER, "country": "KP"}, "salt": "0x" + "01" * 32}),
        "-o",
        str(out),
    )
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(out.read_text())["payload"]["failed_rules"] == ["sanctions"]
    verified = fabric_host.cli("verify", "--allow-software-evidence", str(out))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("verified: customer_validator")
    assert "evidence process (software/debug) binds the key" in verified.stdout
    # Software evidence is refused unless the verifier opts in, naming the link and the flag.
    refused = fabric_host.cli("verify", str(out))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "(software_evidence): evidence:" in refused.stderr and "--allow-software-evidence" in refused.stderr


def test_cli_register_twice_is_a_one_line_conflict(fabric_host, registered):
    result = fabric_host.cli("register", "customer_validator")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "already registered" in result.stderr
    assert "Traceback" not in result.stderr


def _tamper_payload(doc):
    doc["payload"]["approved"] = not doc["payload"]["approved"]


def _tamper_payload_and_hash(doc):
    doc["payload"]["approved"] = not doc["payload"]["approved"]
    del doc["payload_hash"]


def _tamper_digest(doc):
    doc["digest"] = "0x" + "11" * 32


def _tamper_high_s(doc):
    sig = bytearray(from_hex(doc["signature"]))
    s = int.from_bytes(sig[32:64], "big")
    sig[32:64] = (SECP256K1_N - s).to_bytes(32, "big")
    sig[64] = 55 - sig[64]  # flip v so the signature is still "valid" in the malleable sense
    doc["signature"] = "0x" + bytes(sig).hex()


def _tamper_signer(doc):
    other = Account.create()
    forged = Envelope.from_dict({**doc, "cryptlet": other.address})
    from shared.envelope import sign_envelope

    doc.update(sign_envelope(forged, bytes(other.key)).to_dict())


def _tamper_registration(doc):
    doc["registration"] = {**doc["registration"], "entry_hash": "0x" + "22" * 32}


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (_tamper_payload, "payload_hash_mismatch"),
        (_tamper_payload_and_hash, "signature_mismatch"),
        (_tamper_digest, "signature_mismatch"),
        (_tamper_high_s, "high_s"),
        (_tamper_signer, "signer_not_registered"),
        (_tamper_registration, "signature_mismatch"),
    ],
)
def test_tampered_envelope_is_rejected_with_its_reason(fabric_host, envelope, tamper, reason, tmp_path):
    doc = json.loads(json.dumps(envelope))
    tamper(doc)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    result = fabric_host.cli("verify", "--allow-software-evidence", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert reason in result.stderr, result.stderr


def test_unknown_cryptlet_is_404(fabric_host):
    with fabric_host.client() as http:
        for response in (
            http.post("/api/cryptlets/no_such/invoke", json={"method": "x"}),
            http.get("/api/cryptlets/no_such"),
        ):
            assert response.status_code == 404
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["field"] == "name"


def test_malformed_manifest_is_400_naming_the_field(fabric_host):
    with fabric_host.client() as http:
        response = http.post("/api/cryptlets", json={"package": "broken_manifest"})
    assert response.status_code == 400
    problem = response.json()
    assert problem["field"] == "$.kind" and problem["code"] == "invalid_manifest"


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "package"),
        ({"package": "../etc"}, "package"),
        ({"package": 7}, "package"),
        ([1, 2], "$"),
    ],
)
def test_bad_registration_bodies_are_400_naming_the_field(fabric_host, body, field):
    with fabric_host.client() as http:
        response = http.post("/api/cryptlets", json=body)
    assert response.status_code == 400 and response.json()["field"] == field


def test_invalid_json_and_bad_invocations_are_400(fabric_host, registered):
    with fabric_host.client() as http:
        assert http.post("/api/cryptlets", content=b"{nope").json()["field"] == "$"
        cases = [
            ({"method": "nope"}, "method"),
            ({"method": "validate", "args": [1]}, "args"),
            ({"method": "validate", "args": {"customer": 5, "salt": "00"}}, "args"),
            ({"method": "validate", "args": {}, "request_id": "0x12"}, "request_id"),
        ]
        for body, field in cases:
            response = http.post("/api/cryptlets/customer_validator/invoke", json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["field"] == field


def test_function_key_is_required(fabric_host):
    with fabric_host.client(key=None) as http:
        assert http.get("/api/cryptlets").status_code == 401
        assert http.post("/api/cryptlets", json={"package": "customer_validator"}).status_code == 401
        assert http.get("/api/health").status_code == 200  # health is the one anonymous route
    with fabric_host.client(key="wrong") as http:
        assert http.get("/api/cryptlets").status_code == 401
    with fabric_host.client(key=None) as http:
        assert http.get(f"/api/cryptlets?code={fabric_host.key}").status_code == 200


def test_health_reports_storage_and_versions(fabric_host):
    with fabric_host.client(key=None) as http:
        report = http.get("/api/health").json()
    assert report["status"] == "ok" and report["storage"]["reachable"] is True
    assert {"fabric", "python", "azure-functions"} <= set(report["versions"])


def test_cli_ledger_verify_passes_on_the_live_ledger(fabric_host, registered):
    result = fabric_host.cli("ledger", "verify")
    assert result.returncode == 0, result.stderr
    assert "entries verified" in result.stdout


def test_no_private_key_material_leaves_the_region(fabric_host, registered, envelope):
    """Unseal every stored key with the platform secret and look for it everywhere a user can see."""
    keys = list(table_client(fabric_host.storage, f"{fabric_host.table_prefix}keys").list_entities())
    assert keys
    secrets_found = []
    for row in keys:
        secret = sealing.unseal(
            fabric_host.sealing_secret, from_hex(row["digest"]), row["address"], base64.b64decode(row["sealed"])
        )
        secrets_found.append(secret)
        assert secret not in base64.b64decode(row["sealed"])  # sealed, not stored in the clear
    with fabric_host.client() as http:  # exercise more responses
        http.get("/api/cryptlets"), http.get("/api/cryptlets/customer_validator"), http.get("/api/ledger/entries")
    visible = "\n".join(fabric_host.responses) + fabric_host.log()
    for table in ("ledger", "cryptlets"):
        visible += json.dumps(
            list(table_client(fabric_host.storage, f"{fabric_host.table_prefix}{table}").list_entities()), default=str
        )
    for secret in secrets_found:
        for form in (
            secret.hex(),
            secret.hex().upper(),
            base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="),
        ):
            assert form not in visible


def test_request_id_is_honoured(fabric_host, registered):
    request_id = "0x" + secrets.token_hex(32)
    with fabric_host.client() as http:
        env = http.post(
            "/api/cryptlets/customer_validator/invoke", json={"method": "rules", "request_id": request_id}
        ).json()
    assert env["request_id"] == request_id and env["topic"] == "customer_validator.rules"


def test_registration_records_evidence_binding_the_key(fabric_host, registered, envelope):
    """The ledger entry holds the software evidence, the catalog and every envelope cite it, and it
    verifies under the platform key the host publishes (which is derived from its sealing secret)."""
    from datetime import datetime

    from shared.attestation import Evidence, SoftwarePolicy
    from shared.attestation.software import platform_public_key
    from shared.isolation.process import platform_key

    with fabric_host.client() as http:
        attestation = http.get("/api/attestation").json()
        entry = http.get(f"/api/ledger/entries/{registered['ledger']['sequence']}").json()
    expected_key = "0x" + platform_public_key(platform_key(fabric_host.sealing_secret)).hex()
    from shared.events.delivery import DeliveryKey  # the event engine's delivery key (docs/events.md)

    assert attestation == {
        "provider": "process",
        "evidence_kind": "process",
        "software": True,
        "debug": True,
        "platform_key": expected_key,
        "delivery_address": DeliveryKey(fabric_host.sealing_secret).address,
    }
    record = entry["payload"]["evidence"]
    assert registered["evidence"] == {"kind": "process", "hash": record["hash"]} == envelope["evidence"]
    evidence = Evidence.from_dict(record)
    policy = SoftwarePolicy(allow_software=True, platform_keys=frozenset({expected_key}))
    verified = policy.verify(evidence, now=datetime.now(UTC))
    assert verified.debuggable and "0x" + verified.measurement == registered["digest"]
    verified.require_binding(from_hex(registered["public_key"], length=65), from_hex(record["nonce"], length=32))
