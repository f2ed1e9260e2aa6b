"""Cryptlet registration: measure, key inside a region, seal, record in the ledger, catalog.

The ledger is the source of truth; the catalog table is an index of the current
registrations by name, written after the ledger entry is durable.

A failed registration leaves nothing behind. The name is reserved in the catalog before anything
is written; an upload is only checked, extracted into a private folder and measured before that,
and put in place (``.uploads/<digest>`` and its zip in the package store) once the name is held.
On any failure, still holding the name, the registration deletes the sealed key it stored and the
upload it put in place, unless the ledger holds them (an append whose outcome was unknown may have
committed). Every registration of one package needs the same name (the name is in the measured
``cryptlet.json``), so no other registration can be using that upload meanwhile.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.attestation.evidence import cryptlet_report_data
from shared.clock import utc_now
from shared.encoding import from_hex, to_hex
from shared.envelope import Domain
from shared.errors import Conflict, InvalidInput, ManifestError, NotFound
from shared.isolation.callout import HostCallOuts
from shared.isolation.provider import IsolationProvider, Region
from shared.keys.store import KeyStore, SealedKey
from shared.ledger.chain import Ledger
from shared.ledger.index import LedgerIndex
from shared.packages.digest import DIGEST_ALG, DIGEST_V1
from shared.packages.folders import PackageFolders
from shared.packages.manifest import Manifest, load_manifest
from shared.packages.names import check_name
from shared.packages.upload import StagedUpload
from shared.storage import storage_errors

log = logging.getLogger(__name__)

CATALOG_PARTITION = "cryptlet"
KIND_REGISTERED = "cryptlet.registered"


@dataclass(frozen=True)
class Registration:
    """A registered cryptlet as the catalog knows it."""

    name: str
    version: str
    kind: str
    description: str
    address: str
    public_key: str
    digest: str
    package: str
    provider: str
    methods: dict[str, Any]
    ledger: dict[str, Any]
    registered_at: str
    evidence: dict[str, Any] = field(default_factory=dict)  # {"kind", "hash"} of the key's evidence
    events: dict[str, Any] = field(default_factory=dict)  # the manifest's interface.events
    digest_alg: str = DIGEST_V1  # how ``digest`` was measured (catalog rows without it are cfpkg-v1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "description": self.description,
            "address": self.address,
            "public_key": self.public_key,
            "digest": self.digest,
            "package": self.package,
            "provider": self.provider,
            "methods": self.methods,
            "ledger": self.ledger,
            "registered_at": self.registered_at,
            "evidence": self.evidence,
            "events": self.events,
            "digest_alg": self.digest_alg,
        }


#: ``region_options(name, manifest document) -> create_region keyword arguments`` (call-out handler,
#: timeout) for regions made at registration and key rotation.
RegionOptions = Callable[[str, dict[str, Any]], dict[str, Any]]


def manifest_region_options(name: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Region options from the manifest alone: its egress allow-list and per-call timeout."""
    return {
        "call_out": HostCallOuts(name, egress=manifest.get("egress", ())),
        "timeout": manifest.get("config", {}).get("timeoutSeconds"),
    }


