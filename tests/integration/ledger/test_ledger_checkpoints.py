"""Signed checkpoints, receipts and consistency proofs: formats, vectors, and what they catch."""

from __future__ import annotations

import json

import pytest
from azure.data.tables import UpdateMode

from shared.errors import LedgerIntegrityError, VerificationError
from shared.ledger.audit import audit
from shared.ledger.chain import HEAD_ROW, Ledger, LedgerEntry, row_key
from shared.ledger.checkpoint_store import CheckpointStore
from shared.ledger.checkpoints import Checkpoint, VerifierKey, open_checkpoint
from shared.ledger.index import LedgerIndex
from shared.ledger.receipts import Consistency, Receipt
from shared.storage import table_client
from tests.unit.ledger.test_checkpoints import ORIGIN, OTHER, SIGNER, VECTOR_KEY  # the vectors' keys


# -- on a real ledger ----------------------------------------------------------------------------
def _fill(ledger: Ledger, start: int, count: int, tag: str = "a") -> None:
    ledger.append_all(
        [("policy.set", {"scope": "fabric", "policy": {"n": n, "tag": tag}}) for n in range(start, start + count)]
    )


@pytest.fixture
def world(storage, unique_name):
    table = table_client(storage, unique_name)
    ledger = Ledger(table)
    index = LedgerIndex(ledger, CheckpointStore(table, "registry"), SIGNER)
    _fill(ledger, 1, 10)
    yield ledger, index
    table.delete_table()


def test_receipts_of_every_entry_verify_offline(world):
    ledger, index = world
    stored, created = index.checkpoint()
    assert created and stored.checkpoint.size == 10
    assert index.checkpoint() == (stored, False)  # nothing new: the same checkpoint
    for sequence in range(1, 11):
        document = json.loads(json.dumps(index.receipt(sequence).to_dict()))  # through JSON, as a client has it
        checkpoint = Receipt.from_dict(document).verify(VerifierKey.parse(VECTOR_KEY))
        assert checkpoint.size == 10


def test_a_receipt_for_a_fresh_entry_signs_a_new_checkpoint(world):
    ledger, index = world
    index.checkpoint()
    _fill(ledger, 11, 1)
    receipt = index.receipt(11)
    assert receipt.verify(SIGNER.verifier).size == 11
    assert index.latest().checkpoint.size == 11


def _tampered(receipt: Receipt, change) -> dict:
    document = json.loads(json.dumps(receipt.to_dict()))
    change(document)
    return document


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d["entry"]["payload"]["policy"].update(n=99), "entry_hash_mismatch"),
        (
            lambda d: d["inclusion_proof"].update(path=list(reversed(d["inclusion_proof"]["path"]))),
            "inclusion_proof_invalid",
        ),
        (lambda d: d["inclusion_proof"].update(index=d["inclusion_proof"]["index"] + 1), "receipt_mismatch"),
        (lambda d: d["inclusion_proof"].update(tree_size=9), "receipt_mismatch"),
        (lambda d: d.update(checkpoint=d["checkpoint"].replace("\n10\n", "\n11\n")), "checkpoint_signature_invalid"),
    ],
)
def test_tampered_receipts_fail(world, change, reason):
    _, index = world
    receipt = index.receipt(4)
    with pytest.raises(VerificationError) as caught:
        Receipt.from_dict(_tampered(receipt, change)).verify(SIGNER.verifier)
    assert caught.value.reason == reason


def test_a_receipt_fails_for_a_wrong_entry(world):
    ledger, index = world
    receipt = index.receipt(4)
    wrong = Receipt(ledger.get(5), receipt.proof, receipt.checkpoint)
    with pytest.raises(VerificationError) as caught:
        wrong.verify(SIGNER.verifier)
    assert caught.value.reason == "receipt_mismatch"
    with pytest.raises(VerificationError) as caught:  # a receipt checked with another host's key
        receipt.verify(OTHER.verifier)
    assert caught.value.reason == "checkpoint_signature_invalid"


def test_consistency_proofs_verify_between_checkpoints(world):
    ledger, index = world
    old, _ = index.checkpoint()
    _fill(ledger, 11, 7)
    new, _ = index.checkpoint()
    proof = Consistency.from_dict(json.loads(json.dumps(index.consistency(10).to_dict())))
    first, second = proof.verify(SIGNER.verifier, old.note)
    assert (first.size, second.size) == (10, 17)
    assert index.consistency(10, 10).verify(SIGNER.verifier)[0].size == 10


