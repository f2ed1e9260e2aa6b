"""Envelopes: the fast path agrees with eth-account on the published vectors; verify() raises."""

from __future__ import annotations

import json
import os
from pathlib import Path

import eth_utils
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.encoding import from_hex
from shared.envelope import Domain, Envelope, sign_envelope, to_checksum_address, verify_envelope
from shared.errors import InvalidInput, VerificationError

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "envelope.json").read_text("utf-8"))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["label"])
def test_fast_path_matches_the_published_vector(vector):
    envelope = Envelope.from_dict(vector["envelope"])
    assert envelope.signing_hash().hex() == vector["signing_hash"][2:]
    resigned = sign_envelope(envelope, from_hex(vector["private_key"]))
    assert resigned.signature == envelope.signature  # RFC 6979: same key + hash -> same signature
    assert verify_envelope(envelope, vector["address"]) == vector["address"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["label"])
def test_reference_recovers_the_vector_signer(vector):
    typed = Envelope.from_dict(vector["envelope"]).typed_data()
    signer = Account.recover_message(
        encode_typed_data(full_message=typed), signature=from_hex(vector["envelope"]["signature"])
    )
    assert signer == vector["address"]


payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=40, deadline=None)
@given(payload=payloads, sequence=st.integers(0, 2**64 - 1), chain_id=st.integers(0, 2**64), topic=st.text(max_size=30))
def test_fast_path_and_reference_agree_on_random_envelopes(payload, sequence, chain_id, topic):
    key = os.urandom(32)
    account = Account.from_key(key)
    envelope = sign_envelope(
        Envelope(
            cryptlet=account.address,
            name="x",
            digest=os.urandom(32),
            topic=topic,
            request_id=os.urandom(32),
            sequence=sequence,
            timestamp_ms=1,
            payload=payload,
            domain=Domain(chain_id, "0x" + os.urandom(20).hex()),
            registration={"entry_hash": "0x" + os.urandom(32).hex()},
            evidence={},
        ),
        key,
    )
    reference = Account.sign_message(encode_typed_data(full_message=envelope.typed_data()), key)
    assert bytes(reference.signature) == envelope.signature
    assert verify_envelope(Envelope.from_dict(envelope.to_dict())) == account.address


def test_checksum_addresses_match_eth_utils():
    for _ in range(50):
        raw = os.urandom(20)
        assert to_checksum_address(raw) == eth_utils.to_checksum_address(raw)


def test_verify_raises_for_a_wrong_expected_signer():
    vector = VECTORS[0]
    with pytest.raises(VerificationError) as caught:
        verify_envelope(Envelope.from_dict(vector["envelope"]), "0x" + "12" * 20)
    assert caught.value.reason == "signer_mismatch"


@pytest.mark.parametrize(
    "field, value",
    [
        ("sequence", -1),
        ("sequence", 2**64),
        ("timestamp", "1"),
        ("digest", "0x12"),
        ("request_id", "zz"),
        ("signature", "nothex"),
        ("domain", []),
        ("registration", "x"),
    ],
)
def test_malformed_envelopes_name_the_field(field, value):
    doc = {**VECTORS[0]["envelope"], field: value}
    with pytest.raises(InvalidInput) as caught:
        Envelope.from_dict(doc)
    assert caught.value.field.startswith(field)


def test_wrong_domain_is_refused():
    doc = {**VECTORS[0]["envelope"], "domain": {**VECTORS[0]["envelope"]["domain"], "name": "Other"}}
    with pytest.raises(VerificationError) as caught:
        Envelope.from_dict(doc)
    assert caught.value.reason == "wrong_domain"
