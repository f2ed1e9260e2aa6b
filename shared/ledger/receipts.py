"""Offline proofs about the ledger: receipts (inclusion) and consistency between checkpoints.

Nothing here does I/O: given the documents and a pinned :class:`~shared.ledger.checkpoints.VerifierKey`,
anyone can check them. A *receipt* is one entry, its RFC 9162 inclusion proof and the signed
checkpoint the proof leads to; a *consistency proof* shows that a checkpoint's tree is a prefix
of a later one's, i.e. that the ledger was only appended to in between.

Failures raise :class:`~shared.errors.VerificationError` with reason ``checkpoint_malformed``,
``checkpoint_signature_invalid``, ``entry_hash_mismatch``, ``receipt_mismatch`` (the proof is
about another entry, index, size or stream), ``inclusion_proof_invalid``,
``consistency_proof_invalid`` or ``bad_proof_shape``. JSON shapes: ``docs/ledger.md``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput, VerificationError
from shared.ledger.chain import LedgerEntry
from shared.ledger.checkpoints import Checkpoint, VerifierKey, open_checkpoint
from shared.ledger.merkle import ConsistencyProof, InclusionProof, leaf_hash

RECEIPT_VERSION = 1


def _mismatch(detail: str) -> VerificationError:
    return VerificationError("receipt_mismatch", detail)


@dataclass(frozen=True)
class Receipt:
    """Proof that ``entry`` is entry ``entry.sequence`` of the ledger a signed checkpoint commits to."""

    entry: LedgerEntry
    proof: InclusionProof
    checkpoint: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECEIPT_VERSION,
            "entry": self.entry.to_dict(),
            "inclusion_proof": self.proof.to_dict(),
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Receipt:
        if not isinstance(data, dict):
            raise InvalidInput("a receipt is a JSON object", field="$")
        if data.get("version") != RECEIPT_VERSION:
            raise InvalidInput(f"unsupported receipt version {data.get('version')!r}", field="version")
        if not isinstance(data.get("checkpoint"), str):
            raise InvalidInput("receipt checkpoint must be the signed note text", field="checkpoint")
        return cls(
            LedgerEntry.from_dict(data.get("entry")),
            InclusionProof.from_dict(data.get("inclusion_proof")),
            data["checkpoint"],
        )

    def verify(self, key: VerifierKey) -> Checkpoint:
        """Check the receipt against the pinned host key; return the checkpoint it is anchored in."""
        checkpoint = open_checkpoint(self.checkpoint, key)
        entry = self.entry
        if checkpoint.stream != entry.stream:
            raise _mismatch(f"the checkpoint is for stream {checkpoint.stream!r}, the entry for {entry.stream!r}")
        leaf = leaf_hash(entry.leaf_data())  # recomputed from the entry: the proof's own copy is not trusted
        if leaf.hex() != entry.entry_hash:  # an entry's hash is its RFC 9162 leaf hash
            raise VerificationError("entry_hash_mismatch", f"ledger entry {entry.sequence} does not match its hash")
        if not hmac.compare_digest(leaf, self.proof.leaf_hash):
            raise _mismatch(f"the proof is for another entry than ledger entry {entry.sequence}")
        if self.proof.index != entry.sequence - 1:
            raise _mismatch(
                f"the proof is for leaf {self.proof.index}, entry {entry.sequence} is leaf {entry.sequence - 1}"
            )
        if self.proof.tree_size != checkpoint.size:
            raise _mismatch(f"the proof is for a tree of {self.proof.tree_size}, the checkpoint of {checkpoint.size}")
        self.proof.verify(checkpoint.root)
        if entry.sequence == checkpoint.size and entry.entry_hash != checkpoint.head:
            raise _mismatch("the checkpoint's head is not this entry")
        return checkpoint


@dataclass(frozen=True)
class Consistency:
    """A consistency proof between two sizes, with the signed checkpoints of both when known."""

    proof: ConsistencyProof
    old: str | None = None
    new: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.proof.to_dict(), "checkpoint1": self.old, "checkpoint2": self.new}

    @classmethod
    def from_dict(cls, data: Any) -> Consistency:
        if not isinstance(data, dict):
            raise InvalidInput("a consistency proof is a JSON object", field="$")
        proof = ConsistencyProof.from_dict({k: data.get(k) for k in ("size1", "size2", "path")})
        old, new = data.get("checkpoint1"), data.get("checkpoint2")
        return cls(proof, old if isinstance(old, str) else None, new if isinstance(new, str) else None)

    def verify(self, key: VerifierKey, old: str | None = None, new: str | None = None) -> tuple[Checkpoint, Checkpoint]:
        """Check that checkpoint ``old`` (default: the one carried) is a prefix of ``new``.

        Pass the checkpoint you kept from earlier as ``old``: a host that forked or rewrote its
        history cannot produce a proof from it to any checkpoint it signs later.
        """
        old_note, new_note = old or self.old, new or self.new
        if old_note is None or new_note is None:
            raise InvalidInput("both checkpoints are needed to check consistency", field="checkpoint1")
        first, second = open_checkpoint(old_note, key), open_checkpoint(new_note, key)
        if first.origin != second.origin:
            raise _mismatch(f"checkpoints of two logs: {first.origin} and {second.origin}")
        if (self.proof.size1, self.proof.size2) != (first.size, second.size):
            raise _mismatch(
                f"the proof is between sizes {self.proof.size1} and {self.proof.size2}, the checkpoints "
                f"have {first.size} and {second.size}"
            )
        self.proof.verify(first.root, second.root)
        if first.size == second.size and first.head != second.head:
            raise VerificationError("consistency_proof_invalid", "two checkpoints of one size name different heads")
        return first, second
