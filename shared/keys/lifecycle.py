"""Key rotation, revocation and retirement of registered cryptlets, as ledger events.

* **rotate**: a fresh region of the registered package generates the new key *inside* the region
  (only its sealed blob leaves, into the key store), attests it, and ``cryptlet.key_rotated``
  records it with the key it supersedes. Envelopes from the old key stay valid if signed before
  the rotation entry's time.
* **revoke**: ``cryptlet.key_revoked`` distrusts a key's signatures from ``invalid_after`` on
  (default: now). Revoking the *current* key rotates in the same transaction, so the cryptlet
  always has a usable key.
* **retire**: ``cryptlet.retired`` ends every key of the cryptlet and frees its name.

Key events are compare-and-append (:meth:`shared.ledger.chain.Ledger.append_all` with
``expect_size``): each is decided on the key history at a known ledger size and committed only
if the ledger is still at that size. Several hosts append to one ledger, so a refused append is
normal: the host re-syncs its index (the entries other hosts appended), decides again on the new
history and retries, up to :data:`MAX_RACES` times with a small jittered backoff. A decision that
no longer holds ends in a non-retryable error instead (the key is already revoked, the cryptlet
was retired); a rotation that finds another host rotated first supersedes that host's key. The
catalog row follows the ledger and is only ever moved forward.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.clock import utc_now
from shared.errors import Conflict, InvalidInput, NotFound
from shared.host.models import Revocation
from shared.host.registry import CATALOG_PARTITION, Registration, Registry, attest_key, digest_bytes, evidence_reference
from shared.isolation.provider import Region
from shared.keys.history import KeyHistory, KeyRecord
from shared.keys.store import SealedKey
from shared.ledger import kinds
from shared.ledger.chain import LedgerEntry
from shared.ledger.index import LedgerIndex
from shared.packages.manifest import load_manifest
from shared.storage import storage_errors

MAX_RACES = 12
"""Compare-and-append attempts of one key operation before it gives up with 409."""
BACKOFF_S = 0.005
"""First backoff after a lost race (doubled per race, at most 0.2 s, jittered)."""

Items = list[tuple[str, dict[str, Any]]]


class KeyLifecycle:
    """Rotates, revokes and retires cryptlet keys through the registry's provider, key store and ledger."""

    def __init__(self, registry: Registry, index: LedgerIndex) -> None:
        self.registry = registry
        self.index = index

    # -- questions ------------------------------------------------------------------------------
    def key(self, address: str) -> KeyRecord:
        return self.index.keys().get(address)

    def keys_of(self, name: str) -> list[KeyRecord]:
        return self.index.keys().keys_of(name)

    def key_at(self, name: str, sequence: int) -> KeyRecord:
        """Which key was valid for ``name`` at ledger point ``sequence``."""
        return self.index.keys().key_at(name, sequence)

    # -- changes --------------------------------------------------------------------------------
    def rotate(
        self,
        name: str,
        *,
        revoke: Revocation | None = None,
        revoked: str | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> tuple[Registration, Region, list[LedgerEntry]]:
        """Give ``name`` a new key made inside a region; with ``revoke`` the key ``revoked`` (default: the
        current one) is revoked in the same transaction. ``before_commit`` runs just before the ledger
        append (the host drains regions holding the old key there).

        The new key supersedes whatever key is current when the entry is appended: if another host
        rotated in the meantime, this rotation follows that one."""
        current = self.registry.get(name)
        target = revoked or current.address
        provider = self.registry.provider
        package_dir = self.registry.package_dir(current.package)
        region = provider.create_region(
            package_dir,
            digest_bytes(current),
            domain=self.registry.domain,
            **self.registry.region_options(name, load_manifest(package_dir).document),
        )
        stored: str | None = None  # the address of the sealed key stored here
        try:
            key = region.call("generate_key")
            evidence = attest_key(region, key["public_key"])
            self.registry.keystore.put(
                SealedKey(
                    address=key["address"],
                    digest=current.digest,
                    provider=provider.name,
                    blob=base64.b64decode(key["sealed_key"]),
                )
            )
            stored = key["address"]
            rotation = {
                "name": name,
                "address": key["address"],
                "public_key": key["public_key"],
                "digest": current.digest,
                "digest_alg": current.digest_alg,
                "provider": provider.name,
                "key": {"store": type(self.registry.keystore).__name__, "version": 1},
                "evidence": evidence,
            }

            def decide(history: KeyHistory) -> Items:
                items: Items = []
                if revoke is not None:
                    record = _revocable(history, name, target, current_allowed=True)
                    items.append((kinds.KEY_REVOKED, self._revocation(name, record.address, revoke)))
                previous = _current(history, name)
                items.append((kinds.KEY_ROTATED, {**rotation, "previous_address": previous.address}))
                return items

            if before_commit is not None:
                before_commit()
            entries = self._append(name, decide)
            registration = replace(
                current,
                address=key["address"],
                public_key=key["public_key"],
                ledger=entries[-1].reference(),
                evidence=evidence_reference(evidence),
            )
            region.call("bind", registration=registration.ledger, evidence=registration.evidence)
            self._advance_catalog(registration)
        except BaseException:
            region.close()
            if stored is not None:  # a failed rotation leaves no sealed key the ledger does not hold
                self.registry.abandon_key(name, stored)
            raise
        return registration, region, entries

    def revoke(self, name: str, address: str | None, revocation: Revocation) -> list[LedgerEntry]:
        """Revoke a past key ``address`` of ``name``; the current key goes through :meth:`rotate`."""

        def decide(history: KeyHistory) -> Items:
            record = _revocable(history, name, address, current_allowed=False)
            return [(kinds.KEY_REVOKED, self._revocation(name, record.address, revocation))]

        return self._append(name, decide)

    def retire(self, name: str, note: str | None = None) -> LedgerEntry:
        """Retire ``name``: every key of it ends now and the name can be registered again."""
        self.registry.get(name)  # NotFound unless registered

        def decide(history: KeyHistory) -> Items:
            payload: dict[str, Any] = {"name": name, "address": _current(history, name).address}
            if note:
                payload["note"] = note
            return [(kinds.RETIRED, payload)]

        entry = self._append(name, decide)[0]
        with storage_errors("catalog"):
            self.registry.catalog.delete_entity(CATALOG_PARTITION, name)
        return entry

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _revocation(name: str, address: str, revocation: Revocation) -> dict[str, Any]:
        if revocation.reason not in kinds.REVOCATION_REASONS:
            raise InvalidInput(f"reason must be one of {', '.join(kinds.REVOCATION_REASONS)}", field="reason")
        payload = {
            "name": name,
            "address": address,
            "reason": revocation.reason,
            "invalid_after": revocation.invalid_after or utc_now(),
        }
        if revocation.note:
            payload["note"] = revocation.note
        kinds.validate_entry(kinds.KEY_REVOKED, payload)
        return payload

    def _append(self, name: str, decide: Callable[[KeyHistory], Items]) -> list[LedgerEntry]:
        """Append the key events ``decide`` makes of the current key history (compare-and-append).

        A lost race (another host or thread appended first) re-syncs the index and decides again,
        after a jittered backoff; ``decide`` raises when the operation no longer makes sense.
        """
        for race in range(MAX_RACES):
            items, size = self.index.decide(decide)
            try:
                return self.index.ledger.append_all(items, expect_size=size)
            except Conflict:  # the ledger moved on (any entry): decide again on what it holds now
                time.sleep(random.uniform(0, min(0.2, BACKOFF_S * 2**race)))
        raise Conflict(f"the ledger kept moving while changing the key of {name}; retry", field="name")

    def _advance_catalog(self, registration: Registration) -> None:
        """Write the catalog row unless it already names a later ledger entry."""
        catalog = self.registry.catalog
        row = {
            "PartitionKey": CATALOG_PARTITION,
            "RowKey": registration.name,
            "status": "active",
            "document": json.dumps(registration.to_dict(), separators=(",", ":")),
        }
        for _ in range(MAX_RACES):
            with storage_errors("catalog"):
                try:
                    stored = catalog.get_entity(CATALOG_PARTITION, registration.name)
                    if stored.get("status") != "active":  # retired, and the name reserved again since
                        raise ResourceNotFoundError(registration.name)
                    known = json.loads(stored.get("document") or "{}").get("ledger", {}).get("sequence", 0)
                    if known >= registration.ledger["sequence"]:
                        return
                    catalog.update_entity(
                        row,
                        mode=UpdateMode.REPLACE,
                        etag=stored.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return
                except ResourceModifiedError:
                    continue
                except ResourceNotFoundError:
                    raise Conflict(f"{registration.name} was retired while its key was rotated", field="name") from None
        raise Conflict(f"the catalog row of {registration.name} kept changing; retry", field="name")


def _current(history: KeyHistory, name: str) -> KeyRecord:
    """The key ``name`` signs with now; :class:`NotFound` if it has none (retired, on any host)."""
    record = history.current(name)
    if record is None:
        raise NotFound(f"no cryptlet named {name!r} is registered", field="name")
    return record


def _revocable(history: KeyHistory, name: str, address: str | None, *, current_allowed: bool) -> KeyRecord:
    """The key ``address`` of ``name`` if it may be revoked now (:class:`Conflict` if already revoked)."""
    records = {r.address.lower(): r for r in history.keys_of(name)}
    if not isinstance(address, str) or address.lower() not in records:
        raise InvalidInput(f"address must be one of the keys {name} has had", field="address")
    record = records[address.lower()]
    if record.revoked is not None:
        raise Conflict(f"key {record.address} is already revoked", field="address")
    if record.ended is None and not current_allowed:
        raise Conflict(
            f"key {record.address} is the current key of {name}: revoke it without an address to rotate it too",
            field="address",
        )
    return record
