"""The ledger's fast Table-storage path agrees with the azure-data-tables SDK (the reference)."""

from __future__ import annotations

import pytest
from azure.core import MatchConditions
from azure.data.tables import EdmType, EntityProperty, TableTransactionError, UpdateMode

from shared.ledger import tablewire
from shared.storage import table_client


@pytest.fixture
def table(storage, unique_name):
    client = table_client(storage, unique_name)
    yield client
    client.delete_table()


ENTITY = {
    "PartitionKey": "p",
    "text": 'quote " backslash \\ unicode ü € 𝄞 newline \n',
    "small": 7,
    "big": 2**40,
    "negative": -(2**31),
    "flag": True,
    "blob": b"\x00\xffbinary",
}


def _plain(value):
    return value.value if isinstance(value, EntityProperty) else value


def test_inserts_are_stored_as_the_sdk_stores_them(table):
    etags = tablewire.submit(table, [tablewire.Insert({**ENTITY, "RowKey": "fast"})])
    table.create_entity({**ENTITY, "RowKey": "sdk", "big": EntityProperty(2**40, EdmType.INT64)})
    fast, sdk = table.get_entity("p", "fast"), table.get_entity("p", "sdk")
    assert {k: _plain(fast[k]) for k in ENTITY} == {k: _plain(sdk[k]) for k in ENTITY} == ENTITY
    assert etags[0] == fast.metadata["etag"]
    rows = {row["RowKey"]: row for row in tablewire.read_range(table, "p", "", "~")}
    assert set(rows) == {"fast", "sdk"}
    for row in rows.values():
        assert {k: row[k] for k in ENTITY} == ENTITY


def test_conditional_replace_and_conflicts_fail_like_the_sdk(table):
    table.create_entity({"PartitionKey": "p", "RowKey": "head", "n": 1})
    stale = table.get_entity("p", "head").metadata["etag"]
    table.update_entity({"PartitionKey": "p", "RowKey": "head", "n": 2}, mode=UpdateMode.REPLACE)
    ops = [
        tablewire.Insert({"PartitionKey": "p", "RowKey": "x"}),
        tablewire.Replace({"PartitionKey": "p", "RowKey": "head", "n": 3}, stale),
    ]
    with pytest.raises(tablewire.TransactionRejected) as fast:
        tablewire.submit(table, ops)
    with pytest.raises(TableTransactionError) as sdk:
        table.submit_transaction(
            [
                ("create", {"PartitionKey": "p", "RowKey": "x"}),
                (
                    "update",
                    {"PartitionKey": "p", "RowKey": "head", "n": 3},
                    {"mode": UpdateMode.REPLACE, "etag": stale, "match_condition": MatchConditions.IfNotModified},
                ),
            ]
        )
    assert fast.value.code == sdk.value.error_code == "UpdateConditionNotSatisfied"
    assert fast.value.index == 1
    assert [r["RowKey"] for r in tablewire.read_range(table, "p", "", "~")] == ["head"]  # nothing applied
    fresh = table.get_entity("p", "head").metadata["etag"]
    etags = tablewire.submit(table, [ops[0], tablewire.Replace({"PartitionKey": "p", "RowKey": "head", "n": 3}, fresh)])
    assert table.get_entity("p", "head")["n"] == 3 and etags[1] == table.get_entity("p", "head").metadata["etag"]
    with pytest.raises(tablewire.TransactionRejected) as exists:
        tablewire.submit(table, [tablewire.Insert({"PartitionKey": "p", "RowKey": "x"})])
    assert exists.value.code == "EntityAlreadyExists"


def test_range_reads_page_through_continuations(table):
    for start in range(0, 250, 50):
        tablewire.submit(
            table,
            [tablewire.Insert({"PartitionKey": "p", "RowKey": f"{i:05d}", "i": i}) for i in range(start, start + 50)],
        )
    rows = list(tablewire.read_range(table, "p", "00010", "00240", select=["i"], page_size=37))
    assert [r["i"] for r in rows] == list(range(10, 240))
    assert "Timestamp" not in rows[0]
