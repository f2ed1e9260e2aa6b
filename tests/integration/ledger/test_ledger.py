"""The hash-chained ledger on real Azurite: appends, group commit, typed kinds, audit, tampering."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest
from azure.data.tables import UpdateMode

from shared.errors import Conflict, InvalidInput, LedgerIntegrityError
from shared.ledger.chain import GENESIS_HASH, HEAD_ROW, MAX_BATCH_ENTRIES, Ledger, LedgerEntry, row_key
from shared.storage import table_client
from tests.conftest import CLI

ADDRESS = "0x" + "ab" * 20


def policy(n: int) -> tuple[str, dict]:
    return "policy.set", {"scope": "fabric", "policy": {"n": n, "note": f"entry {n}"}}


@pytest.fixture
def ledger(storage, unique_name):
    table = table_client(storage, unique_name + "ledger")
    store = Ledger(table, "registry")
    for i in range(1, 6):
        store.append(*policy(i))
    yield store
    table.delete_table()


def cli_verify(storage: str, prefix: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, AzureWebJobsStorage=storage, FABRIC_TABLE_PREFIX=prefix)
    return subprocess.run([str(CLI), "ledger", "verify"], env=env, capture_output=True, text=True, timeout=60)


def test_appends_are_chained_and_verify(ledger):
    head = ledger.verify()
    assert head.size == 5
    first, second = ledger.get(1), ledger.get(2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.entry_hash
    assert first.computed_hash() == first.entry_hash
    assert [e.payload["policy"]["n"] for e in ledger.read(2, 3)] == [2, 3, 4]
    assert [e.time for e in ledger.read()] == sorted(e.time for e in ledger.read())  # ledger time never goes back


def test_concurrent_threads_are_group_committed_without_forks_or_gaps(storage, unique_name):
    table = table_client(storage, unique_name)
    store = Ledger(table, "registry")
    acknowledged: list[LedgerEntry] = []
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(10):
                acknowledged.append(store.append("policy.set", {"scope": "fabric", "policy": {"w": w, "i": i}}))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(e.sequence for e in acknowledged) == list(range(1, 241))
    assert store.stats.transactions < store.stats.entries  # several appends shared a transaction
    assert Ledger(table, "registry").verify().size == 240
    stored = {e.sequence: e.entry_hash for e in Ledger(table).read(1, 1000)}
    assert all(stored[e.sequence] == e.entry_hash for e in acknowledged)
    table.delete_table()


def test_append_all_is_one_atomic_consecutive_run(ledger):
    entries = ledger.append_all([policy(10), policy(11), policy(12)])
    assert [e.sequence for e in entries] == [6, 7, 8]
    assert entries[1].prev_hash == entries[0].entry_hash
    with pytest.raises(InvalidInput):
        ledger.append_all([policy(i) for i in range(MAX_BATCH_ENTRIES + 1)])
    assert ledger.verify().size == 8


def test_compare_and_append_refuses_a_moved_ledger(ledger):
    assert ledger.append_all([policy(6)], expect_size=5)[0].sequence == 6
    with pytest.raises(Conflict):
        ledger.append_all([policy(7)], expect_size=5)
    assert ledger.verify().size == 6


def test_a_writer_with_a_stale_head_retries_instead_of_forking(ledger, storage):
    other = Ledger(table_client(storage, ledger.table.table_name), "registry")
    other.append(*policy(6))  # `ledger` still caches the head of 5
    assert ledger.append(*policy(7)).sequence == 7
    assert ledger.stats.conflicts >= 1
    assert ledger.verify().size == 7


def test_compare_and_append_with_a_stale_cached_head_rereads_it(ledger, storage):
    """Another host appended since this ledger's last commit: a compare-and-append that expects the
    stored size succeeds (the cached head is refreshed), one that expects an older size is refused."""
    other = Ledger(table_client(storage, ledger.table.table_name), "registry")
    other.append(*policy(6))
    other.append(*policy(7))  # `ledger` still caches the head of 5
    assert ledger.append_all([policy(8)], expect_size=7)[0].sequence == 8
    other.append(*policy(9))
    with pytest.raises(Conflict):
        ledger.append_all([policy(10)], expect_size=8)
    assert ledger.append_all([policy(10)], expect_size=9)[0].sequence == 10
    assert ledger.verify().size == 10


@pytest.mark.parametrize(
    "kind, payload, field",
    [
        ("no.such.kind", {}, "kind"),
        ("policy.set", {"scope": "fabric"}, "$.payload.policy"),
        ("policy.set", {"scope": "everything", "policy": {}}, "$.payload.scope"),
        (
            "cryptlet.key_revoked",
            {"name": "abc", "address": "0x12", "reason": "compromised", "invalid_after": "2026-11-24T00:00:00.000Z"},
            "$.payload.address",
        ),
        (
            "cryptlet.key_revoked",
            {"name": "abc", "address": ADDRESS, "reason": "bored", "invalid_after": "2026-11-24T00:00:00.000Z"},
            "$.payload.reason",
        ),
        ("contract.bound", {"name": "abc", "chain_id": 1, "contract": ADDRESS, "extra": 1}, "$.payload.extra"),
        (
            "subscription.created",
            {"id": "s1", "name": "abc", "method": "quote", "trigger": {"type": "sometimes"}},
            "$.payload.trigger.type",
        ),
    ],
)
def test_entries_are_schema_validated_on_append(ledger, kind, payload, field):
    with pytest.raises(InvalidInput) as caught:
        ledger.append(kind, payload)
    assert caught.value.field == field
    assert ledger.head().size == 5


def test_oversized_payload_is_refused_before_storage(ledger):
    with pytest.raises(InvalidInput) as caught:
        ledger.append("policy.set", {"scope": "fabric", "policy": {"blob": "x" * 40_000}})
    assert caught.value.field == "payload"


def _row(ledger, sequence):
    return ledger.table.get_entity("registry", row_key(sequence))


def test_modified_row_is_detected_at_its_sequence(ledger, storage):
    row = _row(ledger, 3)
    row["payload"] = json.dumps({"scope": "fabric", "policy": {"n": 3, "note": "rewritten"}})
    ledger.table.update_entity(row, mode=UpdateMode.REPLACE)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 3 and caught.value.reason == "entry_hash_mismatch"
    prefix = ledger.table.table_name[: -len("ledger")]
    result = cli_verify(storage, prefix)
    assert result.returncode == 1
    assert "ledger entry 3" in result.stderr and result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_non_canonical_payload_text_is_detected(ledger):
    row = _row(ledger, 2)
    row["payload"] = json.dumps(json.loads(row["payload"]), indent=1)  # same JSON value, other bytes
    ledger.table.update_entity(row, mode=UpdateMode.REPLACE)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 2 and caught.value.reason == "entry_hash_mismatch"


def test_rewritten_row_with_recomputed_hash_breaks_the_next_link(ledger):
    row = _row(ledger, 2)
    forged = LedgerEntry(
        "registry", 2, row["kind"], row["time"], {"scope": "fabric", "policy": {"n": 99}}, row["prev_hash"], ""
    )
    row["payload"] = forged.payload_json
    row["entry_hash"] = forged.computed_hash()
    ledger.table.update_entity(row, mode=UpdateMode.REPLACE)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 3 and caught.value.reason == "prev_hash_mismatch"


def test_deleted_row_is_detected(ledger):
    ledger.table.delete_entity("registry", row_key(4))
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 4 and caught.value.reason == "missing_entry"


def test_truncated_tail_is_detected_by_the_head(ledger):
    ledger.table.delete_entity("registry", row_key(5))
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.reason == "head_mismatch" and caught.value.sequence == 5


def test_swapped_rows_are_detected(ledger):
    two, three = _row(ledger, 2), _row(ledger, 3)
    for row, key in ((two, row_key(3)), (three, row_key(2))):
        moved = dict(row)
        moved["RowKey"] = key
        ledger.table.upsert_entity(moved, mode=UpdateMode.REPLACE)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 2


def test_inserted_row_between_two_entries_is_detected(ledger):
    extra = dict(_row(ledger, 3))
    extra["RowKey"] = row_key(3) + "a"  # sorts between entries 3 and 4
    ledger.table.create_entity(extra)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 4 and caught.value.reason == "missing_entry"


def test_forged_entry_inserted_by_shifting_the_tail_is_detected(ledger):
    rows = [_row(ledger, n) for n in (4, 5)]
    for row in reversed(rows):  # move 4, 5 up to 5, 6 and put a forged, well-hashed entry at 4
        moved = dict(row)
        moved["RowKey"] = row_key(int(row["RowKey"]) + 1)
        ledger.table.upsert_entity(moved, mode=UpdateMode.REPLACE)
    three = ledger.get(3)
    forged = LedgerEntry(
        "registry", 4, "policy.set", rows[0]["time"], {"scope": "fabric", "policy": {"evil": 1}}, three.entry_hash, ""
    )
    ledger.table.upsert_entity(
        {**dict(rows[0]), "payload": forged.payload_json, "entry_hash": forged.computed_hash()}, mode=UpdateMode.REPLACE
    )
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 5


def test_row_appended_behind_the_heads_back_is_detected(ledger):
    extra = dict(_row(ledger, 5))
    extra["RowKey"] = row_key(6)
    ledger.table.create_entity(extra)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 6


def test_head_row_is_not_an_entry(ledger):
    assert ledger.table.get_entity("registry", HEAD_ROW)["size"] == 5
    assert len(list(ledger.rows())) == 5
