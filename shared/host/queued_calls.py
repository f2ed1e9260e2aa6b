"""Asynchronous invocation requests: queued, executed by a queue trigger, results kept in a table.

A request is ``pending`` when accepted, then ``done`` (with its signed envelope), ``failed``
(with the problem document) or ``expired``. Every request has a deadline (``deadline_ms``, default
:data:`DEFAULT_DEADLINE_S` after acceptance): a request still pending at its deadline is never run
and its result is an explicit failure signed by the fabric's delivery key (docs/events.md), never
silence. Failures that retrying cannot fix are recorded at once; others are
retried by the queue and end in the poison queue after ``maxDequeueCount`` attempts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.clock import now_ms, utc_now
from shared.encoding import from_hex, parse_json_input, to_hex
from shared.errors import FabricError, InvalidInput, NotFound
from shared.events.delivery import DeliveryKey
from shared.host.contract_state import StateConflict
from shared.host.invocations import Invocations
from shared.host.models import Call
from shared.host.progress import JobStore
from shared.storage import storage_errors

PARTITION = "request"
DEFAULT_DEADLINE_S = 900
MAX_DEADLINE_S = 7 * 24 * 3600


@dataclass(frozen=True)
class QueuedRequest:
    """One invocation request as it travels on the queue."""

    request_id: str
    name: str
    method: str
    args: dict[str, Any]
    deadline_ms: int | None = None

    def to_message(self) -> str:
        return json.dumps(
            {
                "request_id": self.request_id,
                "name": self.name,
                "method": self.method,
                "args": self.args,
                "deadline_ms": self.deadline_ms,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, body: bytes | str) -> QueuedRequest:
        """Parse a queue message; raises :class:`InvalidInput` if it is not a request."""
        try:
            data = parse_json_input(body, what="queued request")  # the limits of request bodies
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("queued request is not JSON", field="$") from None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("request_id", "name", "method")
        ):
            raise InvalidInput("queued request needs request_id, name and method", field="$")
        from_hex(data["request_id"], length=32, field="request_id")
        if not isinstance(data.get("args", {}), dict):
            raise InvalidInput("args must be an object", field="args")
        deadline = data.get("deadline_ms")
        if deadline is not None and (not isinstance(deadline, int) or isinstance(deadline, bool)):
            raise InvalidInput("deadline_ms must be an integer", field="deadline_ms")
        return cls(data["request_id"], data["name"], data["method"], data.get("args", {}), deadline)


def deadline_of(deadline_ms: int | None, now_ms: int) -> int:
    """The request's deadline: ``deadline_ms`` (1 s .. 7 days ahead) or the default."""
    if deadline_ms is None:
        return now_ms + DEFAULT_DEADLINE_S * 1000
    if not now_ms + 1000 <= deadline_ms <= now_ms + MAX_DEADLINE_S * 1000:
        raise InvalidInput("deadline_ms must be unix milliseconds between 1 s and 7 days ahead", field="deadline_ms")
    return deadline_ms