def test_consistency_fails_for_a_forked_history(world, storage, unique_name):
    ledger, index = world
    old, _ = index.checkpoint()  # an auditor kept this checkpoint of 10 entries
    fork_table = table_client(storage, unique_name + "fork")
    fork = Ledger(fork_table)
    for entry in ledger.read(1, 6):  # same first 6 entries (same bytes), then a different history
        fork.table.upsert_entity(ledger.table.get_entity("registry", row_key(entry.sequence)))
    fork.table.upsert_entity(
        {**ledger.table.get_entity("registry", HEAD_ROW), "size": 6, "entry_hash": ledger.get(6).entry_hash},
        mode=UpdateMode.REPLACE,
    )
    _fill(fork, 100, 9, tag="fork")
    forked = LedgerIndex(fork, CheckpointStore(fork_table, "registry"), SIGNER)  # the same host key signs it
    forked.checkpoint()
    proof = forked.consistency(10)
    with pytest.raises(VerificationError) as caught:
        proof.verify(SIGNER.verifier, old.note)
    assert caught.value.reason == "consistency_proof_invalid"
    assert open_checkpoint(proof.new, SIGNER.verifier).size == 15  # validly signed: only the proof shows the fork
    fork_table.delete_table()


def test_audit_checks_the_chain_and_every_checkpoint(world):
    ledger, index = world
    index.checkpoint()
    _fill(ledger, 11, 3)
    index.checkpoint()
    report = audit(ledger, index.store, SIGNER.verifier)
    assert (report.head.size, report.checkpoints, report.latest.size, report.pinned) == (13, 2, 13, True)
    unpinned = audit(ledger, index.store)
    assert not unpinned.pinned and str(unpinned.key) == VECTOR_KEY


def test_a_forged_checkpoint_row_is_detected(world):
    ledger, index = world
    index.checkpoint()
    forged = OTHER.sign(
        Checkpoint(ORIGIN, 10, index._tree.root(10), "2026-11-24T00:00:00.000Z", ledger.get(10).entry_hash)
    )
    index.store.table.update_entity(
        {"PartitionKey": index.store.partition, "RowKey": f"{10**12 - 1 - 10:012d}", "note": forged},
        mode=UpdateMode.MERGE,
    )
    with pytest.raises(VerificationError) as caught:
        audit(ledger, index.store, SIGNER.verifier)
    assert caught.value.reason == "checkpoint_signature_invalid" and "size 10" in caught.value.detail
    with pytest.raises(VerificationError):
        index.latest()  # the host refuses to hand it out too


def test_a_consistently_rewritten_history_is_caught_by_the_checkpoints(world):
    ledger, index = world
    index.checkpoint()
    for sequence in range(7, 11):  # rewrite entries 7..10 and fix up every hash and the head
        ledger.table.delete_entity("registry", row_key(sequence))
    head = ledger.get(6)
    ledger.table.upsert_entity(
        {"PartitionKey": "registry", "RowKey": HEAD_ROW, "size": 6, "entry_hash": head.entry_hash, "time": head.time},
        mode=UpdateMode.REPLACE,
    )
    rewriter = Ledger(ledger.table)
    _fill(rewriter, 70, 4, tag="rewritten")
    assert rewriter.verify().size == 10  # the chain alone looks fine
    with pytest.raises(VerificationError) as caught:
        audit(ledger, index.store, SIGNER.verifier)
    assert caught.value.reason == "checkpoint_root_mismatch"
    with pytest.raises(LedgerIntegrityError):
        index.sync()  # and the host that indexed the original refuses the rewritten chain


def test_a_rolled_back_ledger_is_caught_by_a_checkpoint_ahead_of_it(world):
    ledger, index = world
    index.checkpoint()
    for sequence in (9, 10):
        ledger.table.delete_entity("registry", row_key(sequence))
    eight = ledger.get(8)
    ledger.table.upsert_entity(
        {"PartitionKey": "registry", "RowKey": HEAD_ROW, "size": 8, "entry_hash": eight.entry_hash, "time": eight.time},
        mode=UpdateMode.REPLACE,
    )
    with pytest.raises(VerificationError) as caught:
        audit(ledger, index.store, SIGNER.verifier)
    assert caught.value.reason == "checkpoint_ahead"


def test_the_index_never_signs_over_a_broken_chain(world):
    ledger, index = world
    row = ledger.table.get_entity("registry", row_key(3))
    row["payload"] = row["payload"].replace('"n":3', '"n":33')
    ledger.table.update_entity(row, mode=UpdateMode.REPLACE)
    with pytest.raises(LedgerIntegrityError) as caught:
        index.checkpoint()
    assert caught.value.sequence == 3
    assert index.store.latest() is None


def test_entries_round_trip_through_json_with_their_hash(world):
    ledger, _ = world
    entry = ledger.get(2)
    again = LedgerEntry.from_dict(json.loads(json.dumps(entry.to_dict())))
    assert again.computed_hash() == entry.entry_hash
