"""AWS Nitro attestation documents: the real recorded document, tampered copies, SYNTHETIC PKIs.

Real: ``attestation_document_valid.cbor`` (blindai test vector, 2023-03-22, eu-west-3). It comes
from a debug-mode enclave (PCR0 is 48 zero bytes), so policies for it set ``allow_debug=True``.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.attestation import (
    AWS_NITRO_ROOT_G1_SHA256,
    AttestationError,
    NitroPolicy,
    Reason,
    aws_nitro_root_g1,
    cryptlet_report_data,
    verify_nitro_document,
)
from shared.errors import ConfigurationError

from .conftest import (
    NITRO_EXPIRED,
    NITRO_NOW,
    NITRO_PCR4,
    cose_parts,
    cose_sign,
    issue_cert,
    load_fixture,
)

ZERO_PCR = bytes(48)


def real_policy(**changes: Any) -> NitroPolicy:
    fields: dict[str, Any] = dict(expected_pcrs={0: ZERO_PCR}, expected_user_data=b"hello, world!", allow_debug=True)
    fields.update(changes)
    return NitroPolicy(**fields)


def reason(document: bytes, policy: NitroPolicy | None = None, now=NITRO_NOW) -> str:
    with pytest.raises(AttestationError) as excinfo:
        verify_nitro_document(document, policy or real_policy(), now=now)
    return excinfo.value.reason


def with_payload(document: bytes, **changes: Any) -> bytes:
    """The document with payload fields changed, keeping the original (now wrong) signature."""
    protected, unprotected, _, signature, fields = cose_parts(document)
    fields.update(changes)
    return cbor2.dumps([protected, unprotected, cbor2.dumps(fields), signature])


# --------------------------------------------------------------------------- the genuine document


def test_genuine_document_verifies_at_its_timestamp(nitro_document):
    doc = verify_nitro_document(nitro_document, real_policy(), now=NITRO_NOW)

    assert doc.module_id == "i-0592d6788f2a6df5f-enc018709b898cd0326"
    assert doc.digest == "SHA384"
    assert doc.timestamp == NITRO_NOW
    assert doc.pcrs[0] == ZERO_PCR and doc.pcrs[4] == NITRO_PCR4
    assert sorted(doc.pcrs) == list(range(16))
    assert all(doc.pcrs[i] == ZERO_PCR for i in range(16) if i != 4)
    assert doc.user_data == b"hello, world!"
    assert doc.public_key == b"my super secret key"
    assert doc.nonce is None
    assert len(doc.cabundle) == 4
    assert doc.cabundle[0] == aws_nitro_root_g1()
    assert doc.debuggable is True
    evidence = doc.to_evidence()
    assert (evidence.kind, evidence.measurement, evidence.debuggable) == ("nitro", "00" * 48, True)
    assert evidence.report_data == b"hello, world!" and evidence.issued_at == NITRO_NOW


def test_genuine_document_with_every_binding_pinned(nitro_document):
    policy = real_policy(expected_pcrs={0: ZERO_PCR, 4: NITRO_PCR4.hex()}, expected_public_key=b"my super secret key")
    verify_nitro_document(nitro_document, policy, now=NITRO_NOW)


def test_tag_18_wrapped_document_verifies(nitro_document):
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(nitro_document)))
    verify_nitro_document(tagged, real_policy(), now=NITRO_NOW)


def test_debug_mode_enclave_is_refused_by_default(nitro_document):
    assert reason(nitro_document, real_policy(allow_debug=False)) == Reason.DEBUGGABLE


# --------------------------------------------------------------------------- time


def test_expired_leaf_certificate(nitro_document):
    assert reason(nitro_document, now=NITRO_EXPIRED) == Reason.CERT_EXPIRED


def test_before_the_leaf_certificate_exists(nitro_document):
    # The leaf is valid from 14:28:24 UTC.
    assert reason(nitro_document, now=NITRO_NOW - timedelta(minutes=1)) == Reason.CERT_EXPIRED


def test_document_from_the_future(nitro_document):
    # 14:28:26 is inside every certificate's validity but before the document's timestamp.
    now = NITRO_NOW - timedelta(seconds=1, milliseconds=405)
    assert reason(nitro_document, real_policy(leeway=timedelta(0)), now=now) == Reason.NOT_YET_VALID
    verify_nitro_document(nitro_document, real_policy(leeway=timedelta(seconds=5)), now=now)


def test_max_age(nitro_document):
    policy = real_policy(max_age=timedelta(minutes=5), leeway=timedelta(0))
    verify_nitro_document(nitro_document, policy, now=NITRO_NOW + timedelta(minutes=5))
    assert reason(nitro_document, policy, now=NITRO_NOW + timedelta(minutes=6)) == Reason.STALE


def test_naive_clock_is_refused(nitro_document):
    with pytest.raises(ValueError):
        verify_nitro_document(nitro_document, real_policy(), now=NITRO_NOW.replace(tzinfo=None))


# --------------------------------------------------------------------------- tampering


def test_flipped_signature_byte(nitro_document):
    protected, unprotected, payload, signature, _ = cose_parts(nitro_document)
    for index in (0, 47, 48, 95):
        tampered = bytearray(signature)
        tampered[index] ^= 0x01
        document = cbor2.dumps([protected, unprotected, payload, bytes(tampered)])
        assert reason(document) == Reason.BAD_SIGNATURE


def test_resigned_with_a_random_p384_key(nitro_document):
    _, _, payload, _, _ = cose_parts(nitro_document)
    document = cose_sign(ec.generate_private_key(ec.SECP384R1()), payload)
    assert reason(document) == Reason.BAD_SIGNATURE


def test_edited_payload_breaks_the_signature(nitro_document):
    assert reason(with_payload(nitro_document, user_data=b"hello, world?")) == Reason.BAD_SIGNATURE
    pcrs = dict(cose_parts(nitro_document)[4]["pcrs"])
    pcrs[0] = b"\x01" * 48
    assert (
        reason(with_payload(nitro_document, pcrs=pcrs), real_policy(expected_pcrs={0: b"\x01" * 48}))
        == Reason.BAD_SIGNATURE
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_is_rejected(nitro_document, position, mask):
    tampered = bytearray(nitro_document)
    tampered[position % len(tampered)] ^= mask
    with pytest.raises(AttestationError):
        verify_nitro_document(bytes(tampered), real_policy(), now=NITRO_NOW)


def test_certificate_with_an_invalid_x509_version_is_malformed(nitro_document):
    """Regression (found by the property above): cryptography's InvalidVersion is not a ValueError."""
    _, _, _, _, fields = cose_parts(nitro_document)
    der = fields["certificate"]
    version = der.index(bytes.fromhex("a003020102"))  # [0] EXPLICIT INTEGER 2 (X.509 v3)
    assert version < 16
    tampered = bytearray(nitro_document)
    start = tampered.index(der)
    tampered[start + version + 4] = 3  # "v4": no such X.509 version
    assert reason(bytes(tampered)) == Reason.MALFORMED


