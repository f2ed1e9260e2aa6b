"""Package digest algorithms on a running host: new registrations are measured and recorded as
``cfpkg-v2``; a cryptlet registered under ``cfpkg-v1`` (written into the host's storage here as the
code before ``digest_alg`` wrote it) keeps serving, rotating and verifying, with its package measured
under v1."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from shared.encoding import to_hex
from shared.envelope import Domain
from shared.host.composition import LEDGER_STREAM
from shared.host.registry import CATALOG_PARTITION, KIND_REGISTERED, attest_key, evidence_reference
from shared.isolation.process import ProcessProvider
from shared.keys.store import SealedKey, TableKeyStore
from shared.ledger.chain import Ledger
from shared.packages.digest import DIGEST_V1, DIGEST_V2, package_digest
from shared.packages.manifest import load_manifest
from shared.settings import PROJECT_ROOT, Settings
from shared.storage import Storage

CUSTOMER = {"name": "Ada", "email": "ada@example.com", "country": "GB", "birth_date": "1990-12-10", "credit_score": 742}
ARGS = json.dumps({"customer": CUSTOMER, "salt": "0x" + "ab" * 32})


def copy_validator(parent: Path, name: str) -> Path:
    folder = parent / name
    shutil.copytree(
        PROJECT_ROOT / "cryptlet_packages" / "customer_validator", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    manifest = json.loads((folder / "cryptlet.json").read_text())
    (folder / "cryptlet.json").write_text(json.dumps({**manifest, "name": name}))
    return folder


@pytest.fixture(scope="module")
def legacy(fabric_host) -> dict:
    """``legacy_validator`` registered the way the host did before cfpkg-v2: a v1 digest, no
    ``digest_alg`` in the ledger entry or the catalog row."""
    package = copy_validator(fabric_host.packages_dir, "legacy_validator")
    settings = Settings.from_env(fabric_host.env)
    storage = Storage(settings.storage)
    manifest = load_manifest(package)
    digest = package_digest(package, DIGEST_V1)
    provider = ProcessProvider(fabric_host.sealing_secret)
    try:
        region = provider.create_region(package, digest, domain=Domain(settings.chain_id, settings.verifying_contract))
        try:
            key = region.call("generate_key")
            evidence = attest_key(region, key["public_key"])
        finally:
            region.close()
    finally:
        provider.close()
    TableKeyStore(storage.table(settings.table("keys"))).put(
        SealedKey(key["address"], to_hex(digest), provider.name, base64.b64decode(key["sealed_key"]))
    )
    entry = Ledger(storage.table(settings.table("ledger")), LEDGER_STREAM).append(
        KIND_REGISTERED,
        {
            "name": manifest.name,
            "version": manifest.version,
            "kind": manifest.kind,
            "address": key["address"],
            "public_key": key["public_key"],
            "digest": to_hex(digest),
            "provider": provider.name,
            "package": manifest.name,
            "manifest": manifest.document,
            "key": {"store": "TableKeyStore", "version": 1},
            "evidence": evidence,
        },
    )
    document = {
        "name": manifest.name,
        "version": manifest.version,
        "kind": manifest.kind,
        "description": manifest.description,
        "address": key["address"],
        "public_key": key["public_key"],
        "digest": to_hex(digest),
        "package": manifest.name,
        "provider": provider.name,
        "methods": manifest.methods,
        "ledger": entry.reference(),
        "registered_at": entry.time,
        "evidence": evidence_reference(evidence),
        "events": {},
    }
    storage.table(settings.table("cryptlets")).upsert_entity(
        {
            "PartitionKey": CATALOG_PARTITION,
            "RowKey": manifest.name,
            "status": "active",
            "document": json.dumps(document),
        }
    )
    return {"package": package, "digest": to_hex(digest), "address": key["address"], "sequence": entry.sequence}


def invoke_and_verify(fabric_host, name: str, package: Path, tmp_path: Path) -> tuple[dict, str]:
    out = tmp_path / f"{name}-envelope.json"
    invoked = fabric_host.cli("invoke", name, "validate", "--args", ARGS, "-o", str(out))
    assert invoked.returncode == 0, invoked.stderr
    verified = fabric_host.cli("verify", "--allow-software-evidence", "--package", str(package), str(out))
    assert verified.returncode == 0, verified.stderr
    return json.loads(out.read_text()), verified.stdout


def test_new_registrations_are_cfpkg_v2(fabric_host, legacy, tmp_path):
    # (after ``legacy``: the host's own append then catches its ledger up with the entry written here,
    # which a compare-and-append of a rotation does not do by itself)
    package = copy_validator(fabric_host.packages_dir, "current_validator")
    with fabric_host.client() as http:
        registered = http.post("/api/cryptlets", json={"package": "current_validator"}).json()
        entry = http.get(f"/api/ledger/entries/{registered['ledger']['sequence']}").json()
    assert registered["digest_alg"] == DIGEST_V2 and registered["digest"] == to_hex(package_digest(package))
    assert entry["payload"]["digest_alg"] == DIGEST_V2
    envelope, summary = invoke_and_verify(fabric_host, "current_validator", package, tmp_path)
    assert envelope["digest"] == registered["digest"]
    assert "(cfpkg-v2); the package measures it" in summary


def test_a_v1_registration_keeps_serving_and_verifying(fabric_host, legacy, tmp_path):
    with fabric_host.client() as http:
        described = http.get("/api/cryptlets/legacy_validator").json()
    assert described["digest_alg"] == DIGEST_V1 and described["digest"] == legacy["digest"]
    envelope, summary = invoke_and_verify(fabric_host, "legacy_validator", legacy["package"], tmp_path)
    assert envelope["digest"] == legacy["digest"] and envelope["cryptlet"] == legacy["address"]
    assert envelope["registration"]["sequence"] == legacy["sequence"]
    assert "(cfpkg-v1); the package measures it" in summary
    header = fabric_host.cli("header", "legacy_validator")
    assert header.returncode == 0 and 'DIGEST_ALG = "cfpkg-v1"' in header.stdout


def test_a_changed_package_fails_the_digest_link(fabric_host, legacy, tmp_path):
    out = tmp_path / "envelope.json"
    assert fabric_host.cli("invoke", "legacy_validator", "validate", "--args", ARGS, "-o", str(out)).returncode == 0
    changed = tmp_path / "changed"
    shutil.copytree(legacy["package"], changed)
    (changed / "validator.py").write_text((changed / "validator.py").read_text() + "\n# changed\n")
    refused = fabric_host.cli("verify", "--allow-software-evidence", "--package", str(changed), str(out))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "package_mismatch" in refused.stderr and "cfpkg-v1" in refused.stderr


def test_a_v1_registration_rotates_under_v1(fabric_host, legacy, tmp_path):
    with fabric_host.client() as http:
        rotated = http.post("/api/cryptlets/legacy_validator/keys/rotate")
    assert rotated.status_code == 200, rotated.text
    entry = rotated.json()["entries"][-1]
    assert entry["kind"] == "cryptlet.key_rotated"
    assert entry["payload"]["digest_alg"] == DIGEST_V1 and entry["payload"]["digest"] == legacy["digest"]
    envelope, summary = invoke_and_verify(fabric_host, "legacy_validator", legacy["package"], tmp_path)
    assert envelope["registration"]["sequence"] == entry["sequence"] and "(cfpkg-v1)" in summary
