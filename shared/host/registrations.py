"""Registering cryptlets (a package folder of the host, or an uploaded zip) and describing them."""

from __future__ import annotations

from typing import Any

from shared.host.policy import Policies
from shared.host.pools import Pools
from shared.host.registry import Registration, RegistrationCache, Registry
from shared.isolation.provider import Region
from shared.ledger.index import LedgerIndex
from shared.packages.folders import PackageFolders


class Registrations:
    """``POST/GET /api/cryptlets``: register, list, describe."""

    def __init__(
        self,
        registry: Registry,
        folders: PackageFolders,
        registrations: RegistrationCache,
        pools: Pools,
        index: LedgerIndex,
        policies: Policies,
    ) -> None:
        self.registry = registry
        self.folders = folders
        self.registrations = registrations
        self.pools = pools
        self.index = index
        self.policies = policies

    def register(self, package: str) -> Registration:
        """Register the package folder ``package``; its key-holding region joins the cryptlet's pool."""
        return self._serve(*self.registry.register(package))

    def register_upload(self, data: bytes) -> Registration:
        """Register an uploaded package zip: check it, extract it under ``.uploads/<digest>``, register it.
        A failed registration leaves no folder, zip or sealed key behind (:mod:`shared.host.registry`)."""
        return self._serve(*self.registry.register_upload(data))

    def _serve(self, registration: Registration, region: Region) -> Registration:
        self.registrations.forget(registration.name)
        self.pools.get(registration).add(region)
        return registration

    def get(self, name: str) -> Registration:
        return self.registry.get(name)

    def list(self) -> list[Registration]:
        return self.registry.list()

    def describe(self, name: str) -> dict[str, Any]:
        """One cryptlet in full: its registration, the ledger receipt of its registration entry and its
        effective settings."""
        registration = self.registry.get(name)
        return {
            **registration.to_dict(),
            "receipt": self.index.receipt(registration.ledger["sequence"]).to_dict(),
            "effective": self.policies.effective(registration),
        }
