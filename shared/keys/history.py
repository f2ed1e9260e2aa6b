"""Which signing key was valid for a cryptlet, and when: a replay of the ledger's key events.

A key is *established* by ``cryptlet.registered`` or ``cryptlet.key_rotated`` and *ends* at the
first of: the ``cryptlet.key_rotated`` that supersedes it, a ``cryptlet.key_revoked`` naming it,
or the ``cryptlet.retired`` of its cryptlet. Two questions are answered from that:

* :meth:`KeyHistory.key_at` — which key was valid for a cryptlet at ledger point ``N``
  (established at or before ``N``, not ended at or before ``N``);
* :meth:`KeyRecord.check_signed_at` — may an envelope with a given timestamp from this key be
  trusted? No if the key was revoked and the timestamp is at or after the revocation's
  ``invalid_after`` (``key_revoked``), or at or after the retirement (``cryptlet_retired``) or the
  rotation that superseded it (``key_superseded``).

Envelope timestamps are asserted by the signer: a stolen key can backdate. A revocation for a
compromise therefore sets ``invalid_after`` to the earliest time the key may have leaked (the
key's establishment, to distrust everything it ever signed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import NotFound, VerificationError
from shared.ledger import kinds
from shared.ledger.chain import LedgerEntry

KEY_EVENTS: frozenset[str] = kinds.KEY_ESTABLISHING | {kinds.KEY_REVOKED, kinds.RETIRED}
"""The entry kinds a key history is built from."""


def time_ms(iso: str) -> int:
    """Milliseconds since the epoch of a ledger time (``YYYY-MM-DDTHH:MM:SS.mmmZ``)."""
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass(frozen=True)
class EntryRef:
    """A ledger entry by sequence, time and hash."""

    sequence: int
    time: str
    entry_hash: str

    @classmethod
    def of(cls, entry: LedgerEntry) -> EntryRef:
        return cls(entry.sequence, entry.time, entry.entry_hash)

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "time": self.time, "entry_hash": "0x" + self.entry_hash}


@dataclass(frozen=True)
class KeyRecord:
    """One signing key of one cryptlet and its life in the ledger."""

    name: str
    address: str
    public_key: str
    digest: str
    established: EntryRef
    superseded: EntryRef | None = None
    revoked: EntryRef | None = None
    revocation_reason: str | None = None
    invalid_after: str | None = None
    retired: EntryRef | None = None

    @property
    def ended(self) -> EntryRef | None:
        """The first entry that ended this key's validity, if any."""
        ends = [e for e in (self.superseded, self.revoked, self.retired) if e is not None]
        return min(ends, key=lambda e: e.sequence) if ends else None

    @property
    def status(self) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.retired is not None:
            return "retired"
        return "superseded" if self.superseded is not None else "active"

    def valid_at(self, sequence: int) -> bool:
        """Whether this was the cryptlet's valid key at ledger point ``sequence``."""
        ended = self.ended
        return self.established.sequence <= sequence and (ended is None or sequence < ended.sequence)

    def check_signed_at(self, timestamp_ms: int) -> None:
        """Raise :class:`VerificationError` if a signature made at ``timestamp_ms`` is not trusted."""
        if self.revoked is not None and timestamp_ms >= time_ms(self.invalid_after or self.revoked.time):
            raise VerificationError(
                "key_revoked",
                f"key {self.address} of {self.name} was revoked "
                f"({self.revocation_reason}) at ledger #{self.revoked.sequence}; signatures from "
                f"{self.invalid_after} on are invalid",
                revoked_at=self.revoked.sequence,
            )
        if self.retired is not None and timestamp_ms >= time_ms(self.retired.time):
            raise VerificationError(
                "cryptlet_retired",
                f"{self.name} was retired at ledger #{self.retired.sequence} "
                f"({self.retired.time}) before this envelope was signed",
            )
        if self.superseded is not None and timestamp_ms >= time_ms(self.superseded.time):
            raise VerificationError(
                "key_superseded",
                f"key {self.address} of {self.name} was rotated out at ledger "
                f"#{self.superseded.sequence} ({self.superseded.time}) before this envelope "
                f"was signed",
            )

    def to_dict(self) -> dict[str, Any]:
        def ref(e: EntryRef | None) -> dict[str, Any] | None:
            return e.to_dict() if e is not None else None

        return {
            "name": self.name,
            "address": self.address,
            "public_key": self.public_key,
            "digest": self.digest,
            "status": self.status,
            "established": ref(self.established),
            "superseded": ref(self.superseded),
            "revoked": ref(self.revoked),
            "revocation_reason": self.revocation_reason,
            "invalid_after": self.invalid_after,
            "retired": ref(self.retired),
        }

    def sequences(self) -> list[int]:
        """The ledger entries this record was built from, in order."""
        return sorted({e.sequence for e in (self.established, self.superseded, self.revoked, self.retired) if e})