class RequestStore:
    """Status and results of asynchronous requests, keyed by request id."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def _write(self, request_id: str, status: str, **fields: Any) -> None:
        row = {
            "PartitionKey": PARTITION,
            "RowKey": request_id.lower(),
            "status": status,
            "updated_at": utc_now(),
            **{k: json.dumps(v, separators=(",", ":")) for k, v in fields.items()},
        }
        with storage_errors("request store"):
            self.table.upsert_entity(row, mode=UpdateMode.MERGE)

    def pending(self, request: QueuedRequest) -> None:
        self._write(
            request.request_id,
            "pending",
            request={"name": request.name, "method": request.method},
            deadline_ms=request.deadline_ms,
        )

    def expired(self, request_id: str, failure: dict[str, Any]) -> None:
        """Record the signed failure of a request that reached its deadline unrun."""
        self._write(request_id, "expired", error=failure)

    def done(self, request_id: str, envelope: dict[str, Any]) -> None:
        self._write(request_id, "done", envelope=envelope)

    def failed(self, request_id: str, error: FabricError) -> None:
        self._write(request_id, "failed", error=error.problem())

    def get(self, request_id: str) -> dict[str, Any]:
        from_hex(request_id, length=32, field="request_id")
        with storage_errors("request store"):
            try:
                row = self.table.get_entity(PARTITION, request_id.lower())
            except ResourceNotFoundError:
                raise NotFound(f"no request {request_id}", field="request_id") from None
        result: dict[str, Any] = {
            "request_id": request_id.lower(),
            "status": row["status"],
            "updated_at": row["updated_at"],
        }
        for key in ("request", "envelope", "error", "deadline_ms"):
            if key in row:
                result[key] = json.loads(row[key])
        return result


class QueuedCalls:
    """Asynchronous invocations: accepted (pending), run by the queue worker, their status and progress.

    A request still pending at its deadline is never run; its result is an explicit failure signed by
    the fabric's delivery key.
    """

    def __init__(
        self, requests: RequestStore, invocations: Invocations, delivery_key: DeliveryKey, progress: JobStore
    ) -> None:
        self.requests = requests
        self.invocations = invocations
        self.delivery_key = delivery_key
        self.progress_store = progress

    def accept(self, name: str, call: Call, deadline_ms: int | None = None) -> QueuedRequest:
        """Validate an asynchronous invocation and record it as pending; the caller enqueues it."""
        _, request_id = self.invocations.check(name, call)
        request = QueuedRequest(to_hex(request_id), name, call.method, call.args, deadline_of(deadline_ms, now_ms()))
        self.requests.pending(request)
        return request

    def status(self, request_id: str) -> dict[str, Any]:
        """A request's status; one still pending past its deadline is expired now (signed failure)."""
        status = self.requests.get(request_id)
        deadline = status.get("deadline_ms")
        if status["status"] == "pending" and deadline is not None and now_ms() > deadline:
            self.requests.expired(status["request_id"], self._expiry(status["request_id"], deadline))
            status = self.requests.get(request_id)
        return status

    def _expiry(self, request_id: str, deadline_ms: int) -> dict[str, Any]:
        """The explicit failure of an expired request, signed by the fabric's delivery key."""
        result = {"request_id": request_id, "status": "expired", "deadline_ms": deadline_ms, "expired_ms": now_ms()}
        return {
            "type": "about:blank",
            "title": "Request expired",
            "status": 410,
            "code": "expired",
            "detail": "the request reached its deadline before it ran",
            "result": result,
            "signature": self.delivery_key.sign(result),
            "signer": self.delivery_key.address,
        }

    def run(self, message: bytes | str) -> None:
        """Execute a queued request and record its outcome.

        Errors a retry cannot fix (4xx) are recorded as ``failed``; others, and a contract's state
        that kept changing under other hosts (:class:`StateConflict`, already retried in place),
        propagate so the queue retries the message and finally moves it to the poison queue.
        """
        request = QueuedRequest.from_message(message)
        if request.deadline_ms is not None and now_ms() > request.deadline_ms:
            self.requests.expired(request.request_id, self._expiry(request.request_id, request.deadline_ms))
            return
        try:
            envelope = self.invocations.invoke(
                request.name,
                Call(request.method, request.args, from_hex(request.request_id, length=32, field="request_id")),
            )
        except FabricError as exc:
            if exc.status < 500 and not isinstance(exc, StateConflict):
                self.requests.failed(request.request_id, exc)
                return
            raise
        self.requests.done(request.request_id, envelope)

    def progress(self, request_id: str) -> dict[str, Any]:
        """How far the call ``request_id`` has come, as its cryptlet reported it; a queued request that
        has not reported yet is at 0."""
        return self.progress_store.progress(request_id, known=self.requests.get)
