"""The host's region pools, one per cryptlet, kept in one structure.

A pool holds warm regions of one registration (its key unsealed and bound) built with the effective
settings of that moment. A pool is replaced when the key changed (on this host or another one, seen
through a later ledger sequence) or when the effective settings changed (a policy set elsewhere).
While this host rotates a key, callers for that cryptlet wait instead of using the old key.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared.envelope import Domain
from shared.errors import FabricError
from shared.host.policy import Policies
from shared.host.registry import Registration, digest_bytes
from shared.isolation.callout import HostCallOuts
from shared.isolation.pool import RegionPool
from shared.isolation.provider import IsolationProvider, Region
from shared.keys.store import KeyStore
from shared.packages.folders import PackageFolders

log = logging.getLogger("fabric")
#: ``report(name, request_id, fraction, message)``: where regions' progress call-outs go.
ProgressSink = Callable[[str, str, float, str], None]


class RegionOptions:
    """``create_region`` keyword arguments from effective settings: call-outs (egress, progress), timeout."""

    def __init__(self, policies: Policies, progress: ProgressSink | None = None) -> None:
        self.policies = policies
        self.progress = progress

    def for_settings(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            "call_out": HostCallOuts(name, egress=settings["egress"], progress=self.progress),
            "timeout": settings["timeout_s"],
        }

    def __call__(self, name: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """For registration and key rotation: defaults < ``manifest`` < the current policy."""
        return self.for_settings(name, self.policies.effective_for_manifest(name, manifest))


class RegionStarter:
    """Starts a region of a registration: created, its sealed key unsealed inside, bound to its ledger entry."""

    def __init__(
        self,
        provider: IsolationProvider,
        keystore: KeyStore,
        folders: PackageFolders,
        domain: Domain,
        options: RegionOptions,
    ) -> None:
        self.provider = provider
        self.keystore = keystore
        self.folders = folders
        self.domain = domain
        self.options = options

    def start(self, registration: Registration, settings: dict[str, Any]) -> Region:
        package_dir = self.folders.resolve(registration.package)
        region = self.provider.create_region(
            package_dir,
            digest_bytes(registration),
            domain=self.domain,
            **self.options.for_settings(registration.name, settings),
        )
        try:
            sealed = self.keystore.get(registration.address)
            region.call("unseal", address=registration.address, sealed_key=base64.b64encode(sealed.blob).decode())
            region.call("bind", registration=registration.ledger, evidence=registration.evidence)
        except BaseException:
            region.close()
            raise
        return region


@dataclass
class _Pooled:
    pool: RegionPool
    registration: Registration  # the registration (key) the pool's regions hold
    settings: dict[str, Any]  # the effective settings the pool was built with


class Pools:
    """Every cryptlet's region pool on this host."""

    def __init__(self, starter: RegionStarter, policies: Policies, *, wait_timeout: float) -> None:
        self.starter = starter
        self.policies = policies
        self.wait_timeout = wait_timeout
        self._pools: dict[str, _Pooled] = {}
        self._rotating: set[str] = set()  # names whose key this process is changing right now
        self._lock = threading.Condition()

    def get(self, registration: Registration) -> RegionPool:
        """The pool for ``registration``, made now if there is none or its key is older than this one."""
        with self._lock:
            self._lock.wait_for(lambda: registration.name not in self._rotating, self.wait_timeout)
            pooled = self._pools.get(registration.name)
            if pooled is not None and pooled.registration.ledger["sequence"] < registration.ledger["sequence"]:
                pooled.pool.close()  # the key changed on another host: stop signing with the old one
                pooled = None
            if pooled is None:
                settings = self.policies.effective(registration)
                self.policies.check_isolation(registration.name, settings)
                pooled = self._put(registration, settings)
            return pooled.pool

    def replace(self, registration: Registration) -> RegionPool:
        """A new, empty pool for ``registration`` (after a key change on this host)."""
        settings = self.policies.effective(registration)
        with self._lock:
            return self._put(registration, settings).pool

    def _put(self, registration: Registration, settings: dict[str, Any]) -> _Pooled:
        pooled = _Pooled(
            RegionPool(lambda: self.starter.start(registration, settings), settings["max_instances"]),
            registration,
            settings,
        )
        self._pools[registration.name] = pooled
        return pooled

    def drop(self, name: str) -> None:
        """Stop the regions of ``name`` (retired, or its settings changed)."""
        with self._lock:
            pooled = self._pools.pop(name, None)
        if pooled is not None:
            pooled.pool.close()

    def begin_rotation(self, name: str, drain_timeout: float) -> None:
        """Hold new callers of ``name`` and drain its regions: no envelope from the old key may carry a
        later timestamp than the rotation entry. :meth:`end_rotation` releases the callers."""
        with self._lock:
            self._rotating.add(name)
            pooled = self._pools.pop(name, None)
        if pooled is not None:
            pooled.pool.drain(drain_timeout)

    def end_rotation(self, name: str) -> None:
        with self._lock:
            self._rotating.discard(name)
            self._lock.notify_all()

    def running(self, name: str) -> int:
        """How many regions ``name`` has running on this host."""
        with self._lock:
            pooled = self._pools.get(name)
        return pooled.pool.size if pooled is not None else 0

    def warm(self, registrations: Iterable[Registration]) -> dict[str, int]:
        """Keep pools current: replace a pool whose effective settings changed (a policy set on
        another host), then start the warm regions each ``min_instances`` asks for; return how many
        started per cryptlet."""
        started: dict[str, int] = {}
        for registration in registrations:
            try:
                settings = self.policies.effective(registration)
                with self._lock:
                    pooled = self._pools.get(registration.name)
                    stale = pooled is not None and pooled.settings != settings
                    if stale:
                        self._pools.pop(registration.name)
                if stale and pooled is not None:
                    pooled.pool.close()
                if settings["min_instances"] > 0:
                    started[registration.name] = self.get(registration).warm(settings["min_instances"])
            except FabricError as exc:  # one cryptlet's failure must not keep the others cold
                log.warning("could not warm %s: %s", registration.name, exc.detail)
        return started

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pooled in pools:
            pooled.pool.close()
