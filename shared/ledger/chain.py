"""The registration ledger: an append-only, hash-chained log in Azure Table storage.

One partition per stream; RowKey is the zero-padded sequence (1, 2, ...). Each entry stores its
kind, canonical JSON payload, time, ``prev_hash`` and ``entry_hash`` where::

    entry bytes = RFC 8785 JSON of {kind, payload, prev_hash, sequence, stream, time}
    entry_hash  = SHA-256(0x00 || entry bytes)

and the first entry's ``prev_hash`` is 32 zero bytes. The entry bytes are the entry's leaf in the
ledger's RFC 9162 Merkle tree (:mod:`shared.ledger.index`), so ``entry_hash`` *is* its RFC 9162
leaf hash: one SHA-256 per entry serves both the chain and the tree. A ``head`` row in the same
partition holds the newest (sequence, entry_hash, time).

**Appends are group commits.** Concurrent :meth:`Ledger.append` calls in one process queue up;
whichever caller finds no commit in flight becomes the leader and commits up to 99 queued
entries plus the head row as *one* entity-group transaction: it *inserts* the next rows and
*replaces* the head only if its ETag is unchanged. A transaction applies completely or not at
all, and two writers (threads or processes) can never both extend the same head: the loser
re-reads the head, re-chains its batch and retries. There are no forks and no gaps, and a caller
gets its sequence only after the transaction that holds its entry has committed. When storage
cannot be reached mid-commit the outcome is unknown; the leader resolves it by reading the rows
back before trying again, so a lost answer never turns into a duplicate entry.

The head a process last wrote is cached only as a guess for its next transaction: other hosts
append to the same stream, so a compare-and-append (``expect_size``) that disagrees with the
cached head re-reads the head row before it is refused.

:meth:`Ledger.verify` walks the chain and names the first bad entry. Format: ``docs/ledger.md``.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.clock import utc_now
from shared.encoding import canonical_json
from shared.errors import Conflict, FabricError, InvalidInput, LedgerIntegrityError, NotFound, StorageError
from shared.ledger import tablewire
from shared.ledger.kinds import validate_entry
from shared.storage import storage_errors

GENESIS_HASH = "00" * 32
HEAD_ROW = "head"
SEQUENCE_DIGITS = 12
MAX_BATCH_ENTRIES = tablewire.MAX_OPERATIONS - 1
"""Most entries one transaction commits (the head row is the 100th operation)."""
MAX_PAYLOAD_BYTES = 32_000
"""Largest canonical payload: a Table string property holds 64 KiB of UTF-16."""
MAX_BATCH_BYTES = 3_000_000
"""Budget for one transaction's entries (the service accepts request bodies up to 4 MiB)."""
CONFLICT_CODES = frozenset({"EntityAlreadyExists", "UpdateConditionNotSatisfied"})
ROW_COLUMNS = ("sequence", "kind", "time", "payload", "prev_hash", "entry_hash")


def row_key(sequence: int) -> str:
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


