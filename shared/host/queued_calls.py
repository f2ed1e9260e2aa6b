"""Asynchronous invocation requests: accepted once, queued, run under a renewed lease, recovered by a
sweep; their status and results kept in a table.

A request is ``pending`` when accepted (it has never started), ``running`` once a worker has leased it
(it may have started), then ``done`` (with its signed envelope), ``failed`` (with the problem
document) or ``expired``. Every request has a deadline (``deadline_ms``, default
:data:`DEFAULT_DEADLINE_S` after acceptance): nothing starts after it. A request still ``pending`` at
its deadline is ``expired``: it never ran, and its result is an explicit failure signed by the
fabric's delivery key (docs/events.md). A ``running`` one whose worker died and whose deadline has
passed is ``failed`` with code ``interrupted`` (it may have run in part), never ``expired``.

* **Idempotent ids.** The pending row is inserted only if absent (``create_entity``): of two POSTs
  of one request id, racing on one host or two, exactly one is accepted and enqueued; the other gets
  the existing request (the same name, method and args) or a 409 (different ones).
* **Leases.** A worker marks the row ``running`` with a lease (``lease_until_ms``, ETag-conditional,
  so two workers, or a worker and the expiry, cannot both win) before it invokes, and renews the
  lease every third of :data:`DEFAULT_LEASE_S` while the call runs. A message whose request is
  finished, or leased by a live worker, is dropped without running.
* **Recovery.** :meth:`QueuedCalls.sweep` (a timer, every 10 s) re-enqueues a running request whose
  lease expired (its host died) and a pending one whose message has not been taken for
  :data:`RECHECK_MS` (lost between the row and the queue), expires pending requests past their
  deadline, and gives up (``failed``) after :data:`MAX_ATTEMPTS` leases. Details: docs/requests.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import threading
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from shared.clock import now_ms, utc_now
from shared.encoding import canonical_json, from_hex, parse_json_input, to_hex
from shared.errors import Conflict, FabricError, InvalidInput, NotFound, StorageError
from shared.events.delivery import DeliveryKey
from shared.host.contract_state import StateConflict
from shared.host.invocations import Invocations
from shared.host.models import Call
from shared.host.progress import JobStore
from shared.storage import storage_errors

log = logging.getLogger("fabric.requests")

PARTITION = "request"
DEFAULT_DEADLINE_S = 900
MAX_DEADLINE_S = 7 * 24 * 3600
#: How long a worker's lease on a running request lasts without renewal (renewed every third of it).
DEFAULT_LEASE_S = 30
#: Leases a request may take (a host died, or the call failed with a 5xx) before it is ``failed``.
MAX_ATTEMPTS = 5
#: A request the sweep re-enqueued (or a pending one) is looked at again after this long if no worker took it.
RECHECK_MS = 120_000
#: Largest queue message (Azure queues take 64 KiB, and the base64 message encoding costs a third).
MAX_MESSAGE_BYTES = 48 * 1024
#: Most rows one sweep handles (the next sweep takes the rest).
SWEEP_MAX = 1000
TERMINAL = frozenset({"done", "failed", "expired"})


class TooLarge(FabricError):
    status, code, title = 413, "too_large", "Payload too large"


class Interrupted(FabricError):
    """A running request that cannot be run again: its deadline passed, or it used every attempt."""

    status, code, title = 503, "interrupted", "Request interrupted"


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

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of name, method and args: what makes two requests "the same"."""
        body = canonical_json({"name": self.name, "method": self.method, "args": self.args})
        return hashlib.sha256(body).hexdigest()

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
        return cls(data["request_id"].lower(), data["name"], data["method"], data.get("args", {}), deadline)


def deadline_of(deadline_ms: int | None, now_ms: int) -> int:
    """The request's deadline: ``deadline_ms`` (1 s .. 7 days ahead) or the default."""
    if deadline_ms is None:
        return now_ms + DEFAULT_DEADLINE_S * 1000
    if not now_ms + 1000 <= deadline_ms <= now_ms + MAX_DEADLINE_S * 1000:
        raise InvalidInput("deadline_ms must be unix milliseconds between 1 s and 7 days ahead", field="deadline_ms")
    return deadline_ms


def _int64(value: int) -> EntityProperty:
    return EntityProperty(int(value), EdmType.INT64)


def _int(value: Any) -> int:
    return int(value.value if isinstance(value, EntityProperty) else value or 0)


