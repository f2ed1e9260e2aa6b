"""RFC 9162 (Certificate Transparency v2) Merkle trees over SHA-256.

The ledger uses this module for receipts: an :class:`InclusionProof` shows that an entry's
leaf hash is in the tree a signed root commits to, and a :class:`ConsistencyProof` shows
that an older root is a prefix of a newer one (the history was only appended to).

Hashing (RFC 9162 §2.1.1)::

    leaf_hash(d)   = SHA-256(0x00 || d)
    node_hash(l,r) = SHA-256(0x01 || l || r)
    MTH({})        = SHA-256("")

Proof generation follows the PATH / SUBPROOF definitions of §2.1.3.1 and §2.1.4.1 and
verification is the iterative algorithm of §2.1.3.2 and §2.1.4.2. Verification raises
:class:`~shared.errors.VerificationError` with one of the ``reason`` values
``bad_proof_shape`` (malformed input: wrong types, hash lengths, hex), ``inclusion_proof_invalid``
or ``consistency_proof_invalid``.

:class:`MerkleTree` keeps every complete level: ``level k`` holds the hashes of the aligned
perfect subtrees of ``2**k`` leaves. Appending is amortised O(1) hashes; any root, inclusion
proof or consistency proof, for the current or any earlier tree size, costs O(log n) list
look-ups plus O(log n) hashes for the right-edge (non-perfect) nodes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidInput, VerificationError

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "BAD_PROOF_SHAPE",
    "INCLUSION_PROOF_INVALID",
    "CONSISTENCY_PROOF_INVALID",
    "MerkleInputError",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_inclusion",
    "verify_consistency",
    "proof_to_hex",
    "proof_from_hex",
    "hash_from_hex",
    "MerkleTree",
    "InclusionProof",
    "ConsistencyProof",
]

HASH_SIZE = 32
"""Length in bytes of every hash (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1)."""

BAD_PROOF_SHAPE = "bad_proof_shape"
INCLUSION_PROOF_INVALID = "inclusion_proof_invalid"
CONSISTENCY_PROOF_INVALID = "consistency_proof_invalid"

_sha256 = hashlib.sha256
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


class MerkleInputError(InvalidInput, ValueError):
    """A caller asked a :class:`MerkleTree` something impossible (index or size out of range,
    a leaf hash that is not 32 bytes). Also a :class:`ValueError`."""

    code, title = "invalid_merkle_input", "Invalid Merkle tree input"


# --------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf (RFC 9162 §2.1.1)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MerkleInputError(f"leaf data must be bytes, not {type(data).__name__}")
    return _sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


def _tree_hash(value: object, what: str) -> bytes:
    """A caller-supplied 32-byte hash for tree building (MerkleInputError otherwise)."""
    if type(value) is not bytes:
        if not isinstance(value, (bytearray, memoryview)):
            raise MerkleInputError(f"{what} must be {HASH_SIZE} bytes, not {type(value).__name__}", field=what)
        value = bytes(value)
    if len(value) != HASH_SIZE:
        raise MerkleInputError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}", field=what)
    return value


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """MTH of the given leaf hashes (RFC 9162 §2.1.1), in one pass with O(log n) memory.

    The stack holds the roots of the perfect subtrees of the binary decomposition of the
    count so far; the final root folds them from the right, which is exactly the RFC's split
    at the largest power of two smaller than ``n``.
    """
    stack: list[bytes] = []
    count = 0
    for h in hashes:
        h = _tree_hash(h, "leaf_hash")
        count += 1
        carry = count
        while not carry & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            carry >>= 1
        stack.append(h)
    if not stack:
        return EMPTY_ROOT
    root = stack.pop()
    while stack:
        root = _sha256(b"\x01" + stack.pop() + root).digest()
    return root


# --------------------------------------------------------------------------- verification


def _shape_error(detail: str, field: str) -> VerificationError:
    return VerificationError(BAD_PROOF_SHAPE, detail, field=field)


def _proof_int(value: Any, field: str) -> int:
    if type(value) is not int:
        raise _shape_error(f"{field} must be an integer, not {type(value).__name__}", field)
    if value < 0:
        raise _shape_error(f"{field} must not be negative, got {value}", field)
    return value


def _proof_hash(value: object, field: str) -> bytes:
    if type(value) is not bytes:
        if not isinstance(value, (bytearray, memoryview)):
            raise _shape_error(f"{field} must be {HASH_SIZE} bytes, not {type(value).__name__}", field)
        value = bytes(value)
    if len(value) != HASH_SIZE:
        raise _shape_error(f"{field} must be {HASH_SIZE} bytes, got {len(value)}", field)
    return value


def _proof_path(proof: Any) -> list[bytes]:
    if isinstance(proof, (str, bytes, bytearray, memoryview)) or not isinstance(proof, Sequence):
        raise _shape_error(f"proof must be a list of hashes, not {type(proof).__name__}", "path")
    return [_proof_hash(p, f"path[{i}]") for i, p in enumerate(proof)]


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` leaves whose root
    is ``root``, using the algorithm of RFC 9162 §2.1.3.2. Returns ``None`` or raises
    :class:`VerificationError` (``bad_proof_shape`` or ``inclusion_proof_invalid``).

    ``tree_size`` and ``root`` must come from the same trusted (signed) tree head: the proof
    binds the leaf to the root, not to a size on its own.
    """
    leaf = _proof_hash(leaf_hash, "leaf_hash")
    index = _proof_int(index, "index")
    tree_size = _proof_int(tree_size, "tree_size")
    path = _proof_path(proof)
    root = _proof_hash(root, "root")
    if index >= tree_size:
        raise VerificationError(INCLUSION_PROOF_INVALID, f"leaf index {index} is not below the tree size {tree_size}")
    fn, sn = index, tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise VerificationError(
                INCLUSION_PROOF_INVALID,
                f"proof has more than the {_inclusion_length(index, tree_size)} hashes "
                f"leaf {index} of a tree of {tree_size} needs",
            )
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(
            INCLUSION_PROOF_INVALID,
            f"proof has {len(path)} hashes; leaf {index} of a tree of {tree_size} "
            f"needs {_inclusion_length(index, tree_size)}",
        )
    if not hmac.compare_digest(r, root):
        raise VerificationError(
            INCLUSION_PROOF_INVALID, f"proof for leaf {index} does not lead to the root of the tree of {tree_size}"
        )


