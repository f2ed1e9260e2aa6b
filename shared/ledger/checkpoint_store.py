"""Where a ledger stream's signed checkpoints are kept: beside it, in partition ``<stream>.checkpoints``.

RowKey is ``999999999999 - size`` zero-padded, so the newest checkpoint is the first row of the
partition. Each row holds the signed note as issued, its size and root, and the verifier key
that signed it (informational: auditors pin their own copy). A size is checkpointed at most
once; a second, different root for the same size is a fork and is reported, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.errors import LedgerIntegrityError, NotFound
from shared.ledger import tablewire
from shared.ledger.checkpoints import Checkpoint, parse_body, split_note
from shared.storage import storage_errors

_MAX = 10**12 - 1


def _key(size: int) -> str:
    return f"{_MAX - size:012d}"


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: the note text, what it says, and who says they signed it."""

    note: str
    checkpoint: Checkpoint
    public_key: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.checkpoint.to_dict(), "note": self.note, "public_key": self.public_key}


class CheckpointStore:
    """Signed checkpoints of one ledger stream in its table."""

    def __init__(self, table: TableClient, stream: str) -> None:
        self.table = table
        self.partition = f"{stream}.checkpoints"

    def put(self, note: str, public_key: str) -> StoredCheckpoint:
        """Store a signed checkpoint unless its size is taken; return what is stored for that size."""
        checkpoint = parse_body(split_note(note)[0])
        row = {
            "PartitionKey": self.partition,
            "RowKey": _key(checkpoint.size),
            "size": checkpoint.size,
            "root": checkpoint.root.hex(),
            "note": note,
            "public_key": public_key,
        }
        with storage_errors("checkpoint storage"):
            try:
                self.table.create_entity(row)
                return StoredCheckpoint(note, checkpoint, public_key)
            except ResourceExistsError:
                stored = self.at(checkpoint.size)
        if stored.checkpoint.root != checkpoint.root:
            raise LedgerIntegrityError(
                checkpoint.size,
                "checkpoint_conflict",
                "a stored checkpoint of this size has another root (forked history)",
            )
        return stored

    def latest(self) -> StoredCheckpoint | None:
        for row in self._rows(limit=1):
            return self._from_row(row)
        return None

    def at(self, size: int) -> StoredCheckpoint:
        """The checkpoint of exactly ``size`` entries; :class:`NotFound` if none was issued."""
        with storage_errors("checkpoint storage"):
            try:
                row = self.table.get_entity(self.partition, _key(size))
            except ResourceNotFoundError:
                raise NotFound(f"no checkpoint of size {size} was issued", field="size") from None
        return self._from_row(row)

    def all(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, smallest size first."""
        return [self._from_row(row) for row in reversed(list(self._rows()))]

    def _rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        rows = []
        with storage_errors("checkpoint storage"):
            try:
                for row in tablewire.read_range(
                    self.table, self.partition, "", "~", page_size=min(limit or 1000, 1000)
                ):
                    rows.append(row)
                    if limit is not None and len(rows) >= limit:
                        break
            except ResourceNotFoundError:
                return []
        return rows

    @staticmethod
    def _from_row(row: dict[str, Any]) -> StoredCheckpoint:
        note = str(row.get("note", ""))
        return StoredCheckpoint(note, parse_body(split_note(note)[0]), str(row.get("public_key", "")))