# --------------------------------------------------------------------------- policy checks


def test_wrong_pcr(nitro_document):
    assert reason(nitro_document, real_policy(expected_pcrs={0: b"\x01" * 48})) == Reason.PCR_MISMATCH
    assert reason(nitro_document, real_policy(expected_pcrs={4: ZERO_PCR})) == Reason.PCR_MISMATCH
    assert reason(nitro_document, real_policy(expected_pcrs={0: ZERO_PCR, 20: ZERO_PCR})) == Reason.PCR_MISMATCH


def test_wrong_user_data(nitro_document):
    assert reason(nitro_document, real_policy(expected_user_data=b"hello, world")) == Reason.USER_DATA_MISMATCH


def test_wrong_nonce(nitro_document):
    # The genuine document has no nonce at all.
    assert reason(nitro_document, real_policy(expected_nonce=b"challenge")) == Reason.NONCE_MISMATCH


def test_wrong_public_key(nitro_document):
    assert reason(nitro_document, real_policy(expected_public_key=b"another key")) == Reason.PUBLIC_KEY_MISMATCH


# --------------------------------------------------------------------------- roots and chains


def test_a_different_trust_anchor_rejects_the_genuine_document(nitro_document, synthetic_nitro):
    assert reason(nitro_document, real_policy(root=synthetic_nitro.root)) == Reason.UNTRUSTED_ROOT


def test_a_different_cabundle_root_is_untrusted(nitro_document, synthetic_nitro):
    root_der = synthetic_nitro.root.public_bytes(serialization.Encoding.DER)
    cabundle = list(cose_parts(nitro_document)[4]["cabundle"])
    document = with_payload(nitro_document, cabundle=[root_der, *cabundle[1:]])
    assert reason(document) == Reason.UNTRUSTED_ROOT


def test_synthetic_pki_verifies_only_under_its_own_root(synthetic_nitro):
    # SYNTHETIC: a test root -> intermediate -> leaf, all P-384, document signed by the leaf.
    user_data = cryptlet_report_data(b"\x02" + b"\x33" * 32, b"nonce-1")
    document = synthetic_nitro.document(user_data=user_data, nonce=b"nonce-1")
    pcr0 = bytes([1]) * 48
    policy = NitroPolicy(
        expected_pcrs={0: pcr0}, expected_user_data=user_data, expected_nonce=b"nonce-1", root=synthetic_nitro.root
    )
    doc = verify_nitro_document(document, policy, now=NITRO_NOW)
    assert doc.debuggable is False
    assert doc.to_evidence().binds(b"\x02" + b"\x33" * 32, b"nonce-1")
    default_root = NitroPolicy(expected_pcrs={0: pcr0})
    assert reason(document, default_root) == Reason.UNTRUSTED_ROOT