def _inclusion_length(index: int, tree_size: int) -> int:
    """Number of hashes in an inclusion proof for ``index`` in a tree of ``tree_size``."""
    length, fn, sn = 0, index, tree_size - 1
    while sn > 0:
        if fn & 1 or fn == sn:
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
        length += 1
    return length


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``size1`` leaves with root ``root1`` is a prefix of the tree of
    ``size2`` leaves with root ``root2`` (RFC 9162 §2.1.4.2). Returns ``None`` or raises
    :class:`VerificationError` (``bad_proof_shape`` or ``consistency_proof_invalid``).

    Edge cases the RFC leaves to the verifier: ``size1 == size2`` needs an empty proof and
    equal roots; ``size1 == 0`` needs an empty proof and ``root1 == EMPTY_ROOT`` (stricter
    than ignoring ``root1``, so a forged "empty" head is caught).
    """
    size1 = _proof_int(size1, "size1")
    size2 = _proof_int(size2, "size2")
    root1 = _proof_hash(root1, "root1")
    root2 = _proof_hash(root2, "root2")
    path = _proof_path(proof)
    if size1 > size2:
        raise VerificationError(
            CONSISTENCY_PROOF_INVALID, f"size1 {size1} is larger than size2 {size2}: a log cannot shrink"
        )
    if size1 == size2:
        if path:
            raise VerificationError(
                CONSISTENCY_PROOF_INVALID, f"proof between equal sizes must be empty, has {len(path)} hashes"
            )
        if not hmac.compare_digest(root1, root2):
            raise VerificationError(CONSISTENCY_PROOF_INVALID, f"two different roots for the same tree size {size1}")
        return
    if size1 == 0:
        if path:
            raise VerificationError(
                CONSISTENCY_PROOF_INVALID, f"proof from the empty tree must be empty, has {len(path)} hashes"
            )
        if not hmac.compare_digest(root1, EMPTY_ROOT):
            raise VerificationError(CONSISTENCY_PROOF_INVALID, "root1 is not the root of the empty tree")
        return
    if not path:
        raise VerificationError(CONSISTENCY_PROOF_INVALID, f"empty proof between sizes {size1} and {size2}")
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is a node of tree 2
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(
                CONSISTENCY_PROOF_INVALID, f"proof between sizes {size1} and {size2} has too many hashes"
            )
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError(
            CONSISTENCY_PROOF_INVALID, f"proof between sizes {size1} and {size2} has too few hashes"
        )
    if not hmac.compare_digest(fr, root1):
        raise VerificationError(
            CONSISTENCY_PROOF_INVALID,
            f"proof does not lead to root1: the tree of {size1} is not a prefix "
            f"of the tree of {size2} (forked history?)",
        )
    if not hmac.compare_digest(sr, root2):
        raise VerificationError(CONSISTENCY_PROOF_INVALID, f"proof does not lead to root2 of the tree of {size2}")


# --------------------------------------------------------------------------- serialization


def proof_to_hex(path: Iterable[bytes]) -> list[str]:
    """A proof path as a list of lowercase hex strings (the JSON form)."""
    return [bytes(p).hex() for p in path]


def hash_from_hex(value: Any, field: str = "hash") -> bytes:
    """One 32-byte hash from exactly 64 lowercase hex digits (``bad_proof_shape`` otherwise)."""
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise _shape_error(f"{field} must be {2 * HASH_SIZE} lowercase hex digits", field)
    return bytes.fromhex(value)


def proof_from_hex(items: Any, field: str = "path") -> list[bytes]:
    """A proof path from its JSON form, a list of 64-digit lowercase hex strings."""
    if not isinstance(items, list):
        raise _shape_error(f"{field} must be a list of hex hashes, not {type(items).__name__}", field)
    return [hash_from_hex(item, f"{field}[{i}]") for i, item in enumerate(items)]


def _check_keys(data: Any, expected: tuple[str, ...], what: str) -> None:
    if not isinstance(data, Mapping):
        raise _shape_error(f"{what} must be an object, not {type(data).__name__}", what)
    missing = [k for k in expected if k not in data]
    if missing:
        raise _shape_error(f"{what} lacks {', '.join(missing)}", missing[0])
    unknown = sorted(str(k) for k in data if k not in expected)
    if unknown:
        raise _shape_error(f"{what} has unknown keys {', '.join(unknown)}", unknown[0])


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Proof that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", tuple(self.path))

    def verify(self, root: bytes) -> None:
        """Raise :class:`VerificationError` unless this proof leads to ``root`` (the root of the
        tree of ``tree_size`` leaves, from a trusted tree head)."""
        verify_inclusion(self.leaf_hash, self.index, self.tree_size, list(self.path), root)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": bytes(self.leaf_hash).hex(),
            "path": proof_to_hex(self.path),
        }

    @classmethod
    def from_dict(cls, data: Any) -> InclusionProof:
        """Parse the JSON form strictly (``bad_proof_shape`` on any deviation)."""
        _check_keys(data, ("index", "tree_size", "leaf_hash", "path"), "inclusion_proof")
        return cls(
            _proof_int(data["index"], "index"),
            _proof_int(data["tree_size"], "tree_size"),
            hash_from_hex(data["leaf_hash"], "leaf_hash"),
            tuple(proof_from_hex(data["path"])),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """Proof that the tree of ``size1`` leaves is a prefix of the tree of ``size2`` leaves."""

    size1: int
    size2: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", tuple(self.path))

    def verify(self, root1: bytes, root2: bytes) -> None:
        """Raise :class:`VerificationError` unless ``root1`` (size1) and ``root2`` (size2) are
        consistent through this proof."""
        verify_consistency(self.size1, self.size2, root1, root2, list(self.path))

    def to_dict(self) -> dict[str, Any]:
        return {"size1": self.size1, "size2": self.size2, "path": proof_to_hex(self.path)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsistencyProof:
        """Parse the JSON form strictly (``bad_proof_shape`` on any deviation)."""
        _check_keys(data, ("size1", "size2", "path"), "consistency_proof")
        return cls(
            _proof_int(data["size1"], "size1"), _proof_int(data["size2"], "size2"), tuple(proof_from_hex(data["path"]))
        )


# --------------------------------------------------------------------------- the tree


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 9162 tree of leaf hashes answering roots and proofs for any size.

    ``_levels[k][i]`` is the hash of the perfect subtree over leaves ``[i * 2**k, (i+1) * 2**k)``;
    only complete subtrees are stored, so every stored node is final. Appends are serialised
    by a lock and publish the new size only after all levels are updated, so readers may run
    concurrently with one writer (CPython list appends are atomic).
    """

    __slots__ = ("_levels", "_size", "_lock")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._size = 0
        self._lock = threading.Lock()
        self.extend(leaf_hashes)

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MerkleTree:
        """A tree over raw leaf data (each hashed with :func:`leaf_hash`)."""
        return cls(leaf_hash(d) for d in leaves)

    # ---- building

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf hash; return its index."""
        h = _tree_hash(leaf_hash, "leaf_hash")
        with self._lock:
            levels = self._levels
            index = len(levels[0])
            levels[0].append(h)
            count, k = index + 1, 0
            while not count & 1:
                lower = levels[k]
                h = _sha256(b"\x01" + lower[-2] + lower[-1]).digest()
                k += 1
                if k == len(levels):
                    levels.append([])
                levels[k].append(h)
                count >>= 1
            self._size = index + 1
            return index

    def append_data(self, data: bytes) -> int:
        """Add one leaf from its raw data; return its index."""
        return self.append(leaf_hash(data))

    def extend(self, leaf_hashes: Iterable[bytes]) -> range:
        """Add many leaf hashes at once (much faster than repeated :meth:`append`); return the
        range of their indices."""
        new = [_tree_hash(h, "leaf_hash") for h in leaf_hashes]
        with self._lock:
            levels = self._levels
            start = len(levels[0])
            if not new:
                return range(start, start)
            levels[0].extend(new)
            k = 0
            while True:
                lower = levels[k]
                done = 2 * len(levels[k + 1]) if k + 1 < len(levels) else 0
                end = len(lower) & ~1
                if end <= done:
                    break
                if k + 1 == len(levels):
                    levels.append([])
                lefts, rights = lower[done:end:2], lower[done + 1 : end : 2]
                levels[k + 1].extend([_sha256(b"\x01" + a + b).digest() for a, b in zip(lefts, rights, strict=False)])
                k += 1
            self._size = len(levels[0])
            return range(start, self._size)

    # ---- queries

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        size = self._size
        self._check_index(index, size)
        return self._levels[0][index]

    def _resolve_size(self, size: int | None, field: str = "size") -> int:
        current = self._size
        if size is None:
            return current
        if type(size) is not int or not 0 <= size <= current:
            raise MerkleInputError(f"{field} must be an integer in [0, {current}], got {size!r}", field=field)
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if type(index) is not int or not 0 <= index < size:
            raise MerkleInputError(f"index must be an integer in [0, {size}), got {index!r}", field="index")

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)`` for a node of an RFC 9162 tree (``start`` is a multiple
        of the largest power of two <= ``end - start``): the perfect blocks of the binary
        decomposition of ``end - start``, folded from the right."""
        levels = self._levels
        n = end - start
        top = n.bit_length() - 1
        if n == 1 << top:
            return levels[top][start >> top]
        blocks = []
        pos = start
        for k in range(top, -1, -1):
            if n >> k & 1:
                blocks.append(levels[k][pos >> k])
                pos += 1 << k
        r = blocks.pop()
        while blocks:
            r = _sha256(b"\x01" + blocks.pop() + r).digest()
        return r

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = self._resolve_size(size)
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf-to-root order."""
        size = self._resolve_size(size)
        self._check_index(index, size)
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._subtree(start + k, end))
                end = start + k
            else:
                path.append(self._subtree(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[0:size2]) of RFC 9162 §2.1.4.1 (empty when size1 is 0 or size2)."""
        size2 = self._resolve_size(size2, "size2")
        if type(size1) is not int or not 0 <= size1 <= size2:
            raise MerkleInputError(f"size1 must be an integer in [0, {size2}], got {size1!r}", field="size1")
        if size1 == 0 or size1 == size2:
            return []
        path: list[bytes] = []
        start, end, m, whole = 0, size2, size1, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                path.append(self._subtree(start + k, end))
                end = start + k
            else:
                path.append(self._subtree(start, start + k))
                start += k
                m -= k
                whole = False
        if not whole:
            path.append(self._subtree(start, end))
        path.reverse()
        return path

    def prove_inclusion(self, index: int, size: int | None = None) -> InclusionProof:
        """:meth:`inclusion_proof` wrapped with its parameters."""
        size = self._resolve_size(size)
        path = self.inclusion_proof(index, size)
        return InclusionProof(index, size, self._levels[0][index], tuple(path))

    def prove_consistency(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """:meth:`consistency_proof` wrapped with its parameters."""
        size2 = self._resolve_size(size2, "size2")
        return ConsistencyProof(size1, size2, tuple(self.consistency_proof(size1, size2)))
