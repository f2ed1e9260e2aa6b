"""Contract cryptlet state: the JSON object a contract cryptlet's calls read and change.

One row per cryptlet in the catalog table (``PartitionKey="state"``, ``RowKey=<name>``) holds the
state's canonical JSON, its version and its keccak256 hash, as the last signed envelope reported
them. A write names the ETag it read, so two hosts changing one contract at once cannot both
win: the second gets :class:`StateConflict` and its signed transition is discarded; the call is
then run again on the new state (``shared/host/invocations.py``), so a caller sees a conflict only
when it kept losing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.encoding import canonical_json
from shared.errors import Conflict
from shared.storage import storage_errors

STATE_PARTITION = "state"


class StateConflict(Conflict):
    """The state changed since it was read (another host's call won): retryable by re-running the call."""


@dataclass(frozen=True)
class StateRecord:
    """The stored state of one contract cryptlet (version 0 and ``{}`` before its first change)."""

    state: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    hash: str | None = None
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "version": self.version, "hash": self.hash}


class StateStore:
    """Reads and writes contract state rows with optimistic concurrency."""

    def __init__(self, catalog: TableClient) -> None:
        self.catalog = catalog

    def get(self, name: str) -> StateRecord:
        with storage_errors("catalog"):
            try:
                row = self.catalog.get_entity(STATE_PARTITION, name)
            except ResourceNotFoundError:
                return StateRecord()
        return StateRecord(json.loads(row["state"]), int(row["version"]), row["hash"], row.metadata.get("etag"))

    def put(self, name: str, previous: StateRecord, state: dict[str, Any], version: int, state_hash: str) -> None:
        """Store the state a signed envelope reported; :class:`StateConflict` if it changed since ``previous``."""
        row = {
            "PartitionKey": STATE_PARTITION,
            "RowKey": name,
            "state": canonical_json(state).decode("utf-8"),
            "version": version,
            "hash": state_hash,
        }
        with storage_errors("catalog"):
            try:
                if previous.etag is None:
                    self.catalog.create_entity(row)
                else:
                    self.catalog.update_entity(
                        row, mode=UpdateMode.REPLACE, etag=previous.etag, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceExistsError, ResourceModifiedError):
                raise StateConflict(
                    f"the state of {name} changed concurrently (another host); the call's transition was "
                    "discarded: retry the call",
                    field="state",
                ) from None

    def delete(self, name: str) -> None:
        try:
            self.catalog.delete_entity(STATE_PARTITION, name)
        except AzureError:
            pass