class Registry:
    """Registers cryptlet packages and answers which cryptlets exist."""

    def __init__(
        self,
        *,
        folders: PackageFolders,
        catalog: TableClient,
        ledger: Ledger,
        index: LedgerIndex,
        keystore: KeyStore,
        provider: IsolationProvider,
        domain: Domain,
        region_options: RegionOptions = manifest_region_options,
    ) -> None:
        self.folders = folders
        self.catalog = catalog
        self.ledger = ledger
        self.index = index
        self.keystore = keystore
        self.provider = provider
        self.domain = domain
        #: options of the regions made here and at key rotation (the host's effective settings, policy
        #: included; the default applies the manifest's egress and timeout)
        self.region_options = region_options

    def package_dir(self, package: Any) -> Path:
        """Resolve a package name (or an uploaded package's ``.uploads/<digest>``) to its folder."""
        return self.folders.resolve(package)

    def register(self, package: Any) -> tuple[Registration, Region]:
        """Register a package folder (a name, or an earlier upload's ``.uploads/<digest>``); returns the
        registration and the warm region holding its key."""
        package_dir = self.package_dir(package)
        return self._register(package, package_dir, self.provider.digest(package_dir))

    def register_upload(self, data: bytes) -> tuple[Registration, Region]:
        """Register an uploaded package zip: checked and measured first, put in place once its name is held."""
        with self.folders.stage_upload(data) as staged:
            return self._register(staged.package, staged.path, staged.digest, upload=(staged, data))

    def _register(
        self, package: str, package_dir: Path, digest: bytes, upload: tuple[StagedUpload, bytes] | None = None
    ) -> tuple[Registration, Region]:
        manifest = load_manifest(package_dir)
        self._reserve(manifest.name)
        stored: str | None = None  # the address of the sealed key stored here
        try:
            if upload is not None:
                package_dir = self.folders.commit_upload(*upload)
            else:  # resolved again: a registration that failed meanwhile may have discarded an upload
                self.folders.check_kept(package)
                package_dir = self.package_dir(package)
            region = self.provider.create_region(
                package_dir, digest, domain=self.domain, **self.region_options(manifest.name, manifest.document)
            )
            try:
                key = region.call("generate_key")
                evidence = attest_key(region, key["public_key"])
                self.keystore.put(
                    SealedKey(
                        address=key["address"],
                        digest=to_hex(digest),
                        provider=self.provider.name,
                        blob=base64.b64decode(key["sealed_key"]),
                    )
                )
                stored = key["address"]
                registration = self._record(manifest, package, digest, key, evidence)
                region.call("bind", registration=registration.ledger, evidence=registration.evidence)
            except BaseException:
                region.close()
                raise
        except BaseException:
            self._abandon(manifest.name, to_hex(digest), stored, package if upload is not None else None)
            self._release(manifest.name)
            raise
        self._store(registration)
        return registration, region

    def _record(
        self, manifest: Manifest, package: str, digest: bytes, key: dict[str, Any], evidence: dict[str, Any]
    ) -> Registration:
        """Append the ``cryptlet.registered`` entry; the registration it makes."""
        payload = {
            "name": manifest.name,
            "version": manifest.version,
            "kind": manifest.kind,
            "address": key["address"],
            "public_key": key["public_key"],
            "digest": to_hex(digest),
            "digest_alg": DIGEST_ALG,
            "provider": self.provider.name,
            "package": package,
            "manifest": manifest.document,
            "key": {"store": type(self.keystore).__name__, "version": 1},
            "evidence": evidence,
        }
        try:
            entry = self.ledger.append(KIND_REGISTERED, payload)
        except InvalidInput as exc:
            if exc.field != "payload":
                raise
            raise ManifestError(
                f"cryptlet.json is too large to record in the ledger ({exc.detail})", field="$"
            ) from None
        return Registration(
            name=manifest.name,
            version=manifest.version,
            kind=manifest.kind,
            description=manifest.description,
            address=key["address"],
            public_key=key["public_key"],
            digest=to_hex(digest),
            package=package,
            provider=self.provider.name,
            methods=manifest.methods,
            ledger=entry.reference(),
            registered_at=entry.time,
            evidence=evidence_reference(evidence),
            events=manifest.events,
            digest_alg=DIGEST_ALG,
        )

    def abandon_key(self, name: str, address: str) -> None:
        """Delete the sealed key ``address`` a failed rotation of ``name`` stored, unless the ledger holds it."""
        self._abandon(name, None, address, None)

    def _abandon(self, name: str, digest: str | None, address: str | None, upload: str | None) -> None:
        """Undo what a failed registration (or rotation) of ``name`` stored: its sealed key, the upload it
        put in place (for package ``digest``) — each unless the ledger holds it."""
        if address is None and upload is None:
            return
        try:
            records = self.index.keys().keys_of(name)
        except Exception as exc:  # cannot tell what the ledger holds: keep everything
            log.warning("a change of %s failed; its key and upload are kept (%s)", name, type(exc).__name__)
            return
        try:
            if address is not None and address.lower() not in {r.address.lower() for r in records}:
                self.keystore.delete(address)
            if upload is not None and not any(r.digest == digest for r in records):
                self.folders.discard_upload(upload)
        except Exception as exc:
            log.warning("what a failed change of %s stored was not all removed (%s)", name, type(exc).__name__)

    def get(self, name: str) -> Registration:
        check_name(name)
        with storage_errors("catalog"):
            try:
                row = self.catalog.get_entity(CATALOG_PARTITION, name)
            except ResourceNotFoundError:
                raise NotFound(f"no cryptlet named {name!r} is registered", field="name") from None
        if row.get("status") != "active":
            raise NotFound(f"no cryptlet named {name!r} is registered", field="name")
        return self._from_row(row)

    def list(self) -> list[Registration]:
        with storage_errors("catalog"):
            rows = self.catalog.query_entities(
                "PartitionKey eq @pk and status eq 'active'", parameters={"pk": CATALOG_PARTITION}
            )
            return [self._from_row(row) for row in rows]

    # -- catalog rows ---------------------------------------------------------------------------
    def _reserve(self, name: str) -> None:
        with storage_errors("catalog"):
            try:
                self.catalog.create_entity(
                    {
                        "PartitionKey": CATALOG_PARTITION,
                        "RowKey": name,
                        "status": "registering",
                        "reserved_at": utc_now(),
                    }
                )
            except ResourceExistsError:
                raise Conflict(f"a cryptlet named {name!r} is already registered", field="name") from None

    def _release(self, name: str) -> None:
        try:
            self.catalog.delete_entity(CATALOG_PARTITION, name)
        except AzureError:
            pass

    def _store(self, registration: Registration) -> None:
        row = {
            "PartitionKey": CATALOG_PARTITION,
            "RowKey": registration.name,
            "status": "active",
            "document": json.dumps(registration.to_dict(), separators=(",", ":")),
        }
        with storage_errors("catalog"):
            self.catalog.upsert_entity(row, mode=UpdateMode.REPLACE)

    @staticmethod
    def _from_row(row: dict[str, Any]) -> Registration:
        return Registration(**json.loads(row["document"]))


