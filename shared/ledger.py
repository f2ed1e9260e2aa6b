"""The registration ledger: an append-only, hash-chained log in Azure Table storage.

One partition per stream; RowKey is the zero-padded sequence (1, 2, ...). Each entry stores its
kind, canonical JSON payload, time, ``prev_hash`` and ``entry_hash`` where::

    entry_hash = SHA-256(RFC 8785 JSON of {kind, payload, prev_hash, sequence, stream, time})

and the first entry's ``prev_hash`` is 32 zero bytes. A ``head`` row in the same partition
holds the newest (sequence, entry_hash). An append is one entity-group transaction that
*inserts* the next row and *replaces* the head only if its ETag is unchanged, so two writers
can never both win: the loser re-reads the head and retries. There are no forks and no gaps.

:meth:`Ledger.verify` walks the chain and names the first bad entry. Format and vectors:
``docs/ledger.md``.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.encoding import canonical_json, sha256
from shared.errors import LedgerIntegrityError, NotFound, StorageError

GENESIS_HASH = "00" * 32
HEAD_ROW = "head"
SEQUENCE_DIGITS = 12
MAX_APPEND_ATTEMPTS = 50


def row_key(sequence: int) -> str:
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LedgerEntry:
    """One entry of a ledger stream."""

    stream: str
    sequence: int
    kind: str
    time: str
    payload: dict[str, Any]
    prev_hash: str
    entry_hash: str

    @staticmethod
    def hash_of(stream: str, sequence: int, kind: str, time: str, payload: Any, prev_hash: str) -> str:
        body = {"kind": kind, "payload": payload, "prev_hash": prev_hash, "sequence": sequence,
                "stream": stream, "time": time}
        return sha256(canonical_json(body)).hex()

    def computed_hash(self) -> str:
        return self.hash_of(self.stream, self.sequence, self.kind, self.time, self.payload, self.prev_hash)

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "sequence": self.sequence, "kind": self.kind, "time": self.time,
                "payload": self.payload, "prev_hash": self.prev_hash, "entry_hash": self.entry_hash}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LedgerEntry":
        return cls(stream=data["stream"], sequence=int(data["sequence"]), kind=data["kind"], time=data["time"],
                   payload=data["payload"], prev_hash=data["prev_hash"], entry_hash=data["entry_hash"])

    def reference(self) -> dict[str, Any]:
        """What envelopes and responses cite: stream, sequence and entry hash."""
        return {"stream": self.stream, "sequence": self.sequence, "entry_hash": "0x" + self.entry_hash}


@dataclass(frozen=True)
class LedgerHead:
    """The newest entry of a stream: its size (last sequence) and hash."""

    size: int
    entry_hash: str


class Ledger:
    """One ledger stream in a table."""

    def __init__(self, table: TableClient, stream: str = "registry") -> None:
        self.table = table
        self.stream = stream
        self._lock = threading.Lock()
        self._cached_head: tuple[LedgerHead, str | None] | None = None

    # -- writing ------------------------------------------------------------------------------
    def append(self, kind: str, payload: dict[str, Any]) -> LedgerEntry:
        """Append one entry; returns it once it is durable."""
        canonical_json(payload)  # refuse what cannot be hashed before touching storage
        with self._lock:
            for _ in range(MAX_APPEND_ATTEMPTS):
                head, etag = self._cached_head or self._read_head()
                sequence = head.size + 1
                time = utc_now()
                entry = LedgerEntry(self.stream, sequence, kind, time, payload, head.entry_hash,
                                    LedgerEntry.hash_of(self.stream, sequence, kind, time, payload, head.entry_hash))
                new_head = {"PartitionKey": self.stream, "RowKey": HEAD_ROW, "size": sequence,
                            "entry_hash": entry.entry_hash}
                head_op = (("create", new_head) if etag is None else
                           ("update", new_head, {"mode": UpdateMode.REPLACE, "etag": etag,
                                                 "match_condition": MatchConditions.IfNotModified}))
                try:
                    results = self.table.submit_transaction([("create", self._to_row(entry)), head_op])
                except TableTransactionError:
                    self._cached_head = None  # another writer won: re-read the head and retry
                    continue
                except AzureError as exc:
                    self._cached_head = None
                    raise StorageError(f"ledger storage unreachable: {type(exc).__name__}") from None
                self._cached_head = (LedgerHead(sequence, entry.entry_hash), results[1].get("etag"))
                return entry
        raise StorageError(f"ledger append lost {MAX_APPEND_ATTEMPTS} races in a row; try again")

    def _to_row(self, entry: LedgerEntry) -> dict[str, Any]:
        return {"PartitionKey": self.stream, "RowKey": row_key(entry.sequence), "sequence": entry.sequence,
                "kind": entry.kind, "time": entry.time, "payload": canonical_json(entry.payload).decode("utf-8"),
                "prev_hash": entry.prev_hash, "entry_hash": entry.entry_hash}

    def _read_head(self) -> tuple[LedgerHead, str | None]:
        try:
            row = self.table.get_entity(self.stream, HEAD_ROW)
        except ResourceNotFoundError:
            return LedgerHead(0, GENESIS_HASH), None
        except AzureError as exc:
            raise StorageError(f"ledger storage unreachable: {type(exc).__name__}") from None
        return LedgerHead(int(row["size"]), row["entry_hash"]), row.metadata["etag"]

    # -- reading ------------------------------------------------------------------------------
    def head(self) -> LedgerHead:
        return self._read_head()[0]

    def get(self, sequence: int) -> LedgerEntry:
        """One entry by sequence; :class:`NotFound` if absent. The entry is not verified."""
        try:
            row = self.table.get_entity(self.stream, row_key(sequence))
        except ResourceNotFoundError:
            raise NotFound(f"ledger {self.stream} has no entry {sequence}") from None
        except AzureError as exc:
            raise StorageError(f"ledger storage unreachable: {type(exc).__name__}") from None
        return self._from_row(row, sequence)

    def entries(self, start: int = 1, end: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Raw rows ``(row_key, row)`` from ``start`` to ``end`` (inclusive), in order, without the head."""
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": self.stream, "lo": row_key(start), "hi": row_key(end + 1) if end else HEAD_ROW}
        try:
            for row in self.table.query_entities(query, parameters=params, results_per_page=1000):
                yield row["RowKey"], row
        except AzureError as exc:
            raise StorageError(f"ledger storage unreachable: {type(exc).__name__}") from None

    def read(self, start: int = 1, limit: int = 1000) -> list[LedgerEntry]:
        """Up to ``limit`` entries from ``start`` on, parsed but not verified."""
        return [self._from_row(row, start + i) for i, (_, row) in enumerate(self.entries(start, start + limit - 1))]

    def _from_row(self, row: dict[str, Any], sequence: int) -> LedgerEntry:
        try:
            return LedgerEntry(stream=self.stream, sequence=int(row["sequence"]), kind=str(row["kind"]),
                               time=str(row["time"]), payload=json.loads(row["payload"]),
                               prev_hash=str(row["prev_hash"]), entry_hash=str(row["entry_hash"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerIntegrityError(sequence, "malformed_entry", f"row cannot be read: {exc}") from None

    def verify(self, progress: Callable[[int], None] | None = None) -> LedgerHead:
        """Walk the whole chain; return the head or raise :class:`LedgerIntegrityError` at the first bad entry.

        Detects modified rows (hash mismatch), deleted, reordered or inserted rows (sequence or
        ``prev_hash`` breaks) and a truncated tail (the head row disagrees).
        """
        expected, prev = 1, GENESIS_HASH
        for key, row in self.entries():
            if key != row_key(expected):
                raise LedgerIntegrityError(expected, "missing_entry", f"expected row {row_key(expected)}, found {key}")
            entry = self._from_row(row, expected)
            if entry.sequence != expected:
                raise LedgerIntegrityError(expected, "sequence_mismatch", f"row claims sequence {entry.sequence}")
            if entry.prev_hash != prev:
                raise LedgerIntegrityError(expected, "prev_hash_mismatch", "does not link to the previous entry")
            if entry.computed_hash() != entry.entry_hash:
                raise LedgerIntegrityError(expected, "entry_hash_mismatch", "content does not match its entry_hash")
            prev = entry.entry_hash
            if progress is not None:
                progress(expected)
            expected += 1
        head = self.head()
        if head.size != expected - 1:
            raise LedgerIntegrityError(min(head.size, expected), "head_mismatch",
                                       f"head says {head.size} entries, the table holds {expected - 1}")
        if head.entry_hash != prev:
            raise LedgerIntegrityError(head.size, "head_mismatch", "head hash does not match the last entry")
        return head
