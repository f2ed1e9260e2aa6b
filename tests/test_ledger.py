"""The hash-chained ledger on real Azurite: appends, audit, and tampering found at its sequence."""
from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest
from azure.data.tables import UpdateMode

from shared.errors import LedgerIntegrityError
from shared.ledger import GENESIS_HASH, HEAD_ROW, Ledger, LedgerEntry, row_key
from shared.storage import table_client
from tests.conftest import CLI


@pytest.fixture
def ledger(storage, unique_name):
    table = table_client(storage, unique_name + "ledger")
    store = Ledger(table, "registry")
    for i in range(1, 6):
        store.append("test.entry", {"n": i, "note": f"entry {i}"})
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
    assert [e.payload["n"] for e in ledger.read(2, 3)] == [2, 3, 4]


def test_concurrent_writers_never_fork_or_gap(storage, unique_name):
    table = table_client(storage, unique_name)
    writers = [Ledger(table_client(storage, unique_name), "registry") for _ in range(4)]
    errors = []

    def write(store, w):
        try:
            for i in range(15):
                store.append("test.entry", {"writer": w, "i": i})
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(store, w)) for w, store in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Ledger(table, "registry").verify().size == 60
    table.delete_table()


def _row(ledger, sequence):
    return ledger.table.get_entity("registry", row_key(sequence))


def test_modified_row_is_detected_at_its_sequence(ledger, storage):
    row = _row(ledger, 3)
    row["payload"] = json.dumps({"n": 3, "note": "rewritten"})
    ledger.table.update_entity(row, mode=UpdateMode.REPLACE)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 3 and caught.value.reason == "entry_hash_mismatch"
    prefix = ledger.table.table_name[: -len("ledger")]
    result = cli_verify(storage, prefix)
    assert result.returncode == 1
    assert "ledger entry 3" in result.stderr and result.stderr.strip().count("\n") == 0


def test_rewritten_row_with_recomputed_hash_breaks_the_next_link(ledger):
    row = _row(ledger, 2)
    entry = LedgerEntry("registry", 2, row["kind"], row["time"], {"n": 2, "note": "forged"}, row["prev_hash"], "")
    row["payload"] = json.dumps(entry.payload)
    row["entry_hash"] = entry.computed_hash()
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
    assert caught.value.reason == "head_mismatch"


def test_swapped_rows_are_detected(ledger):
    two, three = _row(ledger, 2), _row(ledger, 3)
    for row, key in ((two, row_key(3)), (three, row_key(2))):
        moved = {k: v for k, v in row.items()}
        moved["RowKey"] = key
        ledger.table.upsert_entity(moved, mode=UpdateMode.REPLACE)
    with pytest.raises(LedgerIntegrityError) as caught:
        ledger.verify()
    assert caught.value.sequence == 2


def test_head_row_is_not_an_entry(ledger):
    assert ledger.table.get_entity("registry", HEAD_ROW)["size"] == 5
    assert len(list(ledger.entries())) == 5


def test_documented_vector():
    assert LedgerEntry.hash_of("registry", 1, "test.entry", "2026-11-24T00:00:00.000Z", {"n": 1},
                               GENESIS_HASH) == "9e7b203f705c1b984ce13bd25555af8bf3acd2e52df166968926ed690dc1c0d5"
