"""ECIES field encryption (``shared/ecies.py``) and the `property_privacy` cryptlet's own code, without
a region: the documented test vector (docs/ecies.md) reproduced by both, its recipients decrypt, and
fresh randomness. (In real regions and through the dev host: tests/e2e/samples/test_property_privacy.py.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import coincurve
import pytest

from shared import ecies

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cryptlet_packages" / "property_privacy"
VECTOR = json.loads((ROOT / "tests" / "vectors" / "ecies.json").read_text())


def package_module():
    """The cryptlet's own module, loaded from its file (as the region loads it)."""
    spec = importlib.util.spec_from_file_location("property_privacy_main", PACKAGE / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pub(key: coincurve.PrivateKey, compressed: bool = True) -> str:
    return "0x" + key.public_key.format(compressed=compressed).hex()


@pytest.fixture(scope="module")
def counterparties() -> list[coincurve.PrivateKey]:
    return [coincurve.PrivateKey() for _ in range(3)]


def vector_args() -> tuple[list, dict]:
    given = VECTOR["input"]
    return (
        [given["field"], given["value"], given["recipients"], given["context"]],
        {
            "ephemeral_secret": bytes.fromhex(given["ephemeral_secret"][2:]),
            "content_key": bytes.fromhex(given["content_key"][2:]),
            "nonce": bytes.fromhex(given["nonce"][2:]),
        },
    )


def test_vector_is_reproduced_by_the_cryptlet_code_and_the_core_module():
    args, fixed = vector_args()
    assert package_module().encrypt(*args, **fixed) == VECTOR["output"]
    assert ecies.encrypt_field(*args, **fixed) == VECTOR["output"]


def test_vector_recipients_match_their_private_keys_and_decrypt():
    given = VECTOR["input"]
    for secret, recipient in zip(given["recipient_private_keys"], given["recipients"], strict=False):
        key = coincurve.PrivateKey(bytes.fromhex(secret[2:]))
        assert pub(key) == recipient
        assert ecies.decrypt_field(VECTOR["output"], secret, field="salary", context="deal-42") == given["value"]


def test_vector_is_documented():
    doc = (ROOT / "docs" / "ecies.md").read_text()
    output = VECTOR["output"]
    for value in (
        output["ephemeral_public_key"],
        output["ciphertext"],
        output["recipients_digest"],
        *VECTOR["input"]["recipients"],
        *(r["key_id"] for r in output["recipients"]),
        *(r["wrapped_key"] for r in output["recipients"]),
    ):
        assert value in doc, value


def test_core_module_output_decrypts_with_fresh_randomness(counterparties):
    message = ecies.encrypt_field("iban", "NL91ABNA0417164300", [pub(k) for k in counterparties])
    assert [ecies.decrypt_field(message, k.secret) for k in counterparties] == ["NL91ABNA0417164300"] * 3
    again = ecies.encrypt_field("iban", "NL91ABNA0417164300", [pub(k) for k in counterparties])
    assert again["ephemeral_public_key"] != message["ephemeral_public_key"]
    assert again["ciphertext"] != message["ciphertext"]
