"""The ledger through the function app and the CLI: checkpoints, receipts, consistency, tail, and
the key lifecycle (rotation, revocation, retirement) as ledger events that verification honours."""

from __future__ import annotations

import json

import pytest

from shared.ledger.checkpoints import VerifierKey, open_checkpoint
from shared.ledger.receipts import Consistency, Receipt

CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}


def invoke(http) -> dict:
    response = http.post(
        "/api/cryptlets/customer_validator/invoke",
        json={"method": "validate", "args": {"customer": CUSTOMER, "salt": "0x" + "ab" * 32}},
    )
    assert response.status_code == 200, response.text
    return response.json()


def one_line_failure(result, reason: str) -> None:
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert reason in result.stderr, result.stderr


@pytest.fixture(scope="module")
def story(fabric_host, registered, tmp_path_factory):
    """Register, invoke, checkpoint, rotate, invoke again: the state the tests below look at."""
    work = tmp_path_factory.mktemp("ledger-api")
    with fabric_host.client() as http:
        first = invoke(http)
        checkpoint = http.post("/api/ledger/checkpoints")
        assert checkpoint.status_code == 201, checkpoint.text
        (work / "old-checkpoint.txt").write_text(checkpoint.json()["note"])
        rotated = http.post("/api/cryptlets/customer_validator/keys/rotate")
        assert rotated.status_code == 200, rotated.text
        second = invoke(http)
        public_key = http.get("/api/ledger").json()["public_key"]
    (work / "first.json").write_text(json.dumps(first))
    (work / "second.json").write_text(json.dumps(second))
    return {
        "work": work,
        "registered": registered,
        "rotated": rotated.json(),
        "first": first,
        "second": second,
        "public_key": public_key,
    }


def test_checkpoint_key_is_published_and_signs_the_checkpoints(fabric_host, story):
    key = VerifierKey.parse(story["public_key"])
    assert key.name == "cryptlet-fabric/ledger/registry"
    with fabric_host.client() as http:
        latest = http.get("/api/ledger/checkpoint").json()
        again = http.post("/api/ledger/checkpoints")
    checkpoint = open_checkpoint(latest["note"], key)
    assert latest["size"] == checkpoint.size and latest["public_key"] == story["public_key"]
    assert again.status_code in (200, 201)


def test_receipt_over_http_verifies_offline_and_through_the_cli(fabric_host, story, tmp_path):
    sequence = story["registered"]["ledger"]["sequence"]
    with fabric_host.client() as http:
        document = http.get(f"/api/ledger/entries/{sequence}/receipt").json()
    assert Receipt.from_dict(document).verify(VerifierKey.parse(story["public_key"])).size >= sequence
    saved = tmp_path / "receipt.json"
    fetched = fabric_host.cli("ledger", "receipt", str(sequence), "-o", str(saved))
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.startswith(f"receipt verified: entry {sequence} (cryptlet.registered")
    assert "as published by the host" in fetched.stdout
    offline = fabric_host.cli("ledger", "receipt", "--file", str(saved), "--public-key", story["public_key"])
    assert offline.returncode == 0 and "(pinned)" in offline.stdout, offline.stderr
    document = json.loads(saved.read_text())
    document["entry"]["payload"]["version"] = "6.6.6"
    saved.write_text(json.dumps(document))
    tampered = fabric_host.cli("ledger", "receipt", "--file", str(saved), "--public-key", story["public_key"])
    one_line_failure(tampered, "entry_hash_mismatch")


