"""Regenerate tests/vectors/envelope.json with the reference implementation (eth-account).

    .venv/bin/python tests/vectors/make_envelope_vectors.py

The vectors use fixed, public test keys; never reuse them for anything real.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_account.messages import encode_typed_data

from shared.encoding import keccak256, to_hex
from shared.envelope import Domain, Envelope

CASES = [
    {
        "label": "customer_validator verdict, chain 0, no contract",
        "key_seed": "cryptlet-fabric test key 1",
        "chain_id": 0,
        "contract": "0x" + "00" * 20,
        "name": "customer_validator",
        "topic": "customer_validator.validate",
        "request_id": "0x" + "01" * 32,
        "sequence": 1,
        "timestamp": 1764000000000,
        "payload": {
            "approved": True,
            "failed_rules": [],
            "record_commitment": "0x" + "ab" * 32,
            "rules_version": "2026.1",
        },
        "digest": "0x" + "07" * 32,
        "registration": {"stream": "registry", "sequence": 1, "entry_hash": "0x" + "3c" * 32},
        "evidence": {},
    },
    {
        "label": "market data with evidence hash, chain 1337, verifying contract",
        "key_seed": "cryptlet-fabric test key 2",
        "chain_id": 1337,
        "contract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "name": "market_watcher",
        "topic": "market_watcher.close",
        "request_id": "0x" + "fe" * 32,
        "sequence": 1764000000000123,
        "timestamp": 1764021600000,
        "payload": {"symbol": "XAU", "price": "2650.15", "unicode": "Zürich €"},
        "digest": "0x" + "5a" * 32,
        "registration": {"stream": "registry", "sequence": 42, "entry_hash": "0x" + "9d" * 32},
        "evidence": {"hash": "0x" + "e1" * 32, "kind": "process"},
    },
]


def build(case: dict) -> dict:
    key = keccak256(case["key_seed"].encode())
    account = Account.from_key(key)
    envelope = Envelope(
        cryptlet=account.address,
        name=case["name"],
        digest=bytes.fromhex(case["digest"][2:]),
        topic=case["topic"],
        request_id=bytes.fromhex(case["request_id"][2:]),
        sequence=case["sequence"],
        timestamp_ms=case["timestamp"],
        payload=case["payload"],
        domain=Domain(case["chain_id"], case["contract"]),
        registration=case["registration"],
        evidence=case["evidence"],
    )
    signable = encode_typed_data(full_message=envelope.typed_data())
    signed = Account.sign_message(signable, key)
    document = envelope.to_dict()
    document["signature"] = to_hex(bytes(signed.signature))
    return {
        "label": case["label"],
        "private_key": to_hex(key),
        "address": account.address,
        "signing_hash": to_hex(bytes(signed.message_hash)),
        "envelope": document,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("envelope.json")
    out.write_text(json.dumps([build(c) for c in CASES], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
