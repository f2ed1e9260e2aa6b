"""Progress of long calls: what cryptlets report with the ``progress`` call-out, per request id.

A cryptlet reports ``context.progress(fraction, message)`` (Node: ``ctx.progress``); the region's
call-out handler (:class:`~shared.isolation.callout.HostCallOuts`) checks the parameters and hands
them to :meth:`JobStore.report`, which keeps one row per request id in the table
``<prefix>jobs`` (PartitionKey ``job``, RowKey = the lower-case request id): the cryptlet's
``name``, ``fraction``, ``message``, ``started_at`` and ``updated_at``.

* The fraction is **monotonic**: a report below the recorded fraction is dropped (a retried queue
  message starting again from 0 does not move the bar backwards). An equal one updates the message.
* A row belongs to the cryptlet that first reported it: another cryptlet reporting for the same
  request id is refused (``conflict``), so one cryptlet cannot overwrite another's progress.
* The host does not check that the request id is the one of the call in flight (the call-out
  handler does not see it); within its own request ids a cryptlet can only move the bar forward.
  Rows are kept (no expiry yet).
* Concurrent writers (two hosts running the same request after a queue retry) are serialised with
  the row's ETag.

``GET /api/requests/{request_id}/progress`` (:meth:`shared.host.queued_calls.QueuedCalls.progress`) reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.clock import utc_now
from shared.encoding import from_hex
from shared.errors import Conflict, NotFound
from shared.storage import storage_errors

PARTITION = "job"
_ATTEMPTS = 8


class JobStore:
    """Progress rows of long calls, keyed by request id."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def report(self, name: str, request_id: str, fraction: float, message: str) -> None:
        """Record that cryptlet ``name``'s call ``request_id`` is ``fraction`` (0..1) done.

        The call-out handler has checked the types; a lower fraction than recorded is dropped.
        """
        key = request_id.lower()
        with storage_errors("job store"):
            for _ in range(_ATTEMPTS):
                try:
                    row = self.table.get_entity(PARTITION, key)
                except ResourceNotFoundError:
                    now = utc_now()
                    try:
                        self.table.create_entity(
                            {
                                "PartitionKey": PARTITION,
                                "RowKey": key,
                                "name": name,
                                "fraction": float(fraction),
                                "message": message,
                                "started_at": now,
                                "updated_at": now,
                            }
                        )
                        return
                    except ResourceExistsError:
                        continue  # another writer created it: read it and merge
                if row.get("name") != name:
                    raise Conflict(f"request {key} reports the progress of another cryptlet", field="request_id")
                if fraction < float(row["fraction"]):
                    return  # monotonic: never move backwards
                try:
                    self.table.update_entity(
                        {
                            "PartitionKey": PARTITION,
                            "RowKey": key,
                            "fraction": float(fraction),
                            "message": message,
                            "updated_at": utc_now(),
                        },
                        mode=UpdateMode.MERGE,
                        etag=row.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue  # raced another writer: read again
        raise Conflict(f"progress of request {key} is being written concurrently; try again", field="request_id")

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The progress row of ``request_id`` (``None`` if nothing was reported)."""
        from_hex(request_id, length=32, field="request_id")
        with storage_errors("job store"):
            try:
                row = self.table.get_entity(PARTITION, request_id.lower())
            except ResourceNotFoundError:
                return None
        return {
            "request_id": request_id.lower(),
            "cryptlet": row["name"],
            "fraction": float(row["fraction"]),
            "message": row.get("message", ""),
            "started_at": row["started_at"],
            "updated_at": row["updated_at"],
        }

    def progress(self, request_id: str, known: Callable[[str], Any] | None = None) -> dict[str, Any]:
        """The progress of ``request_id``; without a row, ``fraction`` 0 if ``known(request_id)``
        succeeds (a queued request that has not reported yet), else :class:`NotFound`."""
        row = self.get(request_id)
        if row is not None:
            return {**row, "reported": True}
        if known is None:
            raise NotFound(f"no progress reported for request {request_id}", field="request_id")
        known(request_id)  # raises NotFound for an unknown request
        return {
            "request_id": request_id.lower(),
            "cryptlet": None,
            "fraction": 0.0,
            "message": "",
            "started_at": None,
            "updated_at": None,
            "reported": False,
        }