def _json_string(text: str) -> str:
    """``text`` as an RFC 8785 JSON string (fast path for printable ASCII without quotes or backslashes)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return canonical_json(text).decode("utf-8")


def hash_entry(data: bytes) -> bytes:
    """``entry_hash`` of entry bytes: ``SHA-256(0x00 || data)``, the RFC 9162 leaf hash."""
    return hashlib.sha256(b"\x00" + data).digest()


def entry_bytes(stream: str, sequence: int, kind: str, time: str, payload_json: str, prev_hash: str) -> bytes:
    """The bytes an entry's hash and Merkle leaf are computed over.

    ``payload_json`` is inserted verbatim: for the RFC 8785 text the ledger stores, the result
    is exactly ``JCS({"kind", "payload", "prev_hash", "sequence", "stream", "time"})``.
    """
    return (
        '{"kind":'
        + _json_string(kind)
        + ',"payload":'
        + payload_json
        + ',"prev_hash":'
        + _json_string(prev_hash)
        + ',"sequence":'
        + str(int(sequence))
        + ',"stream":'
        + _json_string(stream)
        + ',"time":'
        + _json_string(time)
        + "}"
    ).encode("utf-8")


@dataclass(frozen=True)
class LedgerEntry:
    """One entry of a ledger stream.

    ``payload_json`` is the payload's stored text (RFC 8785); when omitted it is computed from
    ``payload``, so an entry rebuilt from a JSON document is checked strictly.
    """

    stream: str
    sequence: int
    kind: str
    time: str
    payload: dict[str, Any]
    prev_hash: str
    entry_hash: str
    payload_json: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.payload_json:
            object.__setattr__(self, "payload_json", canonical_json(self.payload).decode("utf-8"))

    @staticmethod
    def hash_of(stream: str, sequence: int, kind: str, time: str, payload: Any, prev_hash: str) -> str:
        payload_json = canonical_json(payload).decode("utf-8")
        return hash_entry(entry_bytes(stream, sequence, kind, time, payload_json, prev_hash)).hex()

    def leaf_data(self) -> bytes:
        """The entry bytes: what ``entry_hash`` and the Merkle leaf hash are computed over."""
        return entry_bytes(self.stream, self.sequence, self.kind, self.time, self.payload_json, self.prev_hash)

    def computed_hash(self) -> str:
        return hash_entry(self.leaf_data()).hex()

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "sequence": self.sequence,
            "kind": self.kind,
            "time": self.time,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }

    @classmethod
    def from_dict(cls, data: Any) -> LedgerEntry:
        """Parse the JSON form (:class:`InvalidInput` naming the field when it is malformed)."""
        if not isinstance(data, dict):
            raise InvalidInput("ledger entry must be a JSON object", field="entry")
        for name, kind in (
            ("stream", str),
            ("sequence", int),
            ("kind", str),
            ("time", str),
            ("payload", dict),
            ("prev_hash", str),
            ("entry_hash", str),
        ):
            if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
                raise InvalidInput(f"ledger entry {name} must be a {kind.__name__}", field=f"entry.{name}")
        return cls(
            stream=data["stream"],
            sequence=data["sequence"],
            kind=data["kind"],
            time=data["time"],
            payload=data["payload"],
            prev_hash=data["prev_hash"],
            entry_hash=data["entry_hash"],
        )

    @classmethod
    def from_row(cls, stream: str, row: dict[str, Any], sequence: int) -> LedgerEntry:
        """An entry from its stored row; :class:`LedgerIntegrityError` if the row cannot be read."""
        try:
            text = row["payload"]
            if not isinstance(text, str):
                raise TypeError("payload is not text")
            payload = json.loads(text)
            if not isinstance(payload, dict):
                raise TypeError("payload is not a JSON object")
            return cls(
                stream=stream,
                sequence=int(row["sequence"]),
                kind=str(row["kind"]),
                time=str(row["time"]),
                payload=payload,
                prev_hash=str(row["prev_hash"]),
                entry_hash=str(row["entry_hash"]),
                payload_json=text,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerIntegrityError(sequence, "malformed_entry", f"row cannot be read: {exc}") from None

    def reference(self) -> dict[str, Any]:
        """What envelopes and responses cite: stream, sequence and entry hash."""
        return {"stream": self.stream, "sequence": self.sequence, "entry_hash": "0x" + self.entry_hash}


@dataclass(frozen=True)
class LedgerHead:
    """The newest entry of a stream: its size (last sequence), hash and time."""

    size: int
    entry_hash: str
    time: str = ""


def walk_chain(
    rows: Iterable[dict[str, Any]],
    stream: str,
    *,
    after: int = 0,
    prev_hash: str = GENESIS_HASH,
    leaf_hashes: list[bytes] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Check stored rows ``after + 1, after + 2, ...`` link into one chain; return ``(size, last hash)``.

    This is the hot loop of every audit. It rebuilds each entry's bytes from the stored columns
    (the payload text verbatim, never re-canonicalised) and hashes them once: that hash is both
    the ``entry_hash`` to check and, with ``leaf_hashes``, the RFC 9162 leaf hash appended there.
    Raises :class:`LedgerIntegrityError` at the first row that is missing, out of place,
    mislinked, altered or unreadable.
    """
    sha = hashlib.sha256
    expected, prev = after, prev_hash
    template = (
        '{"kind":"%s","payload":%s,"prev_hash":"%s","sequence":%s,"stream":'
        + _json_string(stream).replace("%", "%%")
        + ',"time":"%s"}'
    )
    append_leaf = leaf_hashes.append if leaf_hashes is not None else None
    plain_kinds: set[str] = set()  # kinds already seen to need no JSON escaping
    try:
        for row in rows:
            expected += 1
            number = str(expected)
            key = row["RowKey"]
            if key != number.zfill(SEQUENCE_DIGITS):
                raise LedgerIntegrityError(expected, "missing_entry", f"expected row {row_key(expected)}, found {key}")
            sequence = row["sequence"]
            if sequence != expected or sequence.__class__ is not int:
                raise LedgerIntegrityError(expected, "sequence_mismatch", f"row claims sequence {sequence!r}")
            if row["prev_hash"] != prev:
                raise LedgerIntegrityError(expected, "prev_hash_mismatch", "does not link to the previous entry")
            kind, when, payload = row["kind"], row["time"], row["payload"]
            if (
                kind not in plain_kinds
                and kind.isascii()
                and kind.isprintable()
                and '"' not in kind
                and "\\" not in kind
            ):
                plain_kinds.add(kind)
            if kind in plain_kinds and when.isascii() and when.isprintable() and '"' not in when and "\\" not in when:
                data = (template % (kind, payload, prev, number, when)).encode()  # str methods beat a regex here
            else:  # strings that need JSON escaping: the general encoder
                data = entry_bytes(stream, expected, kind, when, payload, prev)
            leaf = sha(b"\x00" + data).digest()
            digest = leaf.hex()
            if digest != row["entry_hash"]:
                raise LedgerIntegrityError(expected, "entry_hash_mismatch", "content does not match its entry_hash")
            if append_leaf is not None:
                append_leaf(leaf)
            prev = digest
            if progress is not None and not expected & 1023:
                progress(expected)
    except (KeyError, TypeError, AttributeError, UnicodeError) as exc:
        raise LedgerIntegrityError(
            expected, "malformed_entry", f"row cannot be read: {type(exc).__name__} {exc}"
        ) from None
    if progress is not None:
        progress(expected)
    return expected, prev