def test_consistency_from_a_saved_checkpoint_and_between_sizes(fabric_host, story):
    old = story["work"] / "old-checkpoint.txt"
    result = fabric_host.cli("ledger", "consistency", str(old), "--public-key", story["public_key"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("consistent: the ledger of")
    with fabric_host.client() as http:
        size = http.post("/api/ledger/checkpoints").json()["size"]
        proof = http.get("/api/ledger/consistency", params={"from": 1, "to": size})
        bad = http.get("/api/ledger/consistency", params={"from": size + 5})
    assert proof.status_code == 200 and Consistency.from_dict(proof.json()).proof.size2 == size
    assert bad.status_code == 400 and bad.json()["field"] == "from"
    forged = old.read_text().replace("\u2014", "-")
    old.with_suffix(".forged").write_text(forged)
    one_line_failure(fabric_host.cli("ledger", "consistency", str(old.with_suffix(".forged"))), "checkpoint_malformed")


def test_tail_prints_the_newest_entries_checked(fabric_host, story):
    result = fabric_host.cli("ledger", "tail", "-n", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and "cryptlet.key_rotated" in lines[-1]
    as_json = fabric_host.cli("ledger", "tail", "-n", "1", "--json")
    assert json.loads(as_json.stdout)["kind"] == "cryptlet.key_rotated"


def test_ledger_verify_audits_chain_and_checkpoints_from_storage(fabric_host, story):
    result = fabric_host.cli("ledger", "verify", "--public-key", story["public_key"])
    assert result.returncode == 0, result.stderr
    assert "checkpoint(s) verified" in result.stdout and "(pinned)" in result.stdout
    other = "cryptlet-fabric/ledger/registry+9bd46b20+AVugXUtX5uQfKSa6iQ/ZE1dnpxF6A7FZEJCRNKQoICW7"
    one_line_failure(fabric_host.cli("ledger", "verify", "--public-key", other), "checkpoint_signature_invalid")


def test_rotation_makes_a_new_key_inside_a_region_and_records_it(fabric_host, story):
    old, new = story["registered"], story["rotated"]["registration"]
    assert new["address"] != old["address"] and new["digest"] == old["digest"]
    entry = story["rotated"]["entries"][-1]
    assert entry["kind"] == "cryptlet.key_rotated" and entry["payload"]["previous_address"] == old["address"]
    assert entry["payload"]["evidence"]["kind"]  # the new key is attested like a registration
    assert story["second"]["cryptlet"] == new["address"]
    assert story["second"]["registration"]["sequence"] == entry["sequence"]
    with fabric_host.client() as http:
        keys = http.get("/api/cryptlets/customer_validator/keys").json()["keys"]
        at_registration = http.get(
            "/api/cryptlets/customer_validator/keys", params={"at": old["ledger"]["sequence"]}
        ).json()["key"]
        at_rotation = http.get("/api/cryptlets/customer_validator/keys", params={"at": entry["sequence"]}).json()["key"]
    assert [k["status"] for k in keys] == ["superseded", "active"]
    assert at_registration["address"] == old["address"] and at_rotation["address"] == new["address"]


def test_envelopes_of_both_keys_verify_when_signed_while_valid(fabric_host, story):
    for name in ("first.json", "second.json"):
        result = fabric_host.cli("verify", "--allow-software-evidence", str(story["work"] / name))
        assert result.returncode == 0, result.stderr
    from_storage = fabric_host.cli(
        "verify", "--allow-software-evidence", "--connection", fabric_host.storage, str(story["work"] / "first.json")
    )
    assert from_storage.returncode == 0, from_storage.stderr


def test_revocation_fails_envelopes_signed_from_its_effective_time_on(fabric_host, story):
    second = story["work"] / "second.json"
    with fabric_host.client() as http:
        current = http.get("/api/cryptlets/customer_validator").json()
        invalid_after = story["rotated"]["entries"][-1]["time"]  # compromised since it was made
        revoked = http.post(
            "/api/cryptlets/customer_validator/keys/revoke",
            json={"reason": "compromised", "invalid_after": invalid_after, "note": "leaked"},
        )
        assert revoked.status_code == 200, revoked.text
        kinds = [e["kind"] for e in revoked.json()["entries"]]
        assert kinds == ["cryptlet.key_revoked", "cryptlet.key_rotated"]  # one transaction: revoke + new key
        third = invoke(http)
        again = http.post("/api/cryptlets/customer_validator/keys/revoke", json={"address": current["address"]})
    assert again.status_code == 409
    assert third["cryptlet"] not in (current["address"], story["registered"]["address"])
    one_line_failure(fabric_host.cli("verify", "--allow-software-evidence", str(second)), "key_revoked")
    one_line_failure(
        fabric_host.cli("verify", "--allow-software-evidence", "--connection", fabric_host.storage, str(second)),
        "key_revoked",
    )
    (story["work"] / "third.json").write_text(json.dumps(third))
    ok = fabric_host.cli("verify", "--allow-software-evidence", str(story["work"] / "third.json"))
    assert ok.returncode == 0, ok.stderr


def test_bad_key_requests_are_problems_naming_the_field(fabric_host, story):
    with fabric_host.client() as http:
        unknown = http.post("/api/cryptlets/no_such/keys/rotate")
        reason = http.post(
            "/api/cryptlets/customer_validator/keys/revoke",
            json={"address": story["registered"]["address"], "reason": "bored"},
        )
        at = http.get("/api/cryptlets/customer_validator/keys", params={"at": "x"})
        key = http.get("/api/ledger/keys/0x" + "00" * 20)
    assert unknown.status_code == 404 and unknown.json()["field"] == "name"
    assert reason.status_code == 400 and reason.json()["field"] == "reason"
    assert at.status_code == 400 and at.json()["field"] == "at"
    assert key.status_code == 404 and key.json()["field"] == "address"


def test_retirement_ends_every_key_and_frees_the_name(fabric_host, story):
    with fabric_host.client() as http:
        retired = http.post("/api/cryptlets/customer_validator/retire", json={"note": "end of test"})
        assert retired.status_code == 200, retired.text
        assert retired.json()["entry"]["kind"] == "cryptlet.retired"
        assert http.get("/api/cryptlets/customer_validator").status_code == 404
        keys = http.get("/api/cryptlets/customer_validator/keys").json()["keys"]
        head = http.get("/api/ledger").json()
    assert {k["status"] for k in keys} <= {"superseded", "revoked", "retired"} and keys[-1]["status"] == "retired"
    assert head["size"] == retired.json()["entry"]["sequence"]
