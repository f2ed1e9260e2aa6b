"""A refused registration or rotation leaves nothing behind, and names are matched in full.

Each refused request (invalid or over-size manifest, a taken name, bad file names, a losing
concurrent upload, a rotation with an invalid body) is made between two counts of the upload
folders, the package store's blobs and the key store's sealed keys: none may appear. A name with a
trailing newline is a 400 naming the field, never a 503.
"""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient

from shared.settings import PROJECT_ROOT

MAX_BYTES = 256 * 1024
FABRIC_HOST_SETTINGS = {"FABRIC_MAX_PACKAGE_BYTES": str(MAX_BYTES)}
ZIP = {"content-type": "application/zip"}
SAMPLE = PROJECT_ROOT / "cryptlet_packages" / "customer_validator"
CUSTOMER = {"name": "Ada", "email": "ada@example.com", "country": "GB", "birth_date": "1990-12-10", "credit_score": 742}


def validator_files(name: str, **changes) -> dict[str, bytes]:
    """customer_validator's files with its manifest named ``name`` (and ``changes`` applied)."""
    manifest = {**json.loads((SAMPLE / "cryptlet.json").read_text()), "name": name, **changes}
    return {"cryptlet.json": json.dumps(manifest).encode(), "validator.py": (SAMPLE / "validator.py").read_bytes()}


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


@dataclass(frozen=True)
class Inventory:
    uploads: frozenset[str]  # folders under .uploads (temporary ones included)
    blobs: frozenset[str]  # zips in the package store
    keys: frozenset[tuple[str, str]]  # sealed keys (table key store rows)


def inventory(host) -> Inventory:
    uploads = host.packages_dir / ".uploads"
    container = ContainerClient.from_connection_string(host.storage, f"{host.table_prefix}packages")
    table = TableClient.from_connection_string(host.storage, f"{host.table_prefix}keys")
    try:
        blobs = frozenset(b.name for b in container.list_blobs())
    except ResourceNotFoundError:
        blobs = frozenset()
    try:
        keys = frozenset((e["PartitionKey"], e["RowKey"]) for e in table.list_entities())
    except ResourceNotFoundError:
        keys = frozenset()
    return Inventory(frozenset(p.name for p in uploads.iterdir()) if uploads.is_dir() else frozenset(), blobs, keys)


def upload(http: httpx.Client, files: dict[str, bytes]) -> httpx.Response:
    return http.post("/api/cryptlets", content=archive(files), headers=ZIP)


def folder_with_a_newline_name(host) -> httpx.Response:
    folder = host.packages_dir / "nl_folder"
    if not folder.exists():
        folder.mkdir()
        for name, data in validator_files("nl_folder").items():
            (folder / name).write_bytes(data)
        (folder / "x\nd4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35  y").write_bytes(b"1")
    with host.client() as http:
        return http.post("/api/cryptlets", json={"package": "nl_folder"})


def rotate(host, body: dict) -> httpx.Response:
    with host.client() as http:
        return http.post("/api/cryptlets/customer_validator/keys/rotate", json=body)