@dataclass(frozen=True)
class _State:
    head: LedgerHead
    etag: str | None  # None: there is no head row yet


class _Request:
    """Entries one caller asked to append together, and their outcome."""

    __slots__ = ("items", "expect_size", "entries", "error", "done", "lead", "wake")

    def __init__(self, items: list[tuple[str, dict[str, Any], str]], expect_size: int | None) -> None:
        self.items = items
        self.expect_size = expect_size
        self.entries: list[LedgerEntry] = []
        self.error: BaseException | None = None
        self.done = False
        self.lead = False  # handed the leadership while it waited
        self.wake = threading.Event()

    def weight(self) -> int:
        return sum(2 * len(p) + 700 for _, _, p in self.items)  # JSON-escaped payload + columns


@dataclass
class _Attempt:
    """One transaction the leader sent: which entries it would have given to which request."""

    results: list[tuple[_Request, list[LedgerEntry]]]
    last_sequence: int
    last_hash: str


def _deliver(attempt: _Attempt, batch: list[_Request]) -> None:
    """Wake the requests a committed attempt holds, with their entries; drop them from ``batch``."""
    for request, entries in attempt.results:
        request.entries = entries
        request.done = True
        request.wake.set()
        if request in batch:
            batch.remove(request)


def _finish(requests: list[_Request], error: FabricError) -> None:
    """Wake every request in ``requests`` with ``error`` and empty the list."""
    for request in list(requests):
        request.error = error
        request.done = True
        request.wake.set()
    requests.clear()


def _expects_other_size(batch: list[_Request], state: _State) -> bool:
    """Whether a compare-and-append in ``batch`` expects a size other than ``state``'s."""
    return any(r.expect_size is not None and r.expect_size != state.head.size for r in batch)


