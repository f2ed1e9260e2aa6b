"""Key operations on registered cryptlets: rotate, revoke, retire, and the key records clients check.

The ledger work is :class:`shared.keys.lifecycle.KeyLifecycle`; this service keeps the host around it
consistent: cached registrations dropped, old regions drained before the new key's entry is
committed, pools replaced, policy and state of a retired name removed.
"""

from __future__ import annotations

from typing import Any

from shared.host.contract_state import StateStore
from shared.host.models import Revocation, RevokeRequest
from shared.host.policy import PolicyStore
from shared.host.pools import Pools
from shared.host.registry import RegistrationCache, Registry
from shared.keys.history import KeyRecord
from shared.keys.lifecycle import KeyLifecycle
from shared.ledger.chain import LedgerEntry
from shared.ledger.index import LedgerIndex


class KeyOperations:
    """``/api/cryptlets/{name}/keys/...``, retirement and ``/api/keys/{address}``."""

    def __init__(
        self,
        lifecycle: KeyLifecycle,
        registry: Registry,
        registrations: RegistrationCache,
        pools: Pools,
        index: LedgerIndex,
        policies: PolicyStore,
        states: StateStore,
        *,
        drain_timeout: float,
    ) -> None:
        self.lifecycle = lifecycle
        self.registry = registry
        self.registrations = registrations
        self.pools = pools
        self.index = index
        self.policies = policies
        self.states = states
        self.drain_timeout = drain_timeout

    def rotate(self, name: str, revoke: Revocation | None = None, revoked: str | None = None) -> dict[str, Any]:
        """New key for ``name``, generated inside a region; with ``revoke`` the key ``revoked`` (default:
        the current one) is revoked too."""

        def drain_old_regions() -> None:  # no envelope from the old key may carry a later timestamp
            self.registrations.forget(name)
            self.pools.begin_rotation(name, self.drain_timeout)

        try:
            registration, region, entries = self.lifecycle.rotate(
                name, revoke=revoke, revoked=revoked, before_commit=drain_old_regions
            )
            self.pools.replace(registration).add(region)
        finally:
            self.registrations.forget(name)
            self.pools.end_rotation(name)
        return {"registration": registration.to_dict(), "entries": [e.to_dict() for e in entries]}

    def revoke(self, name: str, request: RevokeRequest) -> dict[str, Any]:
        """Revoke a key of ``name``; revoking the current key (no ``address``) rotates it too."""
        current = self.registry.get(name)
        address = request.address or current.address
        if str(address).lower() == current.address.lower():
            return self.rotate(name, request.revocation, address)
        entries = self.lifecycle.revoke(name, request.address, request.revocation)
        return {"registration": current.to_dict(), "entries": [e.to_dict() for e in entries]}

    def retire(self, name: str, note: str | None = None) -> dict[str, Any]:
        """Retire ``name``: its keys end, its regions stop, the name is free again."""
        self.registrations.forget(name)
        try:
            entry = self.lifecycle.retire(name, note)
        finally:
            self.registrations.forget(name)
        self.pools.drop(name)
        self.policies.delete(name)  # the name is free: a new registration starts without a policy or state
        self.states.delete(name)
        return {"entry": entry.to_dict()}

    def keys_of(self, name: str) -> list[KeyRecord]:
        return self.lifecycle.keys_of(name)

    def key_at(self, name: str, sequence: int) -> KeyRecord:
        return self.lifecycle.key_at(name, sequence)

    def key_entries(self, address: str) -> dict[str, Any]:
        """A key's record and the ledger entries it was built from (clients replay and check them)."""
        record = self.lifecycle.key(address)
        entries: list[LedgerEntry] = self.index.key_entries(record)
        return {"key": record.to_dict(), "entries": [e.to_dict() for e in entries]}
