"""The host container service: one object that wires settings, storage, ledger, key store,
isolation provider, registry and region pools, and serves registrations and invocations.

``functions/`` calls :func:`get_fabric` and nothing deeper.
"""
from __future__ import annotations

import atexit
import base64
import logging
import os
import platform
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from cryptlet_sdk import MAX_EVENTS
import shared
from shared.encoding import from_hex, to_hex
from shared.envelope import Domain, payload_hash
from shared.errors import Conflict, FabricError, InvalidInput, RegionError
from shared.isolation.callout import HostCallOuts
from shared.isolation.process import ProcessProvider
from shared.isolation.provider import Region
from shared.host.progress import JobStore
from shared.ledger.checkpoints import CheckpointSigner, origin_of
from shared.host.contract_state import StateStore
from shared.events.delivery import DeliveryKey
from shared.ledger.checkpoint_store import CheckpointStore
from shared.keys.lifecycle import KeyLifecycle
from shared.keys.store import open_key_store
from shared.ledger.chain import Ledger, LedgerEntry
from shared.ledger.index import LedgerIndex
from shared.ledger.kinds import POLICY_SET, REGISTERED
from shared.packages.manifest import load_manifest
from shared.host.policy import PolicyStore, effective_settings, manifest_settings, validate_policy
from shared.packages.store import PackageStore
from shared.packages.upload import UPLOADS_FOLDER, extract_package
from shared.isolation.pool import RegionPool, SequenceClock
from shared.host.registry import Registration, Registry, digest_bytes
from shared.host.queued_calls import QueuedRequest, RequestStore, deadline_of
from shared.settings import Settings
from shared.storage import container_client, table_client

log = logging.getLogger("fabric")
LEDGER_STREAM = "registry"
#: How long an invocation may reuse a registration read from the catalog. Changes made on this host
#: (register, rotate, revoke, retire) drop it at once; a key changed on another host is noticed
#: within this time (its regions are then replaced, see :meth:`Fabric._pool`).
REGISTRATION_TTL_S = 2.0
#: Sequence numbers reserved per invocation: its envelope and the events it may emit.
SEQUENCE_BLOCK = 1 + MAX_EVENTS


