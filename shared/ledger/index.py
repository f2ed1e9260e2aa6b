"""The host's verified, in-memory view of one ledger stream: its Merkle tree and key history.

:meth:`LedgerIndex.sync` reads only the rows appended since the last call, checks that they
extend the chain it already verified (so a rewritten or rolled-back ledger is refused, never
indexed) and adds their leaf hashes to a :class:`~shared.ledger.merkle.MerkleTree` and their key events
to a :class:`~shared.keys.history.KeyHistory`. On top of that it signs and stores checkpoints,
and builds receipts and consistency proofs in O(log n) once warm. A cold index reads the
whole stream once (about 30,000 rows/s from Azurite).

Every stored checkpoint it serves is first checked against its own tree: a checkpoint not
signed by this host's key, or whose root differs from the tree's at that size, is an integrity
failure, not something to hand out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from shared.clock import utc_now
from shared.errors import InvalidInput, LedgerIntegrityError, NotFound
from shared.keys.history import KEY_EVENTS, KeyHistory, KeyRecord
from shared.ledger.chain import GENESIS_HASH, Ledger, LedgerEntry, LedgerHead, walk_chain
from shared.ledger.checkpoint_store import CheckpointStore, StoredCheckpoint
from shared.ledger.checkpoints import Checkpoint, CheckpointSigner, open_checkpoint
from shared.ledger.merkle import MerkleTree
from shared.ledger.receipts import Consistency, Receipt

T = TypeVar("T")


class LedgerIndex:
    """Merkle tree + key history of one stream, kept in step with storage on demand."""

    def __init__(self, ledger: Ledger, store: CheckpointStore, signer: CheckpointSigner) -> None:
        self.ledger = ledger
        self.store = store
        self.signer = signer
        self._tree = MerkleTree()
        self._last_hash = GENESIS_HASH
        self._keys = KeyHistory()
        self._latest: StoredCheckpoint | None = None  # newest checkpoint this index has checked
        self._lock = threading.RLock()

    @property
    def size(self) -> int:
        return self._tree.size

    def sync(self) -> LedgerHead:
        """Catch up with storage; raise :class:`LedgerIntegrityError` if it no longer extends what was indexed."""
        with self._lock:
            head = self.ledger.head()
            size = self._tree.size
            if head.size < size:
                raise LedgerIntegrityError(
                    head.size + 1, "ledger_shrank", f"storage holds {head.size} entries, {size} were already verified"
                )
            if head.size == size:
                if head.entry_hash != self._last_hash:
                    raise LedgerIntegrityError(
                        max(size, 1), "head_mismatch", "the head no longer names the entry that was verified"
                    )
                return head
            rows = list(self.ledger.rows(size + 1, head.size))
            leaves: list[bytes] = []
            new_size, last = walk_chain(
                rows, self.ledger.stream, after=size, prev_hash=self._last_hash, leaf_hashes=leaves
            )
            if new_size != head.size:
                raise LedgerIntegrityError(
                    new_size + 1, "missing_entry", f"the head says {head.size} entries, the table holds {new_size}"
                )
            if last != head.entry_hash:
                raise LedgerIntegrityError(new_size, "head_mismatch", "head hash does not match the last entry")
            for offset, row in enumerate(rows):
                if row["kind"] in KEY_EVENTS:
                    self._keys.apply(LedgerEntry.from_row(self.ledger.stream, row, size + 1 + offset))
            self._tree.extend(leaves)
            self._last_hash = last
            return head

    # -- checkpoints ----------------------------------------------------------------------------
    @property
    def public_key(self) -> str:
        return str(self.signer.verifier)

    def checkpoint(self) -> tuple[StoredCheckpoint, bool]:
        """A checkpoint of the current head, signed and stored now unless one exists; ``(it, created)``."""
        with self._lock:
            head = self.sync()
            latest = self.latest()
            if latest is not None and latest.checkpoint.size >= head.size:
                return latest, False
            body = Checkpoint(
                self.signer.verifier.name, head.size, self._tree.root(head.size), utc_now(), head.entry_hash
            )
            stored = self.store.put(self.signer.sign(body), self.public_key)
            return self._checked(stored), stored.checkpoint == body

    def latest(self) -> StoredCheckpoint | None:
        """The newest stored checkpoint, checked against this host's key and tree."""
        stored = self.store.latest()
        return self._checked(stored) if stored is not None else None

    def _remember(self, stored: StoredCheckpoint) -> StoredCheckpoint:
        if self._latest is None or stored.checkpoint.size > self._latest.checkpoint.size:
            self._latest = stored
        return stored

    def at(self, size: int) -> StoredCheckpoint:
        return self._checked(self.store.at(size))

    def _checked(self, stored: StoredCheckpoint) -> StoredCheckpoint:
        checkpoint = open_checkpoint(stored.note, self.signer.verifier)
        with self._lock:
            if checkpoint.size > self._tree.size:
                self.sync()
            if checkpoint.size > self._tree.size:
                raise LedgerIntegrityError(
                    self._tree.size + 1,
                    "checkpoint_ahead",
                    f"a checkpoint of {checkpoint.size} entries was signed, storage holds {self._tree.size}",
                )
        if checkpoint.root != self._tree.root(checkpoint.size):
            raise LedgerIntegrityError(
                checkpoint.size,
                "checkpoint_root_mismatch",
                "a stored checkpoint's root differs from the verified entries'",
            )
        return self._remember(stored)

    # -- proofs --------------------------------------------------------------------------------
    def receipt(self, sequence: int) -> Receipt:
        """Entry ``sequence`` with its inclusion proof in the newest checkpoint (signed now if needed)."""
        if sequence < 1:
            raise InvalidInput("sequence must be at least 1", field="sequence")
        latest = self._latest  # any checked checkpoint that covers the entry makes a valid receipt
        if latest is None or latest.checkpoint.size < sequence:
            latest = self.latest()
        if latest is None or latest.checkpoint.size < sequence:
            latest, _ = self.checkpoint()
        if sequence > latest.checkpoint.size:
            raise NotFound(f"ledger {self.ledger.stream} has no entry {sequence}", field="sequence")
        entry = self.ledger.get(sequence)
        if entry.computed_hash() != self._tree.leaf(sequence - 1).hex():
            raise LedgerIntegrityError(
                sequence, "entry_hash_mismatch", "the stored entry changed after it was verified"
            )
        return Receipt(entry, self._tree.prove_inclusion(sequence - 1, latest.checkpoint.size), latest.note)

    def consistency(self, size1: int, size2: int | None = None) -> Consistency:
        """Proof that the tree of ``size1`` is a prefix of the tree of ``size2`` (default: the newest checkpoint)."""
        if size2 is None:
            latest = self.latest() or self.checkpoint()[0]
            size2 = latest.checkpoint.size
        if not 0 <= size1 <= size2:
            raise InvalidInput(f"sizes must satisfy 0 <= from <= to, got {size1} and {size2}", field="from")
        if size2 > self._tree.size:
            self.sync()
        if size2 > self._tree.size:
            raise NotFound(f"the ledger has only {self._tree.size} entries", field="to")
        return Consistency(self._tree.prove_consistency(size1, size2), self._note_at(size1), self._note_at(size2))

    def _note_at(self, size: int) -> str | None:
        try:
            return self.at(size).note
        except NotFound:
            return None

    # -- keys ----------------------------------------------------------------------------------
    def keys(self) -> KeyHistory:
        """The key history, synced first."""
        self.sync()
        return self._keys

    def decide(self, decision: Callable[[KeyHistory], T]) -> tuple[T, int]:
        """``decision`` made on the key history synced now, and the ledger size it saw.

        The pair is taken under the index's lock, so the size is exactly the point the decision was
        made at: what a compare-and-append (``Ledger.append_all(expect_size=...)``) needs. ``decision``
        must only read the history.
        """
        with self._lock:
            self.sync()
            return decision(self._keys), self._tree.size

    def key_entries(self, record: KeyRecord) -> list[LedgerEntry]:
        """The ledger entries a key record was built from (to let a client replay and check them)."""
        return [self.ledger.get(sequence) for sequence in record.sequences()]