# case -> (request, status, problem fields that must match)
REFUSED = {
    "invalid manifest": (
        lambda h, http: upload(http, validator_files("bad_kind", kind="gadget")),
        400,
        {"field": "$.kind"},
    ),
    "over-size manifest (refused at the ledger, after the key was stored)": (
        lambda h, http: upload(
            http,
            validator_files(
                "big_manifest",
                interface={
                    **json.loads((SAMPLE / "cryptlet.json").read_text())["interface"],
                    "methods": {
                        name: {**method, "description": "x" * 40_000}
                        for name, method in json.loads((SAMPLE / "cryptlet.json").read_text())["interface"][
                            "methods"
                        ].items()
                    },
                },
            ),
        ),
        400,
        {"field": "$", "code": "invalid_manifest"},
    ),
    "another package under a taken name": (
        lambda h, http: upload(http, validator_files("customer_validator", version="9.9.9")),
        409,
        {"field": "name"},
    ),
    "a file name with a newline (the v1 collision)": (
        lambda h, http: upload(http, {**validator_files("nl_upload"), "x\nd4735e3a  y": b"1"}),
        400,
        {"field": "package", "reason": "bad_name", "entry": "x\nd4735e3a  y"},
    ),
    "an over-long file name": (
        lambda h, http: upload(http, {**validator_files("long_upload"), "a" * 300 + ".py": b"1"}),
        400,
        {"field": "package", "reason": "name_too_long"},
    ),
    "a manifest name with a trailing newline": (
        lambda h, http: upload(http, validator_files("nl_name\n")),
        400,
        {"field": "$.name"},
    ),
    "a package folder with a newline file name": (
        lambda h, http: folder_with_a_newline_name(h),
        400,
        {"field": "package", "reason": "bad_name"},
    ),
    "a package reference with a trailing newline": (
        lambda h, http: http.post("/api/cryptlets", json={"package": "customer_validator\n"}),
        400,
        {"field": "package"},
    ),
    "rotate: unknown revocation reason": (
        lambda h, http: rotate(h, {"revoke": {"reason": "bogus"}}),
        400,
        {"field": "reason"},
    ),
    "rotate: invalid_after not a time": (
        lambda h, http: rotate(h, {"revoke": {"reason": "superseded", "invalid_after": "yesterday"}}),
        400,
        {"field": "$.payload.invalid_after"},
    ),
    "rotate: over-long note": (
        lambda h, http: rotate(h, {"revoke": {"reason": "superseded", "note": "n" * 600}}),
        400,
        {"field": "$.payload.note"},
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_request_leaves_no_folder_blob_or_sealed_key(fabric_host, registered, case):
    request, status, expected = REFUSED[case]
    before = inventory(fabric_host)
    with fabric_host.client() as http:
        response = request(fabric_host, http)
        listed = {c["name"] for c in http.get("/api/cryptlets").json()["cryptlets"]}
    assert response.status_code == status, response.text
    problem = response.json()
    assert {k: problem.get(k) for k in expected} == expected, problem
    assert inventory(fabric_host) == before
    assert listed == {"customer_validator"}


def test_losing_concurrent_uploads_leave_one_copy_of_the_package(fabric_host, registered, tmp_path):
    data = archive(validator_files("race_validator"))
    before = inventory(fabric_host)

    def post(_: int) -> httpx.Response:
        with fabric_host.client() as http:
            return http.post("/api/cryptlets", content=data, headers=ZIP)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(post, range(4)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409], [r.text for r in responses]
    digest = next(r.json()["digest"][2:] for r in responses if r.status_code == 201)
    after = inventory(fabric_host)
    assert after.uploads == before.uploads | {digest}
    assert after.blobs == before.blobs | {f"{digest}.zip"}
    assert len(after.keys - before.keys) == 1 and before.keys <= after.keys
    with fabric_host.client() as http:  # uploading it again: refused, and the registered package stays
        assert http.post("/api/cryptlets", content=data, headers=ZIP).status_code == 409
    assert inventory(fabric_host) == after
    empty = tmp_path / "packages"
    empty.mkdir()
    with fabric_host.twin(FABRIC_PACKAGES_DIR=str(empty)) as other, other.client() as http:
        invoked = http.post(
            "/api/cryptlets/race_validator/invoke",
            json={"method": "validate", "args": {"customer": CUSTOMER, "salt": "0x" + "cd" * 32}},
        )
    assert invoked.status_code == 200, invoked.text  # restored from the blob that stayed


NL = "%0A"
ROUTES = [  # (method, path, body, the field a 400 names)
    ("GET", f"/api/cryptlets/customer_validator{NL}", None, "name"),
    ("POST", f"/api/cryptlets/customer_validator{NL}/invoke", {"method": "rules"}, "name"),
    ("GET", f"/api/cryptlets/customer_validator{NL}/state", None, "name"),
    ("GET", f"/api/cryptlets/customer_validator{NL}/policy", None, "name"),
    ("POST", f"/api/cryptlets/customer_validator{NL}/keys/rotate", {}, "name"),
    ("POST", f"/api/cryptlets/customer_validator{NL}/retire", {}, "name"),
    ("POST", f"/api/cryptlets/customer_validator{NL}/requests", {"method": "rules"}, "name"),
    ("POST", "/api/subscribers", {"name": "customer_validator\n", "public_key": "0x04" + "11" * 64}, "$.name"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_a_name_with_a_trailing_newline_is_a_400_naming_the_field(fabric_host, registered, method, path, body, field):
    with fabric_host.client(fabric_host.admin_key) as http:  # some routes are admin-level
        response = http.request(method, path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
