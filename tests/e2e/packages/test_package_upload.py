"""Registration from an uploaded package zip: accepted uploads run and verify, hostile ones are refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from shared.ledger.checkpoints import VerifierKey
from shared.ledger.receipts import Receipt
from shared.packages.upload import zip_package
from shared.settings import PROJECT_ROOT

MAX_BYTES = 256 * 1024
FABRIC_HOST_SETTINGS = {"FABRIC_MAX_PACKAGE_BYTES": str(MAX_BYTES)}
CUSTOMER = {
    "name": "Ada Example",
    "email": "ada@example.com",
    "country": "GB",
    "birth_date": "1990-12-10",
    "credit_score": 742,
}
ZIP = {"content-type": "application/zip"}


def renamed_validator(parent: Path, name: str) -> Path:
    """A copy of customer_validator registered under ``name``."""
    folder = parent / name
    shutil.copytree(
        PROJECT_ROOT / "cryptlet_packages" / "customer_validator", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    manifest = json.loads((folder / "cryptlet.json").read_text())
    (folder / "cryptlet.json").write_text(json.dumps({**manifest, "name": name}))
    return folder


def archive(*members: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are the point of one case
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
    return info


MANIFEST = json.dumps(
    {
        "name": "hostile_pkg",
        "version": "1.0.0",
        "kind": "utility",
        "runtime": "python",
        "entry": "main:Hostile",
        "config": {"description": "x", "isolation": True},
        "interface": {"methods": {}},
    }
).encode()
HOSTILE = {
    "path_traversal": (400, archive(("cryptlet.json", MANIFEST), ("../escape.py", b"x = 1"))),
    "absolute_path": (400, archive(("cryptlet.json", MANIFEST), ("/tmp/evil.py", b"x = 1"))),
    "symlink": (400, archive(("cryptlet.json", MANIFEST), (symlink_entry("main.py"), b"/etc/passwd"))),
    "duplicate_entry": (400, archive(("cryptlet.json", MANIFEST), ("main.py", b"a"), ("main.py", b"b"))),
    "too_large": (413, archive(("cryptlet.json", MANIFEST), ("blob.bin", os.urandom(MAX_BYTES + 1024)))),
    "too_large_uncompressed": (413, archive(("cryptlet.json", MANIFEST), ("zeros.bin", bytes(5 * MAX_BYTES)))),
    "too_many_files": (413, archive(("cryptlet.json", MANIFEST), *((f"f{i}.py", b"") for i in range(300)))),
    "not_a_zip": (400, b"this is not a zip archive"),
    "missing_manifest": (400, archive(("main.py", b"class Hostile: pass"))),
}


@pytest.fixture(scope="module")
def uploaded(fabric_host, tmp_path_factory):
    folder = renamed_validator(tmp_path_factory.mktemp("upload"), "uploaded_validator")
    with fabric_host.client() as http:
        response = http.post("/api/cryptlets", content=zip_package(folder), headers=ZIP)
    assert response.status_code == 201, response.text
    return response.json()


def test_uploaded_zip_registers_invokes_and_verifies(fabric_host, uploaded, tmp_path):
    assert uploaded["name"] == "uploaded_validator"
    assert uploaded["package"] == f".uploads/{uploaded['digest'][2:]}"
    stored = fabric_host.packages_dir / uploaded["package"]
    assert sorted(p.name for p in stored.iterdir()) == ["cryptlet.json", "validator.py"]
    out = tmp_path / "envelope.json"
    invoked = fabric_host.cli(
        "invoke",
        "uploaded_validator",
        "validate",
        "--args",
        json.dumps({"customer": CUSTOMER, "salt": "0x" + "ab" * 32}),
        "-o",
        str(out),
    )
    assert invoked.returncode == 0, invoked.stderr
    envelope = json.loads(out.read_text())
    assert envelope["payload"]["approved"] is True and envelope["digest"] == uploaded["digest"]
    verified = fabric_host.cli("verify", "--allow-software-evidence", str(out))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("verified: uploaded_validator")


def test_another_host_restores_an_upload_from_the_package_store(fabric_host, uploaded, tmp_path):
    """A scale-out instance (its own, empty packages folder) serves a package uploaded to another host."""
    empty = tmp_path / "packages"
    empty.mkdir()
    stored = ContainerClient.from_connection_string(fabric_host.storage, f"{fabric_host.table_prefix}packages")
    assert f"{uploaded['digest'][2:]}.zip" in {b.name for b in stored.list_blobs()}
    with fabric_host.twin(FABRIC_PACKAGES_DIR=str(empty)) as other, other.client() as http:
        response = http.post(
            "/api/cryptlets/uploaded_validator/invoke",
            json={"method": "validate", "args": {"customer": CUSTOMER, "salt": "0x" + "cd" * 32}},
        )
    assert response.status_code == 200, response.text
    envelope = response.json()
    assert envelope["digest"] == uploaded["digest"] and envelope["cryptlet"] == uploaded["address"]
    assert sorted(p.name for p in (empty / uploaded["package"]).iterdir()) == ["cryptlet.json", "validator.py"]


def test_a_package_changed_in_the_store_is_refused(fabric_host, uploaded, tmp_path):
    empty = tmp_path / "packages"
    empty.mkdir()
    blob = ContainerClient.from_connection_string(
        fabric_host.storage, f"{fabric_host.table_prefix}packages"
    ).get_blob_client(f"{uploaded['digest'][2:]}.zip")
    original = blob.download_blob().readall()
    folder = renamed_validator(tmp_path / "evil", "uploaded_validator")
    (folder / "validator.py").write_text((folder / "validator.py").read_text() + "\n# changed\n")
    blob.upload_blob(zip_package(folder), overwrite=True)
    try:
        with fabric_host.twin(FABRIC_PACKAGES_DIR=str(empty)) as other, other.client() as http:
            response = http.post("/api/cryptlets/uploaded_validator/invoke", json={"method": "rules"})
    finally:
        blob.upload_blob(original, overwrite=True)
    assert response.status_code >= 400, response.text
    assert "changed in storage" in response.json()["detail"]
    assert not (empty / uploaded["package"]).exists()


@pytest.mark.parametrize("reason", sorted(HOSTILE))
def test_hostile_upload_is_refused_and_nothing_is_registered(fabric_host, uploaded, reason):
    status, body = HOSTILE[reason]
    with fabric_host.client() as http:
        response = http.post("/api/cryptlets", content=body, headers=ZIP)
        listed = [c["name"] for c in http.get("/api/cryptlets").json()["cryptlets"]]
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["reason"] == reason and problem["field"] == "package"
    assert "hostile_pkg" not in listed
    uploads = fabric_host.packages_dir / ".uploads"
    assert not (fabric_host.packages_dir.parent / "escape.py").exists()
    assert not [p.name for p in uploads.iterdir() if p.name.startswith(".tmp-")]  # no half-extracted leftovers
    assert {p.name for p in uploads.iterdir()} == {uploaded["package"].split("/")[1]}


def test_invalid_manifest_in_an_upload_names_the_json_path_and_leaves_nothing(fabric_host, uploaded):
    manifest = {**json.loads(MANIFEST), "kind": "gadget"}
    with fabric_host.client() as http:
        response = http.post(
            "/api/cryptlets", content=archive(("cryptlet.json", json.dumps(manifest).encode())), headers=ZIP
        )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "$.kind"
    assert {p.name for p in (fabric_host.packages_dir / ".uploads").iterdir()} == {uploaded["package"].split("/")[1]}


def test_get_includes_evidence_and_a_receipt_that_verifies(fabric_host, uploaded):
    with fabric_host.client() as http:
        described = http.get("/api/cryptlets/uploaded_validator").json()
        listed = http.get("/api/cryptlets").json()["cryptlets"]
        public_key = http.get("/api/ledger").json()["public_key"]
    assert described["evidence"] == uploaded["evidence"] and described["evidence"]["kind"]
    receipt = Receipt.from_dict(described["receipt"])
    assert receipt.verify(VerifierKey.parse(public_key)).size >= uploaded["ledger"]["sequence"]
    assert receipt.entry.sequence == uploaded["ledger"]["sequence"]
    assert receipt.entry.payload["address"] == uploaded["address"]
    assert all("receipt" not in c for c in listed)  # the list stays light


def test_cli_registers_a_local_folder_and_a_zip(fabric_host, tmp_path):
    folder = renamed_validator(tmp_path, "cli_validator")
    registered = fabric_host.cli("register", str(folder))
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["name"] == "cli_validator"
    zipped = tmp_path / "zipped.zip"
    zipped.write_bytes(zip_package(renamed_validator(tmp_path / "z", "zip_validator")))
    registered = fabric_host.cli("register", str(zipped))
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["name"] == "zip_validator"
    assert zip_package(folder) == zip_package(folder)  # deterministic
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"nope")
    refused = fabric_host.cli("register", str(bad))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "not a zip" in refused.stderr
    missing = fabric_host.cli("register", str(tmp_path / "absent"))
    assert missing.returncode == 1 and "no package folder" in missing.stderr
