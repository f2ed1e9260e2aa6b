"""Ledger entries without storage: every kind's schema, the documented entry-hash vector, and the
entry bytes (RFC 8785). (The ledger on Azurite: tests/integration/ledger/test_ledger.py.)"""

from __future__ import annotations

from shared.ledger.chain import GENESIS_HASH, LedgerEntry, entry_bytes
from shared.ledger.kinds import KINDS, validate_entry

ADDRESS = "0x" + "ab" * 20


def test_every_kind_has_a_schema_and_valid_examples_pass():
    examples = {
        "cryptlet.registered": {
            "name": "abc",
            "version": "1.0.0",
            "kind": "utility",
            "address": ADDRESS,
            "public_key": "0x04" + "11" * 64,
            "digest": "0x" + "22" * 32,
            "provider": "process",
            "package": "abc",
            "manifest": {},
            "key": {"store": "TableKeyStore", "version": 1},
            "evidence": {"kind": "any"},
        },
        "cryptlet.key_rotated": {
            "name": "abc",
            "address": ADDRESS,
            "public_key": "0x04" + "11" * 64,
            "digest": "0x" + "22" * 32,
            "provider": "process",
            "previous_address": ADDRESS,
            "key": {"store": "TableKeyStore", "version": 1},
        },
        "cryptlet.key_revoked": {
            "name": "abc",
            "address": ADDRESS,
            "reason": "compromised",
            "invalid_after": "2026-11-24T00:00:00.000Z",
        },
        "cryptlet.retired": {"name": "abc", "address": ADDRESS, "note": "end of life"},
        "policy.set": {"scope": "cryptlet:abc", "policy": {"maxRegions": 4}},
        "contract.bound": {"name": "abc", "chain_id": 1, "contract": ADDRESS, "role": "utility"},
        "subscription.created": {
            "id": "sub-1",
            "name": "abc",
            "method": "quote",
            "trigger": {"type": "cron", "cron": "0 0 16 * * 1-5", "tz": "America/New_York"},
        },
    }
    assert set(examples) == set(KINDS)
    for kind, payload in examples.items():
        validate_entry(kind, payload)


def test_documented_vector():  # docs/ledger.md: entry_hash = SHA-256(0x00 || JCS bytes), the RFC 9162 leaf hash
    assert (
        LedgerEntry.hash_of("registry", 1, "test.entry", "2026-11-24T00:00:00.000Z", {"n": 1}, GENESIS_HASH)
        == "e6c740e700f6998022d43738a5be234a05c786f0b3d0061acc75a062c317e2dc"
    )


def test_entry_bytes_equal_rfc8785_of_the_entry_even_for_unusual_strings():
    from shared.encoding import canonical_json

    for kind, time in (("policy.set", "2026-11-24T00:00:00.000Z"), ('we"ird\\kind\n', "t\u00e9\u2028")):
        payload = {"é": [1, 2.5, None], "a": "\u0007"}
        body = {
            "kind": kind,
            "payload": payload,
            "prev_hash": GENESIS_HASH,
            "sequence": 7,
            "stream": "registry",
            "time": time,
        }
        assert entry_bytes("registry", 7, kind, time, canonical_json(payload).decode(), GENESIS_HASH) == canonical_json(
            body
        )