class RegistrationCache:
    """Recent catalog reads for invocations: a registration is reused for at most ``ttl_s``.

    Changes made on this host (register, rotate, revoke, retire) drop it at once (:meth:`forget`);
    a key changed on another host is noticed within ``ttl_s`` (its regions are then replaced, see
    :meth:`shared.host.pools.Pools.get`).
    """

    def __init__(self, registry: Registry, ttl_s: float = 2.0) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Registration]] = {}  # name -> (expires, registration)
        self._generation = 0  # bumped by forget: a read that raced a change is not cached
        self._lock = threading.Lock()

    def get(self, name: str) -> Registration:
        """The active registration of ``name``, from the catalog or a recent read of it."""
        now = time.monotonic()
        cached = self._entries.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self._generation
        registration = self.registry.get(name)  # NotFound is not cached: a new registration shows at once
        with self._lock:
            if generation == self._generation:
                self._entries[name] = (now + self.ttl_s, registration)
        return registration

    def forget(self, name: str) -> None:
        """Drop the cached registration of ``name`` (its key or status changes or changed)."""
        with self._lock:
            self._generation += 1
            self._entries.pop(name, None)


def digest_bytes(registration: Registration) -> bytes:
    return from_hex(registration.digest, length=32, field="digest")


def attest_key(region: Region, public_key: str) -> dict[str, Any]:
    """Evidence that ``region`` holds ``public_key``, as the ledger records it.

    ``report_data = SHA-256(public key || nonce)`` with a fresh 32-byte nonce; the record is
    ``{"kind", "hash", "blob", "nonce"}`` (see ``docs/evidence.md``).
    """
    nonce = os.urandom(32)
    evidence = region.evidence(cryptlet_report_data(from_hex(public_key, length=65, field="public_key"), nonce))
    return {**evidence.to_dict(), "nonce": to_hex(nonce)}


def evidence_reference(record: dict[str, Any]) -> dict[str, Any]:
    """What envelopes cite of a ledger evidence record: ``{"kind", "hash"}``."""
    return {"kind": record["kind"], "hash": record["hash"]}
