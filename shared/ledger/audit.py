"""The full audit an outsider runs on a ledger stream, straight from storage.

:func:`audit` walks the whole hash chain (:meth:`shared.ledger.chain.Ledger.verify`), computes the
RFC 9162 Merkle root at the size of every stored checkpoint in the same pass, and checks each
checkpoint: signed by the pinned host key (``checkpoint_signature_invalid``), of a size the
ledger still holds (``checkpoint_ahead``: entries were lost or rolled back), with the root the
entries produce (``checkpoint_root_mismatch``: history was rewritten) and, for the newest, the
head hash. Because every checkpoint must match the one chain, all of them are pairwise
consistent. What the audit cannot see is a host that rewrote history *and* re-signed every
checkpoint with its own key: keep checkpoints you fetched earlier and check them with a
consistency proof (``cryptlet ledger consistency``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.errors import VerificationError
from shared.ledger.chain import Ledger, LedgerHead
from shared.ledger.checkpoint_store import CheckpointStore
from shared.ledger.checkpoints import Checkpoint, VerifierKey, open_checkpoint


@dataclass(frozen=True)
class AuditReport:
    """What an audit established."""

    head: LedgerHead
    checkpoints: int
    latest: Checkpoint | None
    key: VerifierKey | None
    pinned: bool

    def summary(self, stream: str) -> str:
        text = f"ledger {stream}: {self.head.size} entries verified; head {self.head.entry_hash}"
        if self.latest is None:
            return text + "; no checkpoints issued yet"
        pin = "pinned" if self.pinned else "NOT pinned: the key stored with the checkpoints was used"
        return (
            f"{text}; {self.checkpoints} checkpoint(s) verified, newest of {self.latest.size} entries at "
            f"{self.latest.time}; key {self.key} ({pin})"
        )


def roots_at(leaf_hashes: Sequence[bytes], sizes: set[int]) -> dict[int, bytes]:
    """RFC 9162 roots of the first ``n`` leaves for every ``n`` in ``sizes``, in one pass."""
    sha = hashlib.sha256
    stack: list[bytes] = []
    roots: dict[int, bytes] = {}
    if 0 in sizes:
        roots[0] = sha(b"").digest()
    count = 0
    for leaf in leaf_hashes:
        count += 1
        node, carry = leaf, count
        while not carry & 1:
            node = sha(b"\x01" + stack.pop() + node).digest()
            carry >>= 1
        stack.append(node)
        if count in sizes:
            root = stack[-1]
            for left in reversed(stack[:-1]):
                root = sha(b"\x01" + left + root).digest()
            roots[count] = root
    return roots


def _fail(reason: str, size: int, detail: str) -> VerificationError:
    return VerificationError(reason, f"checkpoint of size {size}: {detail}", size=size)


def audit(
    ledger: Ledger,
    store: CheckpointStore,
    key: VerifierKey | None = None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Verify the chain and every stored checkpoint; raise :class:`VerificationError` at the first problem."""
    stored = store.all()
    pinned = key is not None
    if key is None and stored:
        published = {s.public_key for s in stored}
        if len(published) != 1:
            raise _fail(
                "checkpoint_signature_invalid",
                stored[0].checkpoint.size,
                f"checkpoints name {len(published)} different keys; pin the host key",
            )
        key = VerifierKey.parse(published.pop())
    opened = []
    for item in stored:
        try:
            opened.append(open_checkpoint(item.note, key))  # type: ignore[arg-type]
        except VerificationError as exc:
            raise _fail(exc.reason, item.checkpoint.size, exc.detail) from None
    leaves: list[bytes] = []
    head = ledger.verify(progress, leaf_hashes=leaves)
    roots = roots_at(leaves, {c.size for c in opened if c.size <= head.size})
    for checkpoint in opened:
        if checkpoint.size > head.size:
            raise _fail(
                "checkpoint_ahead",
                checkpoint.size,
                f"the ledger holds only {head.size} entries: entries the host signed are gone",
            )
        if roots[checkpoint.size] != checkpoint.root:
            raise _fail(
                "checkpoint_root_mismatch",
                checkpoint.size,
                "its root is not the root of the stored entries (history was rewritten)",
            )
        if checkpoint.size == head.size and checkpoint.head != head.entry_hash:
            raise _fail("checkpoint_root_mismatch", checkpoint.size, "its head is not the ledger's head entry")
    latest = opened[-1] if opened else None
    return AuditReport(head, len(opened), latest, key, pinned)