@dataclass
class LedgerStats:
    """Counters for tests and benchmarks: committed transactions and entries, lost races."""

    transactions: int = 0
    entries: int = 0
    conflicts: int = 0
    largest_batch: int = 0


class Ledger:
    """One ledger stream in a table. Thread-safe; several processes may append at once."""

    def __init__(
        self, table: TableClient, stream: str = "registry", *, validate: bool = True, deadline: float = 15.0
    ) -> None:
        self.table = table
        self.stream = stream
        self.validate = validate
        self.deadline = deadline
        self.stats = LedgerStats()
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._leader = False
        self._state: _State | None = None

    # -- writing ------------------------------------------------------------------------------
    def append(self, kind: str, payload: dict[str, Any]) -> LedgerEntry:
        """Append one entry; returns it once the transaction holding it has committed."""
        return self.append_all([(kind, payload)])[0]

    def append_all(
        self, items: Sequence[tuple[str, dict[str, Any]]], *, expect_size: int | None = None
    ) -> list[LedgerEntry]:
        """Append several entries atomically, consecutively and in order (at most 99).

        With ``expect_size``, append only if the ledger then holds exactly that many entries,
        else raise :class:`Conflict`: a compare-and-append for decisions made on a known state.
        """
        if not 1 <= len(items) <= MAX_BATCH_ENTRIES:
            raise InvalidInput(f"append 1 to {MAX_BATCH_ENTRIES} entries at once, not {len(items)}", field="entries")
        request = _Request([self._prepare(kind, payload) for kind, payload in items], expect_size)
        return self._run(request)

    def _prepare(self, kind: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        if self.validate:
            validate_entry(kind, payload)
        elif not isinstance(kind, str) or not kind:
            raise InvalidInput("kind must be a non-empty string", field="kind")
        if not isinstance(payload, dict):
            raise InvalidInput("payload must be a JSON object", field="payload")
        text = canonical_json(payload).decode("utf-8")
        if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes of canonical JSON", field="payload")
        return kind, payload, text

    def _run(self, request: _Request) -> list[LedgerEntry]:
        with self._lock:
            self._queue.append(request)
            leading = not self._leader
            self._leader = True
        if not leading:
            request.wake.wait()  # done by another leader, or handed the leadership
            if request.done:
                return self._outcome(request)
        try:
            while not request.done:
                with self._lock:
                    batch = self._take([])
                try:
                    self._commit(batch)
                except BaseException as exc:  # never leave followers waiting on a crashed leader
                    _finish(batch, StorageError(f"ledger append failed: {type(exc).__name__}"))
                    raise
        finally:
            with self._lock:  # hand over to the oldest waiting caller, if any (no thundering herd)
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._leader = False
        return self._outcome(request)

    @staticmethod
    def _outcome(request: _Request) -> list[LedgerEntry]:
        if request.error is not None:
            raise request.error
        return request.entries

    def _take(self, batch: list[_Request]) -> list[_Request]:
        """Move queued requests into ``batch`` while they fit (call with the lock held)."""
        count = sum(len(r.items) for r in batch)
        weight = sum(r.weight() for r in batch)
        while self._queue:
            nxt = self._queue[0]
            if batch and (count + len(nxt.items) > MAX_BATCH_ENTRIES or weight + nxt.weight() > MAX_BATCH_BYTES):
                break
            self._queue.pop(0)
            batch.append(nxt)
            count += len(nxt.items)
            weight += nxt.weight()
        batch.sort(key=lambda r: r.expect_size is None)  # compare-and-append requests go first
        return batch

    def _commit(self, batch: list[_Request]) -> None:
        """Commit ``batch`` (retrying lost races); every request ends done, with entries or an error."""
        give_up = _time.monotonic() + self.deadline
        unresolved: list[_Attempt] = []
        races, reason = 0, ""
        while batch:
            if _time.monotonic() > give_up:
                detail = "its outcome is unknown" if unresolved else reason
                _finish(batch, StorageError(f"ledger append did not commit within {self.deadline:.0f}s: {detail}"))
                return
            try:
                if unresolved:
                    committed = self._resolve(unresolved)
                    if committed is not None:
                        _deliver(committed, batch)
                        unresolved.clear()
                        continue
                with self._lock:
                    self._take(batch)
                state = self._state
                if state is None or _expects_other_size(batch, state):
                    # the head this process last wrote is only a guess: other hosts append too, so a
                    # compare-and-append is refused only against the head as stored now
                    state = self._state = self._read_state()
            except StorageError as exc:
                reason = exc.detail
                _time.sleep(min(0.5, 0.02 * 2 ** min(races, 5)))
                races += 1
                continue
            attempt, operations = self._chain(batch, state)
            if attempt is None:
                continue  # every request in it was refused (compare-and-append)
            try:
                etags = tablewire.submit(self.table, operations)
            except tablewire.TransactionRejected as exc:
                self._state = None
                if exc.code not in CONFLICT_CODES:
                    _finish(batch, StorageError(f"ledger transaction refused: {exc.code} {exc.message[:200]}"))
                    return
                self.stats.conflicts += 1
                races += 1
                reason = "lost every race to other writers"
                _time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(races, 6))))
                continue
            except AzureError as exc:
                self._state = None
                unresolved.append(attempt)
                reason = f"storage unreachable ({type(exc).__name__})"
                _time.sleep(min(0.5, 0.02 * 2 ** min(races, 5)))
                races += 1
                continue
            entries = attempt.results[-1][1]
            last = entries[-1]
            self._state = _State(LedgerHead(last.sequence, last.entry_hash, last.time), etags[-1])
            self.stats.transactions += 1
            self.stats.entries += sum(len(e) for _, e in attempt.results)
            self.stats.largest_batch = max(self.stats.largest_batch, sum(len(e) for _, e in attempt.results))
            _deliver(attempt, batch)
            unresolved.clear()

    def _chain(self, batch: list[_Request], state: _State) -> tuple[_Attempt | None, list[Any]]:
        """Sequence and hash the batch on top of ``state``; refuse stale compare-and-appends."""
        size, prev, when = state.head.size, state.head.entry_hash, max(utc_now(), state.head.time)
        results: list[tuple[_Request, list[LedgerEntry]]] = []
        operations: list[Any] = []
        for request in list(batch):
            if request.expect_size is not None and request.expect_size != size:
                batch.remove(request)
                _finish(
                    [request],
                    Conflict(
                        f"the ledger moved on: it holds {size} entries, expected {request.expect_size}", field="ledger"
                    ),
                )
                continue
            entries = []
            for kind, payload, text in request.items:
                size += 1
                digest = hash_entry(entry_bytes(self.stream, size, kind, when, text, prev)).hex()
                entry = LedgerEntry(self.stream, size, kind, when, payload, prev, digest, text)
                entries.append(entry)
                operations.append(tablewire.Insert(entry_row(self.stream, entry)))
                prev = digest
            results.append((request, entries))
        if not results:
            return None, []
        head = {"PartitionKey": self.stream, "RowKey": HEAD_ROW, "size": size, "entry_hash": prev, "time": when}
        operations.append(tablewire.Insert(head) if state.etag is None else tablewire.Replace(head, state.etag))
        return _Attempt(results, size, prev), operations

    def _resolve(self, attempts: list[_Attempt]) -> _Attempt | None:
        """The attempt (sent, answer lost) that did commit, if any: read its last row back."""
        state = self._read_state()
        for attempt in attempts:
            if state.head.size >= attempt.last_sequence:
                with storage_errors("ledger storage"):
                    try:
                        row = self.table.get_entity(self.stream, row_key(attempt.last_sequence))
                    except ResourceNotFoundError:
                        continue
                if row.get("entry_hash") == attempt.last_hash:
                    return attempt
        return None

    def _read_state(self) -> _State:
        with storage_errors("ledger storage"):
            try:
                row = self.table.get_entity(self.stream, HEAD_ROW)
            except ResourceNotFoundError:
                return _State(LedgerHead(0, GENESIS_HASH), None)
        head = LedgerHead(int(row["size"]), str(row["entry_hash"]), str(row.get("time") or ""))
        return _State(head, row.metadata["etag"])

    # -- reading ------------------------------------------------------------------------------
    def head(self) -> LedgerHead:
        """The head row as stored now (not verified)."""
        return self._read_state().head

    def get(self, sequence: int) -> LedgerEntry:
        """One entry by sequence; :class:`NotFound` if absent. The entry is not verified."""
        with storage_errors("ledger storage"):
            try:
                row = self.table.get_entity(self.stream, row_key(sequence))
            except ResourceNotFoundError:
                raise NotFound(f"ledger {self.stream} has no entry {sequence}", field="sequence") from None
        return LedgerEntry.from_row(self.stream, row, sequence)

    def rows(self, start: int = 1, end: int | None = None) -> Iterator[dict[str, Any]]:
        """Raw stored rows from ``start`` to ``end`` (inclusive), in RowKey order, without the head."""
        high = row_key(end + 1) if end is not None else HEAD_ROW
        with storage_errors("ledger storage"):
            yield from tablewire.read_range(self.table, self.stream, row_key(start), high, select=ROW_COLUMNS)

    def entries(self, start: int = 1, end: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Raw rows as ``(row_key, row)`` pairs (see :meth:`rows`)."""
        for row in self.rows(start, end):
            yield row["RowKey"], row

    def read(self, start: int = 1, limit: int = 1000) -> list[LedgerEntry]:
        """Up to ``limit`` entries from ``start`` on, parsed but not verified."""
        return [
            LedgerEntry.from_row(self.stream, row, start + i)
            for i, row in enumerate(self.rows(start, start + limit - 1))
        ]

    def verify(
        self, progress: Callable[[int], None] | None = None, leaf_hashes: list[bytes] | None = None
    ) -> LedgerHead:
        """Walk the whole chain; return the head or raise :class:`LedgerIntegrityError` at the first bad
        entry (see :func:`verify_ledger`)."""
        return verify_ledger(self, progress, leaf_hashes)


def verify_ledger(
    ledger: Ledger, progress: Callable[[int], None] | None = None, leaf_hashes: list[bytes] | None = None
) -> LedgerHead:
    """Walk the whole chain of ``ledger``; return the head or raise :class:`LedgerIntegrityError` at the
    first bad entry.

    Detects modified rows (hash mismatch), deleted, reordered or inserted rows (sequence or
    ``prev_hash`` breaks) and a truncated tail (the head row disagrees). A consistently
    rewritten tail is what signed checkpoints catch (:mod:`shared.ledger.audit`). With
    ``leaf_hashes``, the entries' Merkle leaf hashes are appended to it.
    """
    size, last = walk_chain(ledger.rows(), ledger.stream, progress=progress, leaf_hashes=leaf_hashes)
    while True:  # rows and head commit together, so a head read after the walk covers every row seen
        head = ledger.head()
        more = list(ledger.rows(size + 1)) if head.size > size else []
        if not more:
            return check_head(head, size, last)
        size, last = walk_chain(more, ledger.stream, after=size, prev_hash=last, leaf_hashes=leaf_hashes)


def entry_row(stream: str, entry: LedgerEntry) -> dict[str, Any]:
    """The table row of ``entry`` in partition ``stream``."""
    return {
        "PartitionKey": stream,
        "RowKey": row_key(entry.sequence),
        "sequence": entry.sequence,
        "kind": entry.kind,
        "time": entry.time,
        "payload": entry.payload_json,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def check_head(head: LedgerHead, size: int, last_hash: str) -> LedgerHead:
    """Raise ``head_mismatch`` unless the head row names the last entry of a verified walk."""
    if head.size != size:
        raise LedgerIntegrityError(
            min(head.size, size) + 1, "head_mismatch", f"head says {head.size} entries, the table holds {size}"
        )
    if head.entry_hash != last_hash:
        raise LedgerIntegrityError(max(size, 1), "head_mismatch", "head hash does not match the last entry")
    return head
