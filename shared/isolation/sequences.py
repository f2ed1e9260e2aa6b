"""Envelope sequence numbers: strictly increasing per signing key, and never handed out twice, by
any of the hosts that share one storage account.

A host **leases a range** of numbers per signing key from one row of the catalog table
(``PartitionKey="sequence"``, ``RowKey`` = the key's address in lowercase, ``next`` = the first
number no range holds yet, as decimal text) and hands out blocks from that range in memory, so an
invocation touches storage only when its host's range is used up or older than
:data:`RANGE_AGE_S`. A lease is an optimistic-concurrency write:

    start = max(stored next, now in microseconds);  write next = start + size  (if the ETag is unchanged)

The ETag condition (or, for a signer's first range, an insert that fails if the row exists) makes
the leases of one key a total order in which every range starts at or above the end of the one
before it: the ranges are pairwise disjoint, and each host hands out every number of its ranges
at most once (under a lock). So two hosts never sign one sequence with one key. A host's ranges,
and so the blocks it hands a region, strictly increase, which is what regions check. Starting at
the time in microseconds keeps numbers rising across restarts and close to time order across hosts
(a range is abandoned after :data:`RANGE_AGE_S`); unused numbers of an abandoned range are gaps,
which the format allows (``docs/envelope.md``). The row is never deleted: a retired cryptlet's
keys are never used again, and a new key is a new row.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.clock import now_us
from shared.errors import InvalidInput, StorageError
from shared.storage import storage_errors

PARTITION = "sequence"
RANGE_SIZE = 1 << 16
"""Numbers one lease reserves: about 3,800 invocations of 17 numbers each."""
RANGE_AGE_S = 1.0
"""A range older than this is abandoned at its next use, so numbers track time across hosts."""
MAX_RACES = 32
"""Lease attempts lost to other hosts before giving up (503, retryable)."""


class SequenceSource(Protocol):
    """Where an invocation gets the sequence numbers of its envelopes."""

    def next(self, signer: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive numbers for key ``signer``; return the first."""
        ...


@dataclass
class _Range:
    """The numbers this host holds for one key: ``[next, end)``; ``etag`` and ``end`` as last written."""

    next: int = 0
    end: int = 0
    leased_at: float = float("-inf")
    etag: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class SequenceLeases:
    """Sequence numbers per signing key from ranges leased in a table (see the module docstring)."""

    def __init__(self, table: TableClient, *, range_size: int = RANGE_SIZE, max_age_s: float = RANGE_AGE_S) -> None:
        self.table = table
        self.range_size = range_size
        self.max_age_s = max_age_s
        self.leases = 0  # ranges this process leased (tests, benchmarks)
        self.races = 0  # lease writes lost to another host
        self._ranges: dict[str, _Range] = {}
        self._lock = threading.Lock()

    def next(self, signer: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive numbers for key ``signer``; return the first."""
        if count < 1:
            raise InvalidInput("count must be at least 1", field="count")
        key = signer.lower()
        with self._lock:
            held = self._ranges.get(key)
            if held is None:
                held = self._ranges[key] = _Range()
        with held.lock:
            if held.next + count > held.end or time.monotonic() - held.leased_at > self.max_age_s:
                self._lease(key, held, max(self.range_size, count))
            first = held.next
            held.next += count
            return first

    def _lease(self, key: str, held: _Range, size: int) -> None:
        """Replace ``held`` by a fresh range of ``size`` numbers (call with ``held.lock``)."""
        stored, etag = held.end, held.etag  # a guess: right unless another host leased since
        for race in range(MAX_RACES):
            start = max(stored, now_us())
            row = {"PartitionKey": PARTITION, "RowKey": key, "next": str(start + size)}
            with storage_errors("sequence ranges"):
                try:
                    if etag is None:
                        metadata = self.table.create_entity(row)
                    else:
                        metadata = self.table.update_entity(
                            row, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                        )
                except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                    self.races += 1
                    if race:  # the first miss is usually just a stale guess: read at once
                        time.sleep(random.uniform(0, min(0.05, 0.001 * 2**race)))
                    stored, etag = self._read(key)
                    continue
            held.next, held.end, held.etag = start, start + size, str(metadata["etag"])
            held.leased_at = time.monotonic()
            self.leases += 1
            return
        raise StorageError(f"sequence range of {key} kept changing under other hosts; retry")

    def _read(self, key: str) -> tuple[int, str | None]:
        """The stored ``next`` of ``key`` and its ETag (``(0, None)`` before its first lease)."""
        with storage_errors("sequence ranges"):
            try:
                row = self.table.get_entity(PARTITION, key)
            except ResourceNotFoundError:
                return 0, None
        return int(row["next"]), str(row.metadata["etag"])
