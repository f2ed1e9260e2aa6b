"""Subscriber request signing without a host: the EIP-191 hash against eth_account, personal_sign,
and the documented test vector of docs/events.md. (The subscription API over a real dev host:
tests/e2e/events/test_subscriptions.py, which uses the helpers below.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import coincurve
import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct

from shared.encoding import canonical_json, to_hex
from shared.envelope import address_of, eip191_hash
from shared.events.subscribers import sign_request

ROOT = Path(__file__).resolve().parents[3]
CRYPTLET = "customer_validator"

# The test vector of docs/events.md ("Subscribers and signed requests"): Hardhat's well-known account #0.
VECTOR_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
VECTOR_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
VECTOR_PUBLIC_KEY = (
    "0x048318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3acb08e"
    "31016afac23e630c5d11f59f61fef57b0d2aa5"
)
VECTOR_BODY = {
    "cryptlet": "customer_validator",
    "method": "rules",
    "args": {},
    "trigger": {"type": "cron", "expression": "0 0 16 * * 1-5", "timezone": "America/New_York", "calendar": "XNYS"},
    "target": {"type": "history"},
    "deadline_ms": 1798761600000,
}
VECTOR_CANONICAL = (
    '{"action":"subscribe","body":{"args":{},"cryptlet":"customer_validator","deadline_ms":1798761600000,'
    '"method":"rules","target":{"type":"history"},"trigger":{"calendar":"XNYS","expression":"0 0 16 * * 1-5",'
    '"timezone":"America/New_York","type":"cron"}},"expires_ms":1796100300000,'
    '"nonce":"0x000102030405060708090a0b0c0d0e0f","subscriber":"gold_desk"}'
)
VECTOR_HASH = "0x40432f4d322446779c8411455d482f899e3609ce3d54bbc41d3ade01a515a299"
VECTOR_SIGNATURE = (
    "0xff3a735c984d69dbc3ccf3f012b2bfa35141d82ff7273c79d81f5df6cb3a6f4a1b5710975ec79f8beb577a89fc5327a5"
    "006bb20f12a76f9136cea66e7d8fe4f11c"
)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_key() -> coincurve.PrivateKey:
    return coincurve.PrivateKey()


def public_hex(key: coincurve.PrivateKey, compressed: bool = False) -> str:
    return to_hex(key.public_key.format(compressed=compressed))


def spec(**changes) -> dict:
    body = {
        "cryptlet": CRYPTLET,
        "method": "rules",
        "args": {},
        "trigger": {"type": "cron", "expression": "0 0 16 * * 1-5", "timezone": "America/New_York", "calendar": "XNYS"},
        "target": {"type": "callback", "url": "https://example.com/hook"},
        "deadline_ms": now_ms() + 3_600_000,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"a",
        "gr\u00fc\u00dfe \u20ac \U0001f600".encode(),
        bytes(range(256)),
        canonical_json({"b": [1, 2.5, None], "a": "x"}),
    ],
)
def test_eip191_hash_equals_eth_account(message: bytes) -> None:
    assert eip191_hash(message) == bytes(_hash_eip191_message(encode_defunct(primitive=message)))


def test_sign_request_is_eth_account_personal_sign() -> None:
    key = new_key()
    content, signature = sign_request(key.secret, "gold_desk", "subscribe", spec())
    signable = encode_defunct(primitive=content)
    assert signature == to_hex(bytes(Account.sign_message(signable, key.secret).signature))
    assert Account.recover_message(signable, signature=signature) == address_of(key.public_key.format())
    document = json.loads(content)
    assert canonical_json(document) == content  # the body sent is the canonical JSON that is signed
    assert set(document) == {"subscriber", "nonce", "expires_ms", "action", "body"}
    assert 0 < document["expires_ms"] - now_ms() <= 300_000


def test_documented_test_vector() -> None:
    key = coincurve.PrivateKey(bytes.fromhex(VECTOR_KEY[2:]))
    assert public_hex(key) == VECTOR_PUBLIC_KEY and address_of(bytes.fromhex(VECTOR_PUBLIC_KEY[2:])) == VECTOR_ADDRESS
    content, signature = sign_request(
        VECTOR_KEY,
        "gold_desk",
        "subscribe",
        VECTOR_BODY,
        now_ms=1796100000000,
        ttl_s=300,
        nonce="0x000102030405060708090a0b0c0d0e0f",
    )
    assert content.decode() == VECTOR_CANONICAL
    assert to_hex(eip191_hash(content)) == VECTOR_HASH
    assert signature == VECTOR_SIGNATURE
    assert to_hex(bytes(Account.sign_message(encode_defunct(primitive=content), VECTOR_KEY).signature)) == signature
    docs = (ROOT / "docs" / "events.md").read_text()
    for value in (VECTOR_KEY, VECTOR_ADDRESS, VECTOR_PUBLIC_KEY, VECTOR_CANONICAL, VECTOR_HASH, VECTOR_SIGNATURE):
        assert value in docs, f"docs/events.md does not show {value[:40]}..."
