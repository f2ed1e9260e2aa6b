"""Property: any change to any stored byte of the ledger is found, at the sequence it was made."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import UpdateMode
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import LedgerIntegrityError
from shared.ledger.chain import HEAD_ROW, Ledger, row_key
from shared.storage import table_client

SIZE = 8
ENTRY_COLUMNS = ("kind", "time", "payload", "prev_hash", "entry_hash", "sequence")


@pytest.fixture(scope="module")
def ledger(storage):
    table = table_client(storage, "tamper" + uuid.uuid4().hex[:10])
    store = Ledger(table)
    store.append_all(
        [("policy.set", {"scope": "fabric", "policy": {"n": n, "text": "ünïcode ok"}}) for n in range(1, 5)]
    )
    for n in range(5, SIZE + 1):
        store.append("contract.bound", {"name": f"cryptlet_{n}", "chain_id": n, "contract": "0x" + f"{n:02x}" * 20})
    yield store
    table.delete_table()


def _flip(value, position: int, mask: int):
    if isinstance(value, int):
        return value ^ (1 << (position % 31))
    chars = list(value)
    i = position % len(chars)
    flipped = chr(ord(chars[i]) ^ mask)
    if flipped == chars[i] or 0xD800 <= ord(flipped) <= 0xDFFF:
        flipped = chr(ord(chars[i]) ^ 1)
    chars[i] = flipped
    return "".join(chars)


@settings(max_examples=80, deadline=None)
@given(
    sequence=st.integers(1, SIZE),
    column=st.sampled_from(ENTRY_COLUMNS),
    position=st.integers(0, 10_000),
    mask=st.integers(1, 127),
)
def test_a_flipped_bit_in_any_entry_column_is_found_at_its_sequence(ledger, sequence, column, position, mask):
    original = ledger.table.get_entity("registry", row_key(sequence))
    tampered = dict(original)
    tampered[column] = _flip(original[column], position, mask)
    ledger.table.update_entity(tampered, mode=UpdateMode.REPLACE)
    try:
        with pytest.raises(LedgerIntegrityError) as caught:
            ledger.verify()
        assert caught.value.sequence == sequence, (column, caught.value.reason)
    finally:
        ledger.table.update_entity(dict(original), mode=UpdateMode.REPLACE)
    assert ledger.verify().size == SIZE


@settings(max_examples=20, deadline=None)
@given(column=st.sampled_from(("size", "entry_hash")), position=st.integers(0, 10_000), mask=st.integers(1, 127))
def test_a_flipped_bit_in_the_head_row_is_found(ledger, column, position, mask):
    original = ledger.table.get_entity("registry", HEAD_ROW)
    ledger.table.update_entity(
        {**dict(original), column: _flip(original[column], position, mask)}, mode=UpdateMode.REPLACE
    )
    try:
        with pytest.raises(LedgerIntegrityError) as caught:
            ledger.verify()
        assert caught.value.reason == "head_mismatch"
    finally:
        ledger.table.update_entity(dict(original), mode=UpdateMode.REPLACE)
