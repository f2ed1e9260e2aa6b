"""The delivery history table: one row per (subscription, sequence), the unit of idempotency.

Table ``<prefix>history``, ``PartitionKey=<subscription id>``, ``RowKey=<sequence, 13 digits>``
(the fire's UTC milliseconds, so rows sort in sequence order). A row is created once, with
``create_entity``, by whoever *claims* the fire (the scheduler tick, the webhook route, an
observation); a second claim of the same fire fails with ``Conflict`` — that is how two hosts
ticking at once never double-fire. The fire worker then records the result (the cryptlet's
envelope, or a failure) with the row's ETag before delivering it, and marks the row delivered:
a duplicated or retried message finds the row and re-delivers what is recorded, never invoking twice.

Columns: ``fire`` (the fire message, JSON), ``status`` (``claimed``, ``invoking`` (a worker holds the
invocation lease since ``invoked_ms``), ``invoked``, ``delivered``,
``failed``: the result is a failure, not yet delivered), ``result`` (``ok``/``failed``/``expired``),
``envelope`` (JSON or empty), ``error`` (JSON problem or empty), ``payload_hash``, ``signature``
(the envelope's), ``attempts`` (delivery attempts), ``claimed_ms``, ``invoked_ms``,
``delivered_ms``, ``delivery_signature`` (the fabric's signature of the last body delivered).
No secret is ever stored here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from shared.errors import Conflict
from shared.storage import storage_errors

SEQUENCE_DIGITS = 13
#: Table storage keeps at most 64 KiB per string property; larger envelopes are refused as failed.
MAX_PROPERTY_CHARS = 30_000


def _int64(value: int) -> EntityProperty:
    return EntityProperty(int(value), EdmType.INT64)


def _read_int(value: Any) -> int:
    return int(value.value if isinstance(value, EntityProperty) else value or 0)


def row_key(sequence: int) -> str:
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


@dataclass
class HistoryRow:
    subscription: str
    sequence: int
    fire: dict[str, Any]
    status: str = "claimed"
    result: str = ""
    envelope: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    payload_hash: str = ""
    signature: str = ""
    attempts: int = 0
    claimed_ms: int = 0
    invoked_ms: int = 0
    delivered_ms: int = 0
    delivery_signature: str = ""
    etag: str = field(default="", compare=False)

    @property
    def has_result(self) -> bool:
        return bool(self.result)

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.subscription,
            "RowKey": row_key(self.sequence),
            "fire": json.dumps(self.fire, separators=(",", ":")),
            "status": self.status,
            "result": self.result,
            "envelope": json.dumps(self.envelope, separators=(",", ":")) if self.envelope is not None else "",
            "error": json.dumps(self.error, separators=(",", ":")) if self.error is not None else "",
            "payload_hash": self.payload_hash,
            "signature": self.signature,
            "attempts": self.attempts,
            "claimed_ms": _int64(self.claimed_ms),
            "invoked_ms": _int64(self.invoked_ms),
            "delivered_ms": _int64(self.delivered_ms),
            "delivery_signature": self.delivery_signature,
        }

    @classmethod
    def from_entity(cls, entity: Any) -> HistoryRow:
        return cls(
            subscription=entity["PartitionKey"],
            sequence=int(entity["RowKey"]),
            fire=json.loads(entity.get("fire") or "{}"),
            status=entity.get("status", "claimed"),
            result=entity.get("result", ""),
            envelope=json.loads(entity["envelope"]) if entity.get("envelope") else None,
            error=json.loads(entity["error"]) if entity.get("error") else None,
            payload_hash=entity.get("payload_hash", ""),
            signature=entity.get("signature", ""),
            attempts=int(entity.get("attempts", 0)),
            claimed_ms=_read_int(entity.get("claimed_ms", 0)),
            invoked_ms=_read_int(entity.get("invoked_ms", 0)),
            delivered_ms=_read_int(entity.get("delivered_ms", 0)),
            delivery_signature=entity.get("delivery_signature", ""),
            etag=entity.metadata.get("etag", "") if hasattr(entity, "metadata") else "",
        )

    def public(self) -> dict[str, Any]:
        """What ``GET /api/subscriptions/{id}/history`` shows."""
        return {
            "subscription": self.subscription,
            "sequence": self.sequence,
            "fire": self.fire,
            "status": self.status,
            "result": self.result or None,
            "envelope": self.envelope,
            "error": self.error,
            "payload_hash": self.payload_hash or None,
            "signature": self.signature or None,
            "attempts": self.attempts,
            "claimed_ms": self.claimed_ms,
            "invoked_ms": self.invoked_ms or None,
            "delivered_ms": self.delivered_ms or None,
            "delivery_signature": self.delivery_signature or None,
        }


class HistoryStore:
    """Claim, record and list deliveries."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def claim(self, row: HistoryRow) -> HistoryRow:
        """Create the row; :class:`Conflict` if this (subscription, sequence) was claimed before."""
        with storage_errors("history"):
            try:
                metadata = self.table.create_entity(row.to_entity())
            except ResourceExistsError:
                raise Conflict(
                    f"fire {row.subscription}/{row.sequence} was claimed already", field="sequence"
                ) from None
        row.etag = metadata.get("etag", "")
        return row

    def get(self, subscription: str, sequence: int) -> HistoryRow | None:
        with storage_errors("history"):
            try:
                return HistoryRow.from_entity(self.table.get_entity(subscription, row_key(sequence)))
            except ResourceNotFoundError:
                return None

    def update(self, row: HistoryRow) -> HistoryRow:
        """Write ``row`` if it still has its ETag; :class:`Conflict` if another worker changed it."""
        with storage_errors("history"):
            try:
                metadata = self.table.update_entity(
                    row.to_entity(),
                    mode=UpdateMode.REPLACE,
                    etag=row.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                raise Conflict(
                    f"history row {row.subscription}/{row.sequence} changed concurrently", field="sequence"
                ) from None
        row.etag = metadata.get("etag", "")
        return row

    def list(self, subscription: str, *, start: int = 0, limit: int = 100) -> list[HistoryRow]:
        """Rows of ``subscription`` with sequence >= ``start``, in sequence order, at most ``limit``."""
        with storage_errors("history"):
            pages = self.table.query_entities(
                "PartitionKey eq @p and RowKey ge @r",
                parameters={"p": subscription, "r": row_key(start)},
                results_per_page=min(limit, 1000),
            )
            rows: list[HistoryRow] = []
            for entity in pages:
                rows.append(HistoryRow.from_entity(entity))
                if len(rows) >= limit:
                    break
            return rows