class KeyHistory:
    """Key records replayed from ledger entries, fed in sequence order with :meth:`apply`."""

    def __init__(self) -> None:
        self._by_address: dict[str, KeyRecord] = {}
        self._by_name: dict[str, list[str]] = {}

    def apply(self, entry: LedgerEntry) -> None:
        """Take one entry into account (kinds other than key events are ignored)."""
        p, ref = entry.payload, EntryRef.of(entry)
        if entry.kind in kinds.KEY_ESTABLISHING:
            if entry.kind == kinds.KEY_ROTATED:
                self._update(p.get("previous_address", ""), lambda r: r if r.ended else replace(r, superseded=ref))
            record = KeyRecord(
                name=str(p.get("name")),
                address=str(p.get("address")),
                public_key=str(p.get("public_key")),
                digest=str(p.get("digest")),
                established=ref,
            )
            self._by_address[record.address.lower()] = record
            self._by_name.setdefault(record.name, []).append(record.address.lower())
        elif entry.kind == kinds.KEY_REVOKED:
            self._update(
                p.get("address", ""),
                lambda r: (
                    r
                    if r.revoked
                    else replace(
                        r,
                        revoked=ref,
                        revocation_reason=p.get("reason"),
                        invalid_after=p.get("invalid_after") or entry.time,
                    )
                ),
            )
        elif entry.kind == kinds.RETIRED:
            for address in self._by_name.get(str(p.get("name")), []):
                self._update(address, lambda r: r if r.ended else replace(r, retired=ref))

    def _update(self, address: str, change: Any) -> None:
        record = self._by_address.get(str(address).lower())
        if record is not None:
            self._by_address[record.address.lower()] = change(record)

    def get(self, address: str) -> KeyRecord:
        """The record of a key by address; :class:`NotFound` if the ledger never established it."""
        record = self._by_address.get(str(address).lower())
        if record is None:
            raise NotFound(f"the ledger has no key {address}", field="address")
        return record

    def keys_of(self, name: str) -> list[KeyRecord]:
        """Every key ``name`` ever had, oldest first."""
        return [self._by_address[a] for a in self._by_name.get(name, [])]

    def key_at(self, name: str, sequence: int) -> KeyRecord:
        """The key that was valid for ``name`` at ledger point ``sequence``; :class:`NotFound` if none."""
        for record in self.keys_of(name):
            if record.valid_at(sequence):
                return record
        raise NotFound(f"{name} had no valid key at ledger entry {sequence}", field="at")

    def current(self, name: str) -> KeyRecord | None:
        """The key ``name`` signs with now, if it has one."""
        records = [r for r in self.keys_of(name) if r.ended is None]
        return records[-1] if records else None


def record_from_entries(address: str, documents: list[Any]) -> KeyRecord:
    """Replay the entries a host returned for one key (``GET /api/ledger/keys/{address}``), each
    checked against its own hash. A host can still *omit* a revocation; only a full replay from
    storage (:func:`replay`) rules that out."""
    history = KeyHistory()
    entries = sorted((LedgerEntry.from_dict(d) for d in documents), key=lambda e: e.sequence)
    for entry in entries:
        if entry.computed_hash() != entry.entry_hash:
            raise VerificationError("registration_tampered", f"ledger entry {entry.sequence} does not match its hash")
        history.apply(entry)
    return history.get(address)


def replay(ledger: Any) -> KeyHistory:
    """The key history of a whole stream read from storage, its chain verified on the way."""
    from shared.ledger.chain import walk_chain

    rows = list(ledger.rows())
    walk_chain(rows, ledger.stream)
    history = KeyHistory()
    for sequence, row in enumerate(rows, start=1):
        if row["kind"] in KEY_EVENTS:
            history.apply(LedgerEntry.from_row(ledger.stream, row, sequence))
    return history