@dataclass
class Row:
    """A request's stored row (``etag``: the version read, for conditional writes)."""

    request_id: str
    status: str
    etag: str
    entity: dict[str, Any]

    @property
    def attempts(self) -> int:
        return _int(self.entity.get("attempts"))

    @property
    def lease_until_ms(self) -> int:
        return _int(self.entity.get("lease_until_ms"))

    @property
    def deadline_ms(self) -> int | None:
        value = self.entity.get("deadline_ms")
        return None if value in (None, "null") else int(json.loads(value))

    def request(self) -> QueuedRequest | None:
        """The queued request kept in the row (``None`` for a row written before requests were kept)."""
        message = self.entity.get("message")
        return None if message is None else QueuedRequest.from_message(message)

    def public(self) -> dict[str, Any]:
        """The status document of ``GET /api/requests/{request_id}``."""
        result: dict[str, Any] = {
            "request_id": self.request_id,
            "status": self.status,
            "updated_at": self.entity["updated_at"],
            "attempts": self.attempts,
        }
        for key in ("request", "envelope", "error", "deadline_ms"):
            if key in self.entity:
                result[key] = json.loads(self.entity[key])
        return result


class RequestStore:
    """Rows of asynchronous requests, keyed by request id; every change after the insert names the ETag read."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def pending(self, request: QueuedRequest) -> bool:
        """Insert the request as ``pending`` if its id is new; ``False`` if a row for it exists."""
        now = now_ms()
        row = {
            "PartitionKey": PARTITION,
            "RowKey": request.request_id.lower(),
            "status": "pending",
            "updated_at": utc_now(),
            "request": json.dumps({"name": request.name, "method": request.method}, separators=(",", ":")),
            "deadline_ms": json.dumps(request.deadline_ms),
            "fingerprint": request.fingerprint,
            "message": request.to_message().encode("utf-8"),
            "attempts": 0,
            "lease_until_ms": _int64(0),
            # the sweep looks at it then: re-enqueues it if no worker took it, or expires it
            "check_after_ms": _int64(min(now + RECHECK_MS, (request.deadline_ms or now + RECHECK_MS) + 1)),
        }
        with storage_errors("request store"):
            try:
                self.table.create_entity(row)
            except ResourceExistsError:
                return False
        return True

    def read(self, request_id: str) -> Row | None:
        with storage_errors("request store"):
            try:
                entity = self.table.get_entity(PARTITION, request_id.lower())
            except ResourceNotFoundError:
                return None
        return Row(request_id.lower(), entity["status"], str(entity.metadata["etag"]), dict(entity))

    def get(self, request_id: str) -> dict[str, Any]:
        """The status document of ``request_id``; :class:`NotFound` if there is none."""
        from_hex(request_id, length=32, field="request_id")
        row = self.read(request_id)
        if row is None:
            raise NotFound(f"no request {request_id}", field="request_id")
        return row.public()

    def update(self, row: Row, status: str | None = None, **fields: Any) -> Row:
        """Merge ``fields`` (and ``status``) into the row if it still has ``row.etag``; the row as written.

        :class:`Conflict` if another writer changed it first. Dicts and lists are stored as JSON.
        """
        changes: dict[str, Any] = {"updated_at": utc_now()}
        if status is not None:
            changes["status"] = status
        for key, value in fields.items():
            if key.endswith("_ms") and isinstance(value, int):
                value = _int64(value)
            elif isinstance(value, (dict, list)):
                value = json.dumps(value, separators=(",", ":"))
            changes[key] = value
        entity = {"PartitionKey": PARTITION, "RowKey": row.request_id, **changes}
        with storage_errors("request store"):
            try:
                metadata = self.table.update_entity(
                    entity, mode=UpdateMode.MERGE, etag=row.etag, match_condition=MatchConditions.IfNotModified
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                raise Conflict(f"request {row.request_id} changed concurrently", field="request_id") from None
        return Row(row.request_id, status or row.status, metadata["etag"], {**row.entity, **changes})

    def due(self, now: int) -> list[Row]:
        """Unfinished rows whose ``check_after_ms`` has passed (at most :data:`SWEEP_MAX`).

        A filtered scan of the one partition, as the event engine's sweep does (docs/requests.md).
        """
        with storage_errors("request store"):
            pages = self.table.query_entities(
                "PartitionKey eq @p and (status eq 'pending' or status eq 'running') and check_after_ms lt @now",
                parameters={"p": PARTITION, "now": now},
                results_per_page=SWEEP_MAX,
            )
            rows = []
            for entity in pages:
                rows.append(Row(entity["RowKey"], entity["status"], str(entity.metadata["etag"]), dict(entity)))
                if len(rows) >= SWEEP_MAX:
                    break
        return rows


class Lease:
    """A worker's lease on a running request, renewed on a thread until :meth:`finish` or :meth:`release`."""

    def __init__(self, store: RequestStore, row: Row, lease_ms: int) -> None:
        self.store = store
        self.row = row
        self.lease_ms = lease_ms
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{row.request_id[:10]}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            with self._lock:
                if self._stop.is_set():
                    return
                until = now_ms() + self.lease_ms
                try:
                    self.row = self.store.update(self.row, lease_until_ms=until, check_after_ms=until)
                except Conflict:
                    if not self._still_ours():
                        log.warning("request %s: lease lost to another writer", self.row.request_id)
                        return
                except StorageError:
                    continue  # try again at the next renewal; the lease still has two thirds to run

    def _still_ours(self) -> bool:
        """After a conflicting write: whether the row is still this lease's (then renew from it)."""
        try:
            fresh = self.store.read(self.row.request_id)
        except StorageError:
            return True
        if fresh is None or fresh.status != "running" or fresh.attempts != self.row.attempts:
            return False
        if fresh.entity.get("worker") != self.row.entity.get("worker"):
            return False
        self.row = fresh
        return True

    def _stop_renewing(self) -> None:
        self._stop.set()
        with self._lock:
            pass
        self._thread.join(timeout=5)

    def finish(self, status: str, **fields: Any) -> None:
        """Record the outcome: with the lease's ETag, or over a row another writer changed, unless that
        row is finished already (then the first outcome stands)."""
        self._stop_renewing()
        row = self.row
        for _ in range(4):
            try:
                self.store.update(row, status, lease_until_ms=0, check_after_ms=0, **fields)
                return
            except Conflict:
                fresh = self.store.read(row.request_id)
                if fresh is None or fresh.status in TERMINAL:
                    return
                row = fresh
        raise StorageError(f"request {row.request_id}: could not record its outcome")

    def release(self, error: dict[str, Any] | None) -> None:
        """Give the lease up after a failure that a retry may fix: the next message may lease it at once."""
        self._stop_renewing()
        try:
            self.store.update(self.row, lease_until_ms=0, check_after_ms=now_ms() + RECHECK_MS, last_error=error or {})
        except (Conflict, StorageError):
            pass  # the lease runs out by itself


