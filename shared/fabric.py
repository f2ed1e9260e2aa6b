"""The host container service: one object that wires settings, storage, ledger, key store,
isolation provider, registry and region pools, and serves registrations and invocations.

``functions/`` calls :func:`get_fabric` and nothing deeper.
"""
from __future__ import annotations

import atexit
import base64
import os
import platform
import threading
from typing import Any

from azure.core.exceptions import AzureError

import shared
from shared.encoding import from_hex, to_hex
from shared.envelope import Domain
from shared.errors import FabricError, InvalidInput, RegionError
from shared.isolation.process import ProcessProvider
from shared.isolation.provider import Region
from shared.keystore import TableKeyStore
from shared.ledger import Ledger
from shared.regions import RegionPool, SequenceClock
from shared.registry import Registration, Registry, digest_bytes
from shared.requests import QueuedRequest, RequestStore
from shared.settings import Settings
from shared.storage import table_client

LEDGER_STREAM = "registry"


class Fabric:
    """The fabric's services for one host process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.domain = Domain(settings.chain_id, settings.verifying_contract)
        self.provider = ProcessProvider(settings.sealing_secret, timeout=settings.region_timeout)
        self.ledger = Ledger(table_client(settings.storage, settings.table("ledger")), LEDGER_STREAM)
        self.keystore = TableKeyStore(table_client(settings.storage, settings.table("keys")))
        self.registry = Registry(packages_dir=settings.packages_dir,
                                 catalog=table_client(settings.storage, settings.table("cryptlets")),
                                 ledger=self.ledger, keystore=self.keystore, provider=self.provider,
                                 domain=self.domain)
        self.requests = RequestStore(table_client(settings.storage, settings.table("requests")))
        self.sequences = SequenceClock()
        self._pools: dict[str, RegionPool] = {}
        self._pools_lock = threading.Lock()

    # -- registration -----------------------------------------------------------------------------
    def register(self, body: Any) -> Registration:
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object", field="$")
        if "package" not in body:
            raise InvalidInput("package is required", field="package")
        registration, region = self.registry.register(body["package"])
        self._pool(registration).add(region)
        return registration

    def get(self, name: str) -> Registration:
        return self.registry.get(name)

    def list(self) -> list[Registration]:
        return self.registry.list()

    # -- invocation -------------------------------------------------------------------------------
    def invoke(self, name: str, body: Any) -> dict[str, Any]:
        """Run ``method(**args)`` of cryptlet ``name`` in a region; return the signed envelope."""
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object", field="$")
        registration = self.registry.get(name)
        method = body.get("method")
        if not isinstance(method, str) or method not in registration.methods:
            raise InvalidInput(f"method must be one of {sorted(registration.methods)}", field="method")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise InvalidInput("args must be a JSON object of named arguments", field="args")
        request_id = body.get("request_id")
        request_id = from_hex(request_id, length=32, field="request_id") if request_id is not None else os.urandom(32)
        with self._pool(registration).lease() as region:
            try:
                result = region.call("invoke", method=method, args=args, request_id=to_hex(request_id),
                                     sequence=self.sequences.next())
            except RegionError as exc:
                if exc.extra.get("region_code") == "bad_arguments":
                    raise InvalidInput(f"{name}.{method} rejected its arguments: {exc.detail}", field="args") from None
                raise
        return result["envelope"]

    def accept_request(self, name: str, body: Any) -> QueuedRequest:
        """Validate an asynchronous invocation and record it as pending; the caller enqueues it."""
        if not isinstance(body, dict):
            raise InvalidInput("request body must be a JSON object", field="$")
        registration = self.registry.get(name)
        method, args = body.get("method"), body.get("args", {})
        if not isinstance(method, str) or method not in registration.methods:
            raise InvalidInput(f"method must be one of {sorted(registration.methods)}", field="method")
        if not isinstance(args, dict):
            raise InvalidInput("args must be a JSON object of named arguments", field="args")
        request_id = body.get("request_id")
        request_id = to_hex(from_hex(request_id, length=32, field="request_id") if request_id else os.urandom(32))
        request = QueuedRequest(request_id, name, method, args)
        self.requests.pending(request)
        return request

    def run_request(self, message: bytes | str) -> None:
        """Execute a queued request and record its outcome.

        Errors a retry cannot fix (4xx) are recorded as ``failed``; others propagate so the
        queue retries the message and finally moves it to the poison queue.
        """
        request = QueuedRequest.from_message(message)
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
            pool = self._pools.get(registration.name)
            if pool is None:
                pool = RegionPool(lambda: self._start_region(registration), self.settings.regions_per_cryptlet)
                self._pools[registration.name] = pool
            return pool

    def _start_region(self, registration: Registration) -> Region:
        package_dir = self.registry.package_dir(registration.package)
        region = self.provider.create_region(package_dir, digest_bytes(registration), domain=self.domain)
        try:
            sealed = self.keystore.get(registration.address)
            region.call("unseal", address=registration.address, sealed_key=base64.b64encode(sealed.blob).decode())
            region.call("bind", registration=registration.ledger)
        except BaseException:
            region.close()
            raise
        return region

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

    def close(self) -> None:
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


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