class Fabric:
    """The fabric's services for one host process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.domain = Domain(settings.chain_id, settings.verifying_contract)
        self.provider = ProcessProvider(settings.sealing_secret, timeout=settings.region_timeout)
        self.ledger = Ledger(table_client(settings.storage, settings.table("ledger")), LEDGER_STREAM)
        self.ledger_index = LedgerIndex(self.ledger, CheckpointStore(self.ledger.table, LEDGER_STREAM),
                                        CheckpointSigner.from_secret(settings.sealing_secret, origin_of(LEDGER_STREAM)))
        self.keystore = open_key_store(settings)
        self.jobs = JobStore(table_client(settings.storage, settings.table("jobs")))  # progress of long calls
        # regions made at registration and key rotation join the pools too: they report progress here as well
        self.registry = Registry(packages_dir=settings.packages_dir, uploads_dir=settings.uploads_folder,
                                 catalog=table_client(settings.storage, settings.table("cryptlets")),
                                 ledger=self.ledger, keystore=self.keystore,
                                 provider=self.provider, domain=self.domain)
        self.registry.region_options = self._region_options  # effective settings, progress sink
        self.uploads = PackageStore(container_client(settings.storage, settings.table("packages").lower()))
        self.registry.restore_upload = self._restore_upload
        self.keys = KeyLifecycle(self.registry, self.ledger_index)
        self.requests = RequestStore(table_client(settings.storage, settings.table("requests")))
        self.sequences = SequenceClock()
        self.policies = PolicyStore(table_client(settings.storage, settings.table("cryptlets")))
        self.states = StateStore(table_client(settings.storage, settings.table("cryptlets")))
        self.delivery_key = DeliveryKey(settings.sealing_secret)  # signs deliveries and expiry results
        self._state_locks: dict[str, threading.Lock] = {}
        self._pools: dict[str, RegionPool] = {}
        self._pool_keys: dict[str, Registration] = {}  # the registration (key) each pool's regions hold
        self._pool_settings: dict[str, dict[str, Any]] = {}  # the effective settings each pool was built with
        self._rotating: set[str] = set()  # names whose key this process is changing right now
        self._pools_lock = threading.Condition()
        self._registrations: dict[str, tuple[float, Registration]] = {}  # name -> (expires, registration)
        self._registrations_generation = 0  # bumped by _forget: a read that raced a change is not cached
        self._registrations_lock = threading.Lock()

    # -- registration -----------------------------------------------------------------------------
    def register(self, body: Any) -> Registration:
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object", field="$")
        if "package" not in body:
            raise InvalidInput("package is required", field="package")
        registration, region = self.registry.register(body["package"])
        self._forget(registration.name)
        self._pool(registration).add(region)
        return registration

    def register_upload(self, data: bytes) -> Registration:
        """Register an uploaded package zip: check it, extract it under ``.uploads/<digest>``, register it."""
        folder, created = extract_package(data, self.settings.uploads_folder,
                                          self.settings.max_package_bytes, self.provider.digest)
        try:
            self.uploads.put(folder.name, data)  # before the catalog row: every host can restore it
            return self.register({"package": f"{UPLOADS_FOLDER}/{folder.name}"})
        except InvalidInput:  # e.g. an invalid manifest: drop what this call extracted (not on Conflict:
            if created:       # a concurrent upload of the same package may be using the folder)
                shutil.rmtree(folder, ignore_errors=True)
                self.uploads.delete(folder.name)
            raise

    def _restore_upload(self, digest_hex: str) -> Path:
        """An upload another host received: extract it here from the package store (same checks)."""
        return self.uploads.restore(digest_hex, self.settings.uploads_folder,
                                    self.settings.max_package_bytes, self.provider.digest)

    def get(self, name: str) -> Registration:
        return self.registry.get(name)

    def describe(self, name: str) -> dict[str, Any]:
        """One cryptlet in full: its registration plus the ledger receipt of its registration entry."""
        registration = self.registry.get(name)
        return {**registration.to_dict(),
                "receipt": self.ledger_index.receipt(registration.ledger["sequence"]).to_dict(),
                "effective": self.effective(registration)}

    def list(self) -> list[Registration]:
        return self.registry.list()

    # -- invocation -------------------------------------------------------------------------------
    def invoke(self, name: str, body: Any) -> dict[str, Any]:
        """Run ``method(**args)`` of cryptlet ``name`` in a region; return the signed envelope.

        Events the call emitted come back as ``events`` (each its own signed envelope). A contract
        cryptlet's call runs over its stored state, one call at a time per host, and its new state
        is stored as the envelope reports it.
        """
        registration, method, args, request_id = self._parse_call(name, body)
        if registration.kind == "contract":
            return self._invoke_contract(registration, method, args, request_id)
        return _response(self._call_region(registration, method, args=args, request_id=to_hex(request_id)))

    def _call_region(self, registration: Registration, method: str, **params: Any) -> dict[str, Any]:
        with self._pool(registration).lease() as region:
            try:
                return region.call("invoke", method=method, sequence=self.sequences.next(SEQUENCE_BLOCK),
                                   sequences=SEQUENCE_BLOCK, **params)
            except RegionError as exc:
                if exc.extra.get("region_code") == "bad_arguments":
                    raise InvalidInput(f"{registration.name}.{method} rejected its arguments: {exc.detail}",
                                       field="args") from None
                raise

    def _invoke_contract(self, registration: Registration, method: str, args: dict[str, Any],
                         request_id: bytes) -> dict[str, Any]:
        with self._state_lock(registration.name):
            record = self.states.get(registration.name)
            result = self._call_region(registration, method, args=args, request_id=to_hex(request_id),
                                       state=record.state, state_version=record.version)
            if "state" in result:
                summary = result["envelope"]["payload"]["state"]
                if to_hex(payload_hash(result["state"])) != summary["hash"]:
                    raise RegionError("region returned a state that does not match the hash it signed",
                                      region_code="state_mismatch")
                self.states.put(registration.name, record, result["state"], summary["version"], summary["hash"])
        return _response(result)

    def _state_lock(self, name: str) -> threading.Lock:
        with self._registrations_lock:
            return self._state_locks.setdefault(name, threading.Lock())

    def state(self, name: str) -> dict[str, Any]:
        """A contract cryptlet's stored state, version and hash (``GET /api/cryptlets/{name}/state``)."""
        registration = self.registry.get(name)
        if registration.kind != "contract":
            raise InvalidInput(f"{name} is a {registration.kind} cryptlet: it has no state", field="name")
        return {"name": name, **self.states.get(name).to_dict()}

    def _parse_call(self, name: str, body: Any) -> tuple[Registration, str, dict[str, Any], bytes]:
        """Validate an invocation body against the cryptlet's interface: (registration, method, args, request id)."""
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object", field="$")
        registration = self._registration(name)
        method = body.get("method")
        if not isinstance(method, str) or method not in registration.methods:
            raise InvalidInput(f"method must be one of {sorted(registration.methods)}", field="method")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise InvalidInput("args must be a JSON object of named arguments", field="args")
        request_id = body.get("request_id")
        request_id = from_hex(request_id, length=32, field="request_id") if request_id is not None else os.urandom(32)
        return registration, method, args, request_id

    def _registration(self, name: str) -> Registration:
        """The active registration of ``name``, from the catalog or (for invocations) a recent read of it."""
        now = time.monotonic()
        cached = self._registrations.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self._registrations_generation
        registration = self.registry.get(name)  # NotFound is not cached: a new registration shows at once
        with self._registrations_lock:
            if generation == self._registrations_generation:
                self._registrations[name] = (now + REGISTRATION_TTL_S, registration)
        return registration

    def _forget(self, name: str) -> None:
        """Drop the cached registration of ``name`` (its key or status changes or changed)."""
        with self._registrations_lock:
            self._registrations_generation += 1
            self._registrations.pop(name, None)

    def accept_request(self, name: str, body: Any) -> QueuedRequest:
        """Validate an asynchronous invocation and record it as pending; the caller enqueues it."""
        _, method, args, request_id = self._parse_call(name, body)
        request = QueuedRequest(to_hex(request_id), name, method, args, deadline_of(body, _now_ms()))
        self.requests.pending(request)
        return request

    def request_status(self, request_id: str) -> dict[str, Any]:
        """A request's status; one still pending past its deadline is expired now (signed failure)."""
        status = self.requests.get(request_id)
        deadline = status.get("deadline_ms")
        if status["status"] == "pending" and deadline is not None and _now_ms() > deadline:
            self.requests.expired(status["request_id"], self._expiry(status["request_id"], deadline))
            status = self.requests.get(request_id)
        return status

    def _expiry(self, request_id: str, deadline_ms: int) -> dict[str, Any]:
        """The explicit failure of an expired request, signed by the fabric's delivery key."""
        result = {"request_id": request_id, "status": "expired", "deadline_ms": deadline_ms, "expired_ms": _now_ms()}
        return {"type": "about:blank", "title": "Request expired", "status": 410, "code": "expired",
                "detail": "the request reached its deadline before it ran", "result": result,
                "signature": self.delivery_key.sign(result), "signer": self.delivery_key.address}

    def run_request(self, message: bytes | str) -> None:
        """Execute a queued request and record its outcome.

        Errors a retry cannot fix (4xx) are recorded as ``failed``; others propagate so the
        queue retries the message and finally moves it to the poison queue.
        """
        request = QueuedRequest.from_message(message)
        if request.deadline_ms is not None and _now_ms() > request.deadline_ms:
            self.requests.expired(request.request_id, self._expiry(request.request_id, request.deadline_ms))
            return
        try:
            envelope = self.invoke(request.name, {"method": request.method, "args": request.args,
                                                  "request_id": request.request_id})
        except FabricError as exc:
            if exc.status < 500:
                self.requests.failed(request.request_id, exc)
                return
            raise
        self.requests.done(request.request_id, envelope)

    def _pool(self, registration: Registration) -> RegionPool:
        with self._pools_lock:
            self._pools_lock.wait_for(lambda: registration.name not in self._rotating, self.settings.region_timeout)
            pool = self._pools.get(registration.name)
            held = self._pool_keys.get(registration.name)
            if pool is not None and held is not None and held.ledger["sequence"] < registration.ledger["sequence"]:
                pool.close()  # the key changed on another host: stop signing with the old one
                pool = None
            if pool is None:
                settings = self.effective(registration)
                self._check_isolation(registration.name, settings)
                pool = RegionPool(lambda: self._start_region(registration), settings["max_instances"])
                self._pools[registration.name] = pool
                self._pool_keys[registration.name] = registration
                self._pool_settings[registration.name] = settings
            return pool

    def _options(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        """``create_region`` keyword arguments for effective ``settings``: call-outs (egress, progress), timeout."""
        return {"call_out": HostCallOuts(name, egress=settings["egress"], progress=self.jobs.report),
                "timeout": settings["timeout_s"]}

    def _region_options(self, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Region options for registration and key rotation: defaults < ``manifest`` < the current policy."""
        policy, _ = self.policies.get(name)
        return self._options(name, effective_settings(self._defaults(), manifest_settings(manifest), policy))

    def _start_region(self, registration: Registration) -> Region:
        package_dir = self.registry.package_dir(registration.package)
        region = self.provider.create_region(package_dir, digest_bytes(registration), domain=self.domain,
                                             **self._options(registration.name, self.effective(registration)))
        try:
            sealed = self.keystore.get(registration.address)
            region.call("unseal", address=registration.address, sealed_key=base64.b64encode(sealed.blob).decode())
            region.call("bind", registration=registration.ledger, evidence=registration.evidence)
        except BaseException:
            region.close()
            raise
        return region

    def progress(self, request_id: str) -> dict[str, Any]:
        """How far the call ``request_id`` has come, as its cryptlet reported it (``GET
        /api/requests/{request_id}/progress``); a queued request that has not reported yet is at 0."""
        return self.jobs.progress(request_id, known=self.requests.get)

    def warm_pools(self) -> dict[str, int]:
        """Keep pools current: replace a pool whose effective settings changed (a policy set on
        another host), then start the warm regions each ``min_instances`` asks for (after a host
        start, and on a timer since regions retire); return how many started per cryptlet."""
        started: dict[str, int] = {}
        for registration in self.registry.list():
            try:
                settings = self.effective(registration)
                with self._pools_lock:
                    stale = registration.name in self._pools and self._pool_settings.get(registration.name) != settings
                    pool = self._pools.pop(registration.name) if stale else None
                if pool is not None:
                    pool.close()
                if settings["min_instances"] > 0:
                    started[registration.name] = self._pool(registration).warm(settings["min_instances"])
            except FabricError as exc:  # one cryptlet's failure must not keep the others cold
                log.warning("could not warm %s: %s", registration.name, exc.detail)
        return started

    # -- key lifecycle ----------------------------------------------------------------------------
    def rotate_key(self, name: str, body: Any) -> dict[str, Any]:
        """New key for ``name`` (``body``: optional ``revoke`` with ``reason``/``invalid_after``/``note``)."""
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object", field="$")
        revoke = body.get("revoke")
        if revoke is not None and not isinstance(revoke, dict):
            raise InvalidInput("revoke must be an object with reason, invalid_after and note", field="revoke")
        return self._change_key(name, revoke)

    def revoke_key(self, name: str, body: Any) -> dict[str, Any]:
        """Revoke a key of ``name``; revoking the current key (no ``address``) rotates it too."""
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object", field="$")
        current = self.registry.get(name)
        if str(body.get("address") or current.address).lower() == current.address.lower():
            return self._change_key(name, body)
        entries = self.keys.revoke(name, body)
        return {"registration": current.to_dict(), "entries": [e.to_dict() for e in entries]}

    def retire(self, name: str, body: Any) -> dict[str, Any]:
        """Retire ``name``: its keys end, its regions stop, the name is free again."""
        note = body.get("note") if isinstance(body, dict) else None
        self._forget(name)
        try:
            entry = self.keys.retire(name, note)
        finally:
            self._forget(name)
        with self._pools_lock:
            pool = self._pools.pop(name, None)
            self._pool_keys.pop(name, None)
        if pool is not None:
            pool.close()
        self.policies.delete(name)  # the name is free: a new registration starts without a policy or state
        self.states.delete(name)
        return {"entry": entry.to_dict()}

    # -- policy -----------------------------------------------------------------------------------
    def manifest_settings(self, registration: Registration) -> dict[str, Any]:
        """What the registered manifest asks for: from its ``cryptlet.registered`` entry, else the package."""
        try:
            entry = self.ledger.get(registration.ledger["sequence"])
            if entry.kind == REGISTERED and isinstance(entry.payload.get("manifest"), dict):
                return manifest_settings(entry.payload["manifest"])
            return manifest_settings(load_manifest(self.registry.package_dir(registration.package)).document)
        except FabricError:
            return {}

    def effective(self, registration: Registration) -> dict[str, Any]:
        """Effective settings of a cryptlet: host defaults < manifest < policy."""
        policy, _ = self.policies.get(registration.name)
        return effective_settings(self._defaults(), self.manifest_settings(registration), policy)

    def _defaults(self) -> dict[str, Any]:
        return {"isolation": False, "egress": [], "min_instances": 0, "max_instances": self.settings.regions_per_cryptlet,
                "timeout_s": self.settings.region_timeout}

    def policy(self, name: str) -> dict[str, Any]:
        """Manifest settings, policy (with its ledger entry) and effective settings of ``name``."""
        registration = self.registry.get(name)
        policy, entry = self.policies.get(name)
        manifest = self.manifest_settings(registration)
        with self._pools_lock:
            pool = self._pools.get(name)
        return {"name": name, "provider": self.provider.name, "manifest": manifest, "policy": policy,
                "ledger": entry, "effective": effective_settings(self._defaults(), manifest, policy),
                "running_regions": pool.size if pool is not None else 0}

    def set_policy(self, name: str, body: Any) -> dict[str, Any]:
        """Replace the policy of ``name``: a ``policy.set`` ledger entry, then the catalog row; the
        region pool takes the new maximum at once and starts ``min_instances`` warm regions."""
        policy = validate_policy(body)
        registration = self.registry.get(name)
        settings = effective_settings(self._defaults(), self.manifest_settings(registration), policy)
        self._check_isolation(name, settings)
        payload: dict[str, Any] = {"scope": f"cryptlet:{name}", "policy": {k: v for k, v in policy.items() if k != "note"}}
        if policy.get("note"):
            payload["note"] = policy["note"]
        entry = self.ledger.append(POLICY_SET, payload)
        self.policies.put(name, policy, entry.reference())
        with self._pools_lock:  # running regions hold the old egress list and timeout: replace them
            old = self._pools.pop(name, None)
            self._pool_keys.pop(name, None)
        if old is not None:
            old.close()
        self._pool(registration).warm(settings["min_instances"])
        return {**self.policy(name), "entry": entry.to_dict()}

    def _check_isolation(self, name: str, settings: dict[str, Any]) -> None:
        """Refuse a cryptlet that must be isolated on a provider that cannot isolate it."""
        if settings["isolation"] and not self.provider.isolates:
            raise Conflict(f"{name} requires isolation and provider {self.provider.name!r} cannot isolate",
                           field="$.isolation")

    def _change_key(self, name: str, revoke: dict[str, Any] | None) -> dict[str, Any]:
        def drain_old_regions() -> None:  # no envelope from the old key may carry a later timestamp
            self._forget(name)
            with self._pools_lock:
                self._rotating.add(name)
                pool = self._pools.pop(name, None)
                self._pool_keys.pop(name, None)
            if pool is not None:
                pool.drain(self.settings.region_timeout + 5)

        try:
            registration, region, entries = self.keys.rotate(name, revoke=revoke, before_commit=drain_old_regions)
            pool = self._pool_for(registration)
            pool.add(region)
        finally:
            self._forget(name)
            with self._pools_lock:
                self._rotating.discard(name)
                self._pools_lock.notify_all()
        return {"registration": registration.to_dict(), "entries": [e.to_dict() for e in entries]}

    def _pool_for(self, registration: Registration) -> RegionPool:
        settings = self.effective(registration)
        with self._pools_lock:
            pool = RegionPool(lambda: self._start_region(registration), settings["max_instances"])
            self._pools[registration.name] = pool
            self._pool_keys[registration.name] = registration
            self._pool_settings[registration.name] = settings
            return pool

    def key_entries(self, address: str) -> dict[str, Any]:
        """A key's record and the ledger entries it was built from (clients replay and check them)."""
        record = self.keys.key(address)
        entries: list[LedgerEntry] = self.ledger_index.key_entries(record)
        return {"key": record.to_dict(), "entries": [e.to_dict() for e in entries]}

    # -- operations -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Storage reachability and versions."""
        storage: dict[str, Any]
        try:
            head = self.ledger.head()
            storage = {"reachable": True, "ledger_size": head.size}
        except Exception as exc:  # reported, not raised: health must answer
            storage = {"reachable": False, "error": type(exc).__name__}
        return {"status": "ok" if storage["reachable"] else "degraded", "storage": storage,
                "versions": versions(), "provider": self.provider.name}

    def attestation(self) -> dict[str, Any]:
        """What this host's evidence is and which platform key signs it (``GET /api/attestation``)."""
        software = self.provider.evidence_kind == "process"
        return {"provider": self.provider.name, "evidence_kind": self.provider.evidence_kind,
                "software": software, "debug": software, "platform_key": to_hex(self.provider.platform_public_key),
                "delivery_address": self.delivery_key.address}  # signs deliveries and expiry results

    def close(self) -> None:
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
        self.provider.close()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _response(result: dict[str, Any]) -> dict[str, Any]:
    """An invocation's answer: the envelope document, plus ``events`` when the call emitted any."""
    if result.get("events"):
        return {**result["envelope"], "events": result["events"]}
    return result["envelope"]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"fabric": shared.__version__, "python": platform.python_version()}
    for package in ("azure-functions", "azure-data-tables", "coincurve", "cryptography"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


_fabric: Fabric | None = None
_fabric_lock = threading.Lock()


def get_fabric() -> Fabric:
    """The process-wide fabric, created from the environment on first use and closed at exit."""
    global _fabric
    with _fabric_lock:
        if _fabric is None:
            _fabric = Fabric(Settings.from_env())
            atexit.register(_fabric.close)
        return _fabric