@dataclass(frozen=True)
class Accepted:
    """The answer of :meth:`QueuedCalls.accept`: a new request to enqueue, or the existing one's status."""

    request: QueuedRequest
    existing: dict[str, Any] | None = None

    @property
    def created(self) -> bool:
        return self.existing is None


class QueuedCalls:
    """Asynchronous invocations: accepted once (pending), run under a lease, recovered by the sweep."""

    def __init__(
        self,
        requests: RequestStore,
        invocations: Invocations,
        delivery_key: DeliveryKey,
        progress: JobStore,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.requests = requests
        self.invocations = invocations
        self.delivery_key = delivery_key
        self.progress_store = progress
        self.lease_ms = int(lease_s * 1000)
        self.worker = f"{platform.node()}:{os.getpid()}"

    def accept(self, name: str, call: Call, deadline_ms: int | None = None) -> Accepted:
        """Validate an asynchronous invocation and record it as pending if its id is new; the caller
        enqueues ``request.to_message()`` only then. A known id with the same name, method and args
        answers that request's status; with others, :class:`Conflict` (``request_id``)."""
        _, request_id = self.invocations.check(name, call)
        request = QueuedRequest(to_hex(request_id), name, call.method, call.args, deadline_of(deadline_ms, now_ms()))
        if len(request.to_message().encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise TooLarge(f"an asynchronous request may be at most {MAX_MESSAGE_BYTES} bytes of JSON", field="args")
        if self.requests.pending(request):
            return Accepted(request)
        row = self.requests.read(request.request_id)
        if row is None:  # deleted in between: vanishingly rare; the client may retry
            raise Conflict(f"request {request.request_id} changed concurrently; retry", field="request_id")
        if row.entity.get("fingerprint", request.fingerprint) != request.fingerprint:
            raise Conflict(
                f"request {request.request_id} exists with another cryptlet, method or args", field="request_id"
            )
        return Accepted(request, self._settle(row).public())

    def status(self, request_id: str) -> dict[str, Any]:
        """A request's status; one still pending past its deadline is expired now (signed failure)."""
        from_hex(request_id, length=32, field="request_id")
        row = self.requests.read(request_id)
        if row is None:
            raise NotFound(f"no request {request_id}", field="request_id")
        return self._settle(row).public()

    def _settle(self, row: Row) -> Row:
        """Expire ``row`` if it is pending past its deadline (it never ran); the row as it now is."""
        deadline = row.deadline_ms
        if row.status != "pending" or deadline is None or now_ms() <= deadline:
            return row
        try:
            return self.requests.update(row, "expired", error=self._expiry(row.request_id, deadline), check_after_ms=0)
        except Conflict:  # a worker leased it (or another reader expired it) first
            fresh = self.requests.read(row.request_id)
            return fresh if fresh is not None else row

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
        lease = self._lease(request)
        if lease is None:
            return  # finished, expired, or running under another worker's live lease: dropped unrun
        try:
            envelope = self.invocations.invoke(
                request.name,
                Call(request.method, request.args, from_hex(request.request_id, length=32, field="request_id")),
            )
        except FabricError as exc:
            if exc.status < 500 and not isinstance(exc, StateConflict):
                lease.finish("failed", error=exc.problem())
                return
            lease.release(exc.problem())
            raise
        except BaseException:
            lease.release(None)
            raise
        lease.finish("done", envelope=envelope)

    def _lease(self, request: QueuedRequest) -> Lease | None:
        """Take the lease on ``request`` for this worker, or ``None`` if it must not run now."""
        for _ in range(4):
            row = self.requests.read(request.request_id)
            if row is None:  # a message enqueued without an accepted row (by hand): record it first
                self.requests.pending(request)
                continue
            now = now_ms()
            if row.status in TERMINAL or (row.status == "running" and row.lease_until_ms > now):
                log.info("request %s is %s: message dropped", row.request_id, row.status)
                return None
            try:
                if self._conclude(row, now) is not None:
                    return None
                until = now + self.lease_ms
                leased = self.requests.update(
                    row,
                    "running",
                    attempts=row.attempts + 1,
                    lease_until_ms=until,
                    check_after_ms=until,
                    worker=self.worker,
                )
            except Conflict:
                continue  # another worker (or the expiry) changed it first: look again
            return Lease(self.requests, leased, self.lease_ms)
        return None

    def _conclude(self, row: Row, now: int) -> Row | None:
        """Finish a row that must not run again: pending past its deadline -> ``expired`` (signed; it
        never ran); leased before and past its deadline, or out of attempts -> ``failed``
        (``interrupted``). ``None`` if it may run. :class:`Conflict` if the row changed meanwhile."""
        deadline = row.deadline_ms
        if row.status == "pending":
            if deadline is not None and now > deadline:
                return self.requests.update(
                    row, "expired", error=self._expiry(row.request_id, deadline), check_after_ms=0
                )
            return None
        if deadline is not None and now > deadline:
            reason = "its deadline passed after a worker started it and stopped (its host died?)"
        elif row.attempts >= MAX_ATTEMPTS:
            reason = f"it was started {row.attempts} times without finishing"
        else:
            return None
        last = row.entity.get("last_error")
        error = Interrupted(
            f"request {row.request_id} was not run again: {reason}",
            field="request_id",
            attempts=row.attempts,
            last_error=json.loads(last) if last else None,
        )
        return self.requests.update(row, "failed", error=error.problem(), lease_until_ms=0, check_after_ms=0)

    def sweep(self) -> list[str]:
        """Recovery (the timer): conclude what must not run again, and return the queue messages of
        requests to run again (a lease ran out, or a pending message was not taken for
        :data:`RECHECK_MS`), each claimed with its ETag so two sweeps do not both re-enqueue it."""
        now = now_ms()
        messages = []
        for row in self.requests.due(now):
            try:
                if self._conclude(row, now) is not None:
                    continue
                if row.status == "running" and row.lease_until_ms > now:  # its worker is alive: leave it be
                    continue
                request = row.request()
                if request is None:
                    continue
                self.requests.update(row, check_after_ms=now + RECHECK_MS)
            except Conflict:
                continue
            except (FabricError, ValueError) as exc:
                log.warning("request %s: sweep skipped it (%s)", row.request_id, type(exc).__name__)
                continue
            messages.append(request.to_message())
        if messages:
            log.info("re-enqueued %d request(s) whose worker stopped or whose message was lost", len(messages))
        return messages

    def progress(self, request_id: str) -> dict[str, Any]:
        """How far the call ``request_id`` has come, as its cryptlet reported it; a queued request that
        has not reported yet is at 0."""
        return self.progress_store.progress(request_id, known=self.requests.get)