def test_synthetic_chain_with_a_broken_link(synthetic_nitro):
    # SYNTHETIC: the leaf claims the intermediate as issuer but is signed by an unrelated key.
    rogue_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = issue_cert(leaf_key, "synthetic-leaf", rogue_key, "synthetic-intermediate", ca=False)
    document = _synthetic_document(synthetic_nitro, leaf, leaf_key)
    policy = NitroPolicy(expected_pcrs={0: bytes([1]) * 48}, root=synthetic_nitro.root)
    assert reason(document, policy) == Reason.CHAIN_INVALID


def test_synthetic_chain_whose_leaf_is_a_ca(synthetic_nitro):
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = issue_cert(
        leaf_key, "synthetic-leaf", synthetic_nitro.intermediate_key, "synthetic-intermediate", ca=True, path_length=0
    )
    document = _synthetic_document(synthetic_nitro, leaf, leaf_key)
    policy = NitroPolicy(expected_pcrs={0: bytes([1]) * 48}, root=synthetic_nitro.root)
    assert reason(document, policy) == Reason.CHAIN_INVALID


def test_synthetic_missing_intermediate(synthetic_nitro):
    root_der = synthetic_nitro.root.public_bytes(serialization.Encoding.DER)
    document = synthetic_nitro.document(cabundle=[root_der])
    policy = NitroPolicy(expected_pcrs={0: bytes([1]) * 48}, root=synthetic_nitro.root)
    assert reason(document, policy) == Reason.CHAIN_INVALID


def _synthetic_document(pki, leaf: x509.Certificate, leaf_key: ec.EllipticCurvePrivateKey) -> bytes:
    payload = cbor2.loads(cose_parts(pki.document())[2])
    payload["certificate"] = leaf.public_bytes(serialization.Encoding.DER)
    return cose_sign(leaf_key, payload)


# --------------------------------------------------------------------------- algorithms and format


def test_only_es384_is_accepted(nitro_document):
    protected, unprotected, payload, signature, _ = cose_parts(nitro_document)
    for header in ({1: -7}, {1: -36}, {1: "ES384"}, {}):
        document = cbor2.dumps([cbor2.dumps(header), unprotected, payload, signature])
        assert reason(document) == Reason.UNSUPPORTED_ALG
    # alg only in the unprotected header does not count
    document = cbor2.dumps([b"", {1: -35}, payload, signature])
    assert reason(document) == Reason.UNSUPPORTED_ALG


def test_pcr_digest_must_be_sha384(nitro_document):
    assert reason(with_payload(nitro_document, digest="SHA256")) == Reason.UNSUPPORTED_ALG


@pytest.mark.parametrize(
    "build",
    [
        lambda d: b"",
        lambda d: b"\x00" * 10,
        lambda d: d + b"\x00",  # trailing bytes
        lambda d: d[:-1],  # truncated
        lambda d: cbor2.dumps(cbor2.CBORTag(98, cbor2.loads(d))),  # COSE_Sign, not COSE_Sign1
        lambda d: cbor2.dumps(list(cbor2.loads(d))[:3]),
        lambda d: cbor2.dumps({"not": "an array"}),
    ],
)
def test_malformed_documents(nitro_document, build):
    assert reason(build(nitro_document)) == Reason.MALFORMED


@pytest.mark.parametrize(
    "changes",
    [
        {"module_id": ""},
        {"timestamp": -1},
        {"timestamp": "1679495307405"},
        {"pcrs": {}},
        {"pcrs": {0: b"\x00" * 32}},
        {"pcrs": {40: b"\x00" * 48}},
        {"certificate": b"not a certificate"},
        {"cabundle": []},
        {"user_data": "text, not bytes"},
        {"nonce": b"\x00" * 513},
    ],
)
def test_malformed_payload_fields(nitro_document, changes):
    assert reason(with_payload(nitro_document, **changes)) == Reason.MALFORMED


def test_wrong_signature_length_is_malformed(nitro_document):
    protected, unprotected, payload, signature, _ = cose_parts(nitro_document)
    assert reason(cbor2.dumps([protected, unprotected, payload, signature[:-1]])) == Reason.MALFORMED


# --------------------------------------------------------------------------- pinned root and policy


def test_pinned_root_is_the_shipped_package_data():
    root = aws_nitro_root_g1()
    der = root.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == AWS_NITRO_ROOT_G1_SHA256
    assert root.subject.rfc4514_string() == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    assert x509.load_pem_x509_certificate(load_fixture("nitro/aws_nitro_root_g1.pem")) == root
    from importlib import resources

    shipped = resources.files("shared.attestation").joinpath("aws_nitro_root_g1.pem").read_bytes()
    assert shipped == load_fixture("nitro/aws_nitro_root_g1.pem")


@pytest.mark.parametrize(
    "changes",
    [
        {"expected_pcrs": {}},
        {"expected_pcrs": {0: b"\x00" * 32}},
        {"expected_pcrs": {32: ZERO_PCR}},
        {"expected_user_data": "text"},
        {"max_age": timedelta(0)},
    ],
)
def test_bad_policies_are_configuration_errors(changes):
    with pytest.raises(ConfigurationError):
        real_policy(**changes)
