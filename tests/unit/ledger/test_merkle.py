"""RFC 9162 Merkle tree: known answers, a naive reference from the RFC text, properties."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import FabricError, InvalidInput, VerificationError
from shared.ledger.merkle import (
    EMPTY_ROOT,
    ConsistencyProof,
    InclusionProof,
    MerkleInputError,
    MerkleTree,
    hash_from_hex,
    leaf_hash,
    node_hash,
    proof_from_hex,
    proof_to_hex,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# --------------------------------------------------------------------------- reference data
# The 8-leaf data set of the Certificate Transparency reference tests (also used by
# transparency-dev/merkle) with its published leaf hashes, roots and proofs.

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]

CT_LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]

CT_ROOTS = {  # tree size -> root
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

CT_INCLUSION_PROOFS = [  # (index, tree size, path)
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

CT_CONSISTENCY_PROOFS = [  # (size1, size2, path)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# --------------------------------------------------------------------------- naive reference
# Straight from the RFC 9162 definitions (§2.1.1 MTH, §2.1.3.1 PATH, §2.1.4.1 PROOF/SUBPROOF),
# recursive over Python lists and deliberately sharing no code with shared.ledger.merkle.


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(hashes: list[bytes]) -> bytes:
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = ref_k(n)
    return ref_node(ref_mth(hashes[:k]), ref_mth(hashes[k:]))


def ref_path(m: int, hashes: list[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return ref_path(m, hashes[:k]) + [ref_mth(hashes[k:])]
    return ref_path(m - k, hashes[k:]) + [ref_mth(hashes[:k])]


def ref_subproof(m: int, hashes: list[bytes], b: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if b else [ref_mth(hashes)]
    k = ref_k(n)
    if m <= k:
        return ref_subproof(m, hashes[:k], b) + [ref_mth(hashes[k:])]
    return ref_subproof(m - k, hashes[k:], False) + [ref_mth(hashes[:k])]


def ref_proof(m: int, hashes: list[bytes]) -> list[bytes]:
    return ref_subproof(m, hashes, True) if 0 < m < len(hashes) else []


def h(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str)


def flip(value: bytes, bit: int = 0) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


def rejects(reason: str, fn, *args) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        fn(*args)
    assert info.value.reason == reason, info.value.detail
    return info.value


# --------------------------------------------------------------------------- known answers


def test_leaf_and_node_hashing_match_the_ct_vectors() -> None:
    assert [leaf_hash(d).hex() for d in CT_LEAVES] == CT_LEAF_HASHES
    assert node_hash(leaf_hash(CT_LEAVES[0]), leaf_hash(CT_LEAVES[1])).hex() == CT_ROOTS[2]
    assert EMPTY_ROOT.hex() == CT_ROOTS[0] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("size", range(9))
def test_known_roots(size: int) -> None:
    hashes = [leaf_hash(d) for d in CT_LEAVES[:size]]
    expected = CT_ROOTS[size]
    assert root_from_leaf_hashes(hashes).hex() == expected
    assert MerkleTree(hashes).root().hex() == expected
    assert MerkleTree.from_leaves(CT_LEAVES).root(size).hex() == expected  # historical size
    assert ref_mth(hashes).hex() == expected


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION_PROOFS)
def test_known_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    assert proof_to_hex(tree.inclusion_proof(index, size)) == path
    assert proof_to_hex(ref_path(index, [leaf_hash(d) for d in CT_LEAVES[:size]])) == path
    verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, [h(p) for p in path], h(CT_ROOTS[size]))


@pytest.mark.parametrize(("size1", "size2", "path"), CT_CONSISTENCY_PROOFS)
def test_known_consistency_proofs(size1: int, size2: int, path: list[str]) -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    assert proof_to_hex(tree.consistency_proof(size1, size2)) == path
    assert proof_to_hex(ref_proof(size1, [leaf_hash(d) for d in CT_LEAVES[:size2]])) == path
    verify_consistency(size1, size2, h(CT_ROOTS[size1]), h(CT_ROOTS[size2]), [h(p) for p in path])


# The worked example of docs/merkle.md (the first four CT leaves).
DOC_EXAMPLE_INCLUSION = {
    "index": 2,
    "tree_size": 4,
    "leaf_hash": "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "path": [
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    ],
}
DOC_EXAMPLE_CONSISTENCY = {
    "size1": 3,
    "size2": 4,
    "path": [
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    ],
}


def test_worked_example_of_the_docs() -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES[:4])
    hashes = [tree.leaf(i) for i in range(4)]
    assert tree.prove_inclusion(2).to_dict() == DOC_EXAMPLE_INCLUSION
    assert tree.prove_consistency(3).to_dict() == DOC_EXAMPLE_CONSISTENCY
    assert proof_to_hex(ref_path(2, hashes)) == DOC_EXAMPLE_INCLUSION["path"]
    assert proof_to_hex(ref_proof(3, hashes)) == DOC_EXAMPLE_CONSISTENCY["path"]
    assert node_hash(hashes[2], hashes[3]).hex() == "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
    InclusionProof.from_dict(DOC_EXAMPLE_INCLUSION).verify(h(CT_ROOTS[4]))
    ConsistencyProof.from_dict(DOC_EXAMPLE_CONSISTENCY).verify(h(CT_ROOTS[3]), h(CT_ROOTS[4]))


# --------------------------------------------------------------------------- naive cross-check


def test_every_proof_of_every_small_size_matches_the_naive_reference() -> None:
    leaves = [leaf_hash(b"entry-%d" % i) for i in range(40)]
    tree = MerkleTree(leaves)
    for size2 in range(41):
        prefix = leaves[:size2]
        root2 = ref_mth(prefix)
        assert tree.root(size2) == root2
        for index in range(size2):
            path = tree.inclusion_proof(index, size2)
            assert path == ref_path(index, prefix)
            verify_inclusion(leaves[index], index, size2, path, root2)
        for size1 in range(size2 + 1):
            proof = tree.consistency_proof(size1, size2)
            assert proof == ref_proof(size1, prefix)
            verify_consistency(size1, size2, tree.root(size1), root2, proof)


def test_append_one_by_one_equals_extend_in_chunks() -> None:
    leaves = [leaf_hash(b"%d" % i) for i in range(1000)]
    one = MerkleTree()
    for i, leaf in enumerate(leaves):
        assert one.append(leaf) == i
    chunked = MerkleTree()
    rnd, pos = random.Random(7), 0
    while pos < len(leaves):
        step = rnd.randrange(0, 70)
        assert chunked.extend(leaves[pos : pos + step]) == range(pos, min(pos + step, len(leaves)))
        pos += step
    assert one._levels == chunked._levels == MerkleTree(leaves)._levels
    assert len(one) == one.size == 1000
    assert one.root() == root_from_leaf_hashes(leaves)
    data_tree = MerkleTree()
    assert data_tree.append_data(b"x") == 0
    assert data_tree.root() == leaf_hash(b"x")


# --------------------------------------------------------------------------- edge cases & shapes


def test_empty_tree() -> None:
    tree = MerkleTree()
    assert tree.root() == EMPTY_ROOT == root_from_leaf_hashes([])
    assert tree.consistency_proof(0) == []
    with pytest.raises(MerkleInputError):
        tree.inclusion_proof(0)
    rejects("inclusion_proof_invalid", verify_inclusion, leaf_hash(b""), 0, 0, [], EMPTY_ROOT)


def test_tree_rejects_impossible_queries() -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    for call in (
        lambda: tree.inclusion_proof(8),
        lambda: tree.inclusion_proof(-1),
        lambda: tree.inclusion_proof(3, 3),
        lambda: tree.root(9),
        lambda: tree.root(-1),
        lambda: tree.consistency_proof(5, 4),
        lambda: tree.consistency_proof(1, 9),
        lambda: tree.inclusion_proof(True),
        lambda: tree.leaf(8),
        lambda: tree.append(b"short"),
        lambda: tree.extend([leaf_hash(b"a"), "not bytes"]),
        lambda: leaf_hash("text"),
    ):
        with pytest.raises(MerkleInputError) as info:
            call()
        assert isinstance(info.value, InvalidInput) and isinstance(info.value, ValueError)
    assert tree.size == 8  # the failed extend added nothing


def test_single_leaf_tree() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    rejects("inclusion_proof_invalid", verify_inclusion, leaf, 0, 1, [], flip(leaf))
    rejects("inclusion_proof_invalid", verify_inclusion, leaf, 0, 1, [leaf], leaf)
    rejects("bad_proof_shape", verify_inclusion, b"", 0, 1, [], leaf)
    rejects("bad_proof_shape", verify_inclusion, leaf, 0, 1, [], b"")


def test_consistency_edge_cases() -> None:
    r1, r2 = leaf_hash(b"one"), leaf_hash(b"two")
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, r2, [])
    verify_consistency(1, 1, r1, r1, [])
    rejects("consistency_proof_invalid", verify_consistency, 0, 5, r1, r2, [])  # root1 is not the empty root
    rejects("consistency_proof_invalid", verify_consistency, 0, 5, EMPTY_ROOT, r2, [r1])
    rejects("consistency_proof_invalid", verify_consistency, 1, 1, r1, r2, [])
    rejects("consistency_proof_invalid", verify_consistency, 1, 1, r1, r1, [r1])
    rejects("consistency_proof_invalid", verify_consistency, 2, 1, r1, r2, [])
    rejects("consistency_proof_invalid", verify_consistency, 1, 2, r1, r2, [])


@pytest.mark.parametrize(
    "bad",
    [
        (True, 1),
        (1.0, 2),
        (-1, 2),
        ("0", 2),
        (0, None),
        (0, -3),
    ],
)
def test_bad_integer_shapes(bad: tuple) -> None:
    index, size = bad
    leaf = leaf_hash(b"x")
    rejects("bad_proof_shape", verify_inclusion, leaf, index, size, [], leaf)
    rejects("bad_proof_shape", verify_consistency, index, size, leaf, leaf, [])


@pytest.mark.parametrize("proof", ["abcd", b"\x00" * 32, None, [b"\x00" * 31], [b"\x00" * 33], ["00" * 32], 5])
def test_bad_proof_shapes(proof: object) -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    rejects("bad_proof_shape", verify_inclusion, tree.leaf(0), 0, 8, proof, tree.root())
    rejects("bad_proof_shape", verify_consistency, 3, 8, tree.root(3), tree.root(), proof)


def test_bytes_like_inputs_are_accepted() -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    path = [bytearray(p) for p in tree.inclusion_proof(3)]
    verify_inclusion(memoryview(tree.leaf(3)), 3, 8, tuple(path), bytearray(tree.root()))


def test_verification_error_is_a_fabric_problem() -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    err = rejects("inclusion_proof_invalid", verify_inclusion, tree.leaf(0), 1, 8, tree.inclusion_proof(0), tree.root())
    assert isinstance(err, FabricError)
    problem = err.problem()
    assert problem["status"] == 422 and problem["reason"] == "inclusion_proof_invalid"
    shape = rejects("bad_proof_shape", verify_inclusion, tree.leaf(0), 0, 8, [b"x"], tree.root())
    assert shape.field == "path[0]"


def test_size_is_bound_through_the_root_only() -> None:
    """RFC 9162 verification checks the proof's shape against tree_size, but two sizes can
    share a shape (index 0 of 3 and of 4 leaves): what binds the size is that the root comes
    from the same signed tree head. Presented with the genuine root of the claimed size, the
    proof fails."""
    tree = MerkleTree.from_leaves(CT_LEAVES)
    proof = tree.inclusion_proof(0, 3)
    verify_inclusion(tree.leaf(0), 0, 4, proof, tree.root(3))  # same shape, same (size-3) root
    rejects("inclusion_proof_invalid", verify_inclusion, tree.leaf(0), 0, 4, proof, tree.root(4))
    # a shape of the wrong length is refused even when the hashes would reach the given root:
    # a size-2 proof "reaching" the size-2 root must not pass as a statement about a size-4 tree,
    short = tree.inclusion_proof(0, 2)
    err = rejects("inclusion_proof_invalid", verify_inclusion, tree.leaf(0), 0, 4, short, tree.root(2))
    assert "needs 2" in err.detail
    # and a size-4 proof must not pass as one about a size-2 tree.
    long = tree.inclusion_proof(0, 4)
    err = rejects("inclusion_proof_invalid", verify_inclusion, tree.leaf(0), 0, 2, long, tree.root(4))
    assert "more than the 1" in err.detail
    # Same for consistency: the (7, 8) proof recomputes root7/root8 along the shape of (3, 4)
    # followed by one extra hash; the extra hash must be refused.
    err = rejects(
        "consistency_proof_invalid", verify_consistency, 3, 4, tree.root(7), tree.root(8), tree.consistency_proof(7, 8)
    )
    assert "too many" in err.detail


# --------------------------------------------------------------------------- serialization


def test_proof_json_round_trip() -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    inclusion = tree.prove_inclusion(5, 7)
    consistency = tree.prove_consistency(3, 7)
    for proof in (inclusion, consistency):
        text = json.dumps(proof.to_dict())
        again = type(proof).from_dict(json.loads(text))
        assert again == proof and hash(again) == hash(proof)
    inclusion.verify(tree.root(7))
    consistency.verify(tree.root(3), tree.root(7))
    assert inclusion.to_dict()["leaf_hash"] == CT_LEAF_HASHES[5]
    assert proof_from_hex(proof_to_hex(inclusion.path)) == list(inclusion.path)
    assert hash_from_hex(CT_ROOTS[8]) == h(CT_ROOTS[8])


def test_proof_dataclasses_are_frozen_and_verify_raises() -> None:
    tree = MerkleTree.from_leaves(CT_LEAVES)
    proof = tree.prove_inclusion(1)
    assert isinstance(proof.path, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        proof.index = 2  # type: ignore[misc]
    with pytest.raises(VerificationError):
        dataclasses.replace(proof, index=2).verify(tree.root())
    with pytest.raises(VerificationError):
        tree.prove_consistency(2).verify(tree.root(3), tree.root())
    assert InclusionProof(0, 1, tree.leaf(0), []).path == ()  # lists are normalised to tuples


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("path"),
        lambda d: d.update(extra=1),
        lambda d: d.update(index="2"),
        lambda d: d.update(index=True),
        lambda d: d.update(tree_size=-4),
        lambda d: d.update(leaf_hash=d["leaf_hash"].upper()),
        lambda d: d.update(leaf_hash=d["leaf_hash"][:-2]),
        lambda d: d.update(leaf_hash="zz" * 32),
        lambda d: d.update(path=tuple(d["path"])),
        lambda d: d.update(path=[d["path"][0] + "00"]),
        lambda d: d.update(path=[1]),
    ],
)
def test_inclusion_from_dict_is_strict(mutate) -> None:
    data = dict(DOC_EXAMPLE_INCLUSION, path=list(DOC_EXAMPLE_INCLUSION["path"]))
    mutate(data)
    rejects("bad_proof_shape", InclusionProof.from_dict, data)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"size1": 3, "size2": 4},
        {"size1": 3, "size2": 4, "path": "00"},
        {"size1": 3.0, "size2": 4, "path": []},
        {"size1": 3, "size2": 4, "path": [], "root": "00"},
    ],
)
def test_consistency_from_dict_is_strict(data) -> None:
    rejects("bad_proof_shape", ConsistencyProof.from_dict, data)


# --------------------------------------------------------------------------- properties


def distinct_leaves(n: int, salt: bytes) -> list[bytes]:
    return [salt + i.to_bytes(4, "big") for i in range(n)]


trees = st.tuples(st.integers(min_value=1, max_value=300), st.binary(max_size=8))
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(spec=trees, data=st.data())
def test_inclusion_proofs_verify_and_tampering_fails(spec, data) -> None:
    n, salt = spec
    leaves = [leaf_hash(d) for d in distinct_leaves(n, salt)]
    tree = MerkleTree(leaves)
    root = tree.root()
    assert root == root_from_leaf_hashes(leaves)
    for i in range(n):  # every proof at the full size verifies
        verify_inclusion(leaves[i], i, n, tree.inclusion_proof(i), root)

    i = data.draw(st.integers(0, n - 1), label="index")
    proof = tree.inclusion_proof(i)
    assert proof == ref_path(i, leaves)
    reason = "inclusion_proof_invalid"
    rejects(reason, verify_inclusion, leaf_hash(b"other"), i, n, proof, root)  # altered leaf
    rejects(reason, verify_inclusion, leaves[i], i, n, proof, flip(root, data.draw(st.integers(0, 7))))
    j = data.draw(st.integers(0, n).filter(lambda x: x != i), label="other index")
    rejects(reason, verify_inclusion, leaves[i], j, n, proof, root)
    # a different size, with the genuine root of that size (a real but different tree head)
    size = data.draw(st.integers(i + 1, n + 20).filter(lambda s: s != n), label="other size")
    bigger = MerkleTree(leaves + [leaf_hash(b"more-%d" % k) for k in range(20)])
    rejects(reason, verify_inclusion, leaves[i], i, size, proof, bigger.root(size))
    for k in range(len(proof)):  # any altered element
        bad = list(proof)
        bad[k] = flip(bad[k], data.draw(st.integers(0, 7)))
        rejects(reason, verify_inclusion, leaves[i], i, n, bad, root)
    if proof:
        rejects(reason, verify_inclusion, leaves[i], i, n, proof[:-1], root)
        rejects(reason, verify_inclusion, leaves[i], i, n, proof[1:], root)
    rejects(reason, verify_inclusion, leaves[i], i, n, proof + [root], root)
    rejects(reason, verify_inclusion, leaves[i], i, n, [root] + proof, root)


@PROPERTY_SETTINGS
@given(spec=trees, data=st.data())
def test_consistency_proofs_verify_and_tampering_fails(spec, data) -> None:
    n, salt = spec
    raw = distinct_leaves(n, salt)
    leaves = [leaf_hash(d) for d in raw]
    tree = MerkleTree(leaves)
    root2 = tree.root()
    for m in range(n + 1):  # every proof to the full size verifies
        verify_consistency(m, n, tree.root(m), root2, tree.consistency_proof(m))

    m2 = data.draw(st.integers(1, n), label="size2")
    m1 = data.draw(st.integers(0, m2), label="size1")
    proof = tree.consistency_proof(m1, m2)
    assert proof == ref_proof(m1, leaves[:m2])
    root_m1, root_m2 = tree.root(m1), tree.root(m2)
    assert root_m1 == ref_mth(leaves[:m1]) and root_m2 == ref_mth(leaves[:m2])
    verify_consistency(m1, m2, root_m1, root_m2, proof)
    if not 0 < m1 < m2:
        return
    reason = "consistency_proof_invalid"
    # forked history: the old head is from a tree that differs at some position < m1
    fork_at = data.draw(st.integers(0, m1 - 1), label="fork position")
    forked = MerkleTree(leaves[:fork_at] + [leaf_hash(b"forged")] + leaves[fork_at + 1 :])
    rejects(reason, verify_consistency, m1, m2, forked.root(m1), root_m2, proof)
    rejects(reason, verify_consistency, m1, m2, forked.root(m1), root_m2, forked.consistency_proof(m1, m2))
    # the new head rewrote an entry (fork at or after m1 only changes root2)
    late = data.draw(st.integers(m1, m2 - 1), label="late fork position")
    rewritten = MerkleTree(leaves[:late] + [leaf_hash(b"forged")] + leaves[late + 1 :])
    rejects(reason, verify_consistency, m1, m2, root_m1, rewritten.root(m2), proof)
    # altered roots
    rejects(reason, verify_consistency, m1, m2, flip(root_m1), root_m2, proof)
    rejects(reason, verify_consistency, m1, m2, root_m1, flip(root_m2), proof)
    rejects(reason, verify_consistency, m1, m2, root_m2, root_m1, proof)
    # other sizes, each with the genuine root of that size
    bigger = MerkleTree(leaves + [leaf_hash(b"more-%d" % k) for k in range(20)])
    other1 = data.draw(st.integers(0, m2).filter(lambda s: s != m1), label="other size1")
    rejects(reason, verify_consistency, other1, m2, bigger.root(other1), root_m2, proof)
    rejects(reason, verify_consistency, other1, m2, root_m1, root_m2, proof)
    other2 = data.draw(st.integers(m1, m2 + 20).filter(lambda s: s != m2), label="other size2")
    rejects(reason, verify_consistency, m1, other2, root_m1, bigger.root(other2), proof)
    # any altered, dropped or extra element
    for k in range(len(proof)):
        bad = list(proof)
        bad[k] = flip(bad[k], data.draw(st.integers(0, 7)))
        rejects(reason, verify_consistency, m1, m2, root_m1, root_m2, bad)
    rejects(reason, verify_consistency, m1, m2, root_m1, root_m2, proof[:-1])
    rejects(reason, verify_consistency, m1, m2, root_m1, root_m2, proof[1:])
    rejects(reason, verify_consistency, m1, m2, root_m1, root_m2, proof + [root_m2])
    rejects(reason, verify_consistency, m1, m2, root_m1, root_m2, [proof[0]] + proof)
    rejects(reason, verify_consistency, m1, m2, root_m1, root_m2, [root_m1] + proof)


@PROPERTY_SETTINGS
@given(n=st.integers(1, 300), data=st.data())
def test_historical_proofs_match_a_tree_of_that_size(n, data) -> None:
    leaves = [leaf_hash(b"%d" % i) for i in range(n)]
    big = MerkleTree(leaves)
    size = data.draw(st.integers(1, n), label="size")
    small = MerkleTree(leaves[:size])
    index = data.draw(st.integers(0, size - 1), label="index")
    size1 = data.draw(st.integers(0, size), label="size1")
    assert big.root(size) == small.root()
    assert big.inclusion_proof(index, size) == small.inclusion_proof(index)
    assert big.consistency_proof(size1, size) == small.consistency_proof(size1)
    big.prove_inclusion(index, size).verify(small.root())
    big.prove_consistency(size1, size).verify(big.root(size1), small.root())


# --------------------------------------------------------------------------- scale


def test_hundred_thousand_leaves_build_and_prove() -> None:
    n = 100_000
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
    tree = MerkleTree()
    tree.extend(leaves[: n // 2])
    for leaf in leaves[n // 2 : n // 2 + 1000]:
        tree.append(leaf)
    tree.extend(leaves[n // 2 + 1000 :])
    assert tree.size == n
    root = tree.root()
    assert root == root_from_leaf_hashes(leaves)
    rnd = random.Random(2024)
    for _ in range(200):
        index = rnd.randrange(n)
        tree.prove_inclusion(index).verify(root)
        size = rnd.randrange(index + 1, n + 1)
        verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), tree.root(size))
        size1 = rnd.randrange(0, size + 1)
        tree.prove_consistency(size1, size).verify(tree.root(size1), tree.root(size))
        tree.prove_consistency(size1).verify(tree.root(size1), root)
    assert tree.root(65_536) == root_from_leaf_hashes(leaves[:65_536])
