"""Verify AWS Nitro Enclaves attestation documents (COSE_Sign1, ES384, AWS Nitro PKI).

An enclave asks its Nitro Security Module for an attestation document: a COSE_Sign1 whose CBOR
payload carries the enclave's PCRs, optional ``user_data``/``nonce``/``public_key`` and a
certificate chain (``cabundle`` + ``certificate``) from the AWS Nitro root to a short-lived leaf
key that signed the document. :func:`verify_nitro_document` checks all of it against a
:class:`NitroPolicy` at an explicit ``now``::

    doc = verify_nitro_document(data, NitroPolicy(expected_pcrs={0: pcr0},
                                                  expected_user_data=report_data),
                                now=datetime.now(timezone.utc))

The trust anchor is the AWS Nitro Enclaves Root G1 shipped next to this module
(``aws_nitro_root_g1.pem``) and pinned by the SHA-256 of its DER.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from types import MappingProxyType
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
from cryptography.x509.verification import VerificationError as X509VerificationError

from shared.errors import ConfigurationError

from .evidence import Reason, VerifiedEvidence, as_utc, fail

__all__ = ["AWS_NITRO_ROOT_G1_SHA256", "NitroPolicy", "NitroDocument", "aws_nitro_root_g1", "verify_nitro_document"]

#: SHA-256 of the DER of the AWS Nitro Enclaves Root G1 certificate (CN=aws.nitro-enclaves).
AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
_ROOT_RESOURCE = "aws_nitro_root_g1.pem"

COSE_ALG_ES384 = -35
COSE_HEADER_ALG = 1
COSE_HEADER_CRIT = 2
COSE_SIGN1_TAG = 18
MAX_DOCUMENT_BYTES = 64 * 1024
_PCR_LEN = 48  # digest "SHA384"
_ES384_SIG_LEN = 96  # r || s, 48 bytes each


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@functools.cache
def aws_nitro_root_g1() -> x509.Certificate:
    """The pinned AWS Nitro Enclaves Root G1 (package data, checked against its fingerprint)."""
    pem = resources.files(__package__).joinpath(_ROOT_RESOURCE).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    if hashlib.sha256(_der(cert)).hexdigest() != AWS_NITRO_ROOT_G1_SHA256:
        raise ConfigurationError(
            f"{_ROOT_RESOURCE} does not match the pinned AWS Nitro root fingerprint; the package data was modified"
        )
    return cert


# --------------------------------------------------------------------------- policy


def _pcr_value(index: Any, value: Any) -> tuple[int, bytes]:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 31:
        raise ConfigurationError("expected_pcrs keys must be PCR indexes 0..31", field="expected_pcrs")
    raw = bytes.fromhex(value) if isinstance(value, str) else value
    if not isinstance(raw, bytes) or len(raw) != _PCR_LEN:
        raise ConfigurationError(f"expected PCR{index} must be {_PCR_LEN} bytes (SHA-384)", field="expected_pcrs")
    return index, raw


@dataclass(frozen=True)
class NitroPolicy:
    """What a Nitro attestation document must say.

    ``expected_pcrs`` (index -> 48 bytes or hex) must pin at least one PCR (normally PCR0, the
    enclave image). ``expected_user_data``/``expected_nonce``/``expected_public_key`` must equal
    the document's fields when given (``None`` = not checked). Debug-mode enclaves (PCR0 all
    zeros) are refused unless ``allow_debug``. ``max_age`` bounds ``now - timestamp``.
    ``root`` replaces the pinned AWS root (tests only).
    """

    expected_pcrs: Mapping[int, bytes] = field(default_factory=dict, hash=False)
    expected_user_data: bytes | None = None
    expected_nonce: bytes | None = None
    expected_public_key: bytes | None = None
    allow_debug: bool = False
    max_age: timedelta | None = None
    leeway: timedelta = timedelta(seconds=30)
    root: x509.Certificate | None = None

    def __post_init__(self) -> None:
        pcrs = dict(_pcr_value(i, v) for i, v in dict(self.expected_pcrs).items())
        if not pcrs:
            raise ConfigurationError("a Nitro policy must pin at least one PCR (normally PCR0)", field="expected_pcrs")
        object.__setattr__(self, "expected_pcrs", MappingProxyType(pcrs))
        for name in ("expected_user_data", "expected_nonce", "expected_public_key"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bytes):
                raise ConfigurationError(f"{name} must be bytes", field=name)
        if self.leeway < timedelta(0) or (self.max_age is not None and self.max_age <= timedelta(0)):
            raise ConfigurationError("leeway must be >= 0 and max_age > 0", field="max_age")

    @property
    def trust_anchor(self) -> x509.Certificate:
        return self.root if self.root is not None else aws_nitro_root_g1()


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class NitroDocument:
    """The verified content of a Nitro attestation document."""

    module_id: str
    digest: str
    timestamp: datetime
    pcrs: Mapping[int, bytes]
    certificate: x509.Certificate
    cabundle: tuple[x509.Certificate, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None

    @property
    def debuggable(self) -> bool:
        """Nitro debug-mode enclaves report all-zero image PCRs; PCR0 all zeros means debug."""
        return self.pcrs.get(0, b"") == bytes(_PCR_LEN)

    def to_evidence(self) -> VerifiedEvidence:
        return VerifiedEvidence(
            kind="nitro",
            measurement=self.pcrs[0].hex() if 0 in self.pcrs else "",
            debuggable=self.debuggable,
            report_data=self.user_data,
            issued_at=self.timestamp,
        )


# --------------------------------------------------------------------------- decoding


def _cbor(data: bytes, what: str) -> Any:
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream, allow_duplicate_keys=False, allow_indefinite=False, max_depth=16).decode()
    except (cbor2.CBORError, ValueError, TypeError, RecursionError) as exc:
        raise fail(Reason.MALFORMED, f"{what} is not valid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise fail(Reason.MALFORMED, f"{what} has trailing bytes after its CBOR item")
    return value


def _optional_bytes(payload: Mapping[str, Any], name: str, max_len: int) -> bytes | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) > max_len:
        raise fail(Reason.MALFORMED, f"payload field {name} must be at most {max_len} bytes")
    return value


def _load_cert(der: Any, what: str) -> x509.Certificate:
    if not isinstance(der, bytes) or not 1 <= len(der) <= 1024:
        raise fail(Reason.MALFORMED, f"{what} must be 1..1024 bytes of DER")
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is not a ValueError
        raise fail(Reason.MALFORMED, f"{what} is not a DER certificate") from None


def _decode(document: bytes) -> tuple[bytes, bytes, bytes, dict[str, Any]]:
    """(protected, payload, signature, payload map) of a COSE_Sign1 attestation document."""
    if not isinstance(document, (bytes, bytearray)) or len(document) > MAX_DOCUMENT_BYTES:
        raise fail(Reason.MALFORMED, "the attestation document is not bytes of acceptable size")
    item = _cbor(bytes(document), "the attestation document")
    if isinstance(item, cbor2.CBORTag):
        if item.tag != COSE_SIGN1_TAG:
            raise fail(Reason.MALFORMED, f"CBOR tag {item.tag} is not COSE_Sign1 (18)")
        item = item.value
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise fail(Reason.MALFORMED, "the document is not a COSE_Sign1 array of four items")
    protected, unprotected, payload, signature = item
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)) or not isinstance(unprotected, Mapping):
        raise fail(Reason.MALFORMED, "COSE_Sign1 items have the wrong types")
    headers = _cbor(protected, "the protected header") if protected else {}
    if not isinstance(headers, dict):
        raise fail(Reason.MALFORMED, "the protected header is not a map")
    if COSE_HEADER_CRIT in headers:
        raise fail(Reason.MALFORMED, "the protected header has critical parameters")
    alg = headers.get(COSE_HEADER_ALG)
    if alg != COSE_ALG_ES384 or COSE_HEADER_ALG in unprotected:
        raise fail(Reason.UNSUPPORTED_ALG, f"COSE alg {alg!r} is not ES384 (-35) in the protected header")
    if len(signature) != _ES384_SIG_LEN:
        raise fail(Reason.MALFORMED, f"an ES384 signature is {_ES384_SIG_LEN} bytes, got {len(signature)}")
    fields = _cbor(payload, "the payload")
    if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
        raise fail(Reason.MALFORMED, "the payload is not a map with text keys")
    return protected, payload, signature, fields


def _parse_payload(fields: Mapping[str, Any]) -> NitroDocument:
    module_id = fields.get("module_id")
    if not isinstance(module_id, str) or not module_id:
        raise fail(Reason.MALFORMED, "payload field module_id must be non-empty text")
    digest = fields.get("digest")
    if not isinstance(digest, str):
        raise fail(Reason.MALFORMED, "payload field digest must be text")
    if digest != "SHA384":
        raise fail(Reason.UNSUPPORTED_ALG, f"PCR digest {digest!r} is not SHA384")
    millis = fields.get("timestamp")
    if not isinstance(millis, int) or isinstance(millis, bool) or millis <= 0:
        raise fail(Reason.MALFORMED, "payload field timestamp must be a positive integer (ms)")
    try:
        timestamp = datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise fail(Reason.MALFORMED, "payload timestamp is out of range") from None
    pcrs = fields.get("pcrs")
    if (
        not isinstance(pcrs, dict)
        or not 1 <= len(pcrs) <= 32
        or not all(
            isinstance(i, int)
            and not isinstance(i, bool)
            and 0 <= i <= 31
            and isinstance(v, bytes)
            and len(v) == _PCR_LEN
            for i, v in pcrs.items()
        )
    ):
        raise fail(Reason.MALFORMED, f"payload field pcrs must map 0..31 to {_PCR_LEN}-byte values")
    cabundle = fields.get("cabundle")
    if not isinstance(cabundle, (list, tuple)) or not cabundle:
        raise fail(Reason.MALFORMED, "payload field cabundle must be a non-empty array")
    return NitroDocument(
        module_id=module_id,
        digest=digest,
        timestamp=timestamp,
        pcrs=MappingProxyType(dict(pcrs)),
        certificate=_load_cert(fields.get("certificate"), "payload field certificate"),
        cabundle=tuple(_load_cert(c, f"cabundle[{i}]") for i, c in enumerate(cabundle)),
        public_key=_optional_bytes(fields, "public_key", 1024),
        user_data=_optional_bytes(fields, "user_data", 512),
        nonce=_optional_bytes(fields, "nonce", 512),
    )


# --------------------------------------------------------------------------- chain


def _leaf_extensions(policy: Any, cert: x509.Certificate, value: Any) -> None:
    if isinstance(value, x509.BasicConstraints) and value.ca:
        raise ValueError("the signing certificate is a CA certificate")
    if isinstance(value, x509.KeyUsage) and not value.digital_signature:
        raise ValueError("the signing certificate may not sign (no digitalSignature key usage)")


def _check_chain(doc: NitroDocument, anchor: x509.Certificate, now: datetime) -> ec.EllipticCurvePublicKey:
    """Pinned root, validity of every certificate, then a full X.509 path validation."""
    if not hmac.compare_digest(_der(doc.cabundle[0]), _der(anchor)):
        raise fail(
            Reason.UNTRUSTED_ROOT,
            "cabundle[0] is not the pinned AWS Nitro root",
            root_sha256=hashlib.sha256(_der(doc.cabundle[0])).hexdigest(),
        )
    for cert in (*doc.cabundle, doc.certificate):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise fail(
                Reason.CERT_EXPIRED,
                f"certificate {cert.subject.rfc4514_string()} is valid from "
                f"{cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()}",
            )
    ee_policy = (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _leaf_extensions)
        .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _leaf_extensions)
    )
    verifier = (
        PolicyBuilder()
        .store(Store([anchor]))
        .time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(doc.certificate, list(doc.cabundle[1:]))
    except X509VerificationError as exc:
        raise fail(Reason.CHAIN_INVALID, f"the certificate chain does not validate: {exc}") from None
    key = doc.certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise fail(Reason.UNSUPPORTED_ALG, "the signing certificate does not hold a P-384 key")
    return key


# --------------------------------------------------------------------------- verification


def verify_nitro_document(document: bytes, policy: NitroPolicy, *, now: datetime) -> NitroDocument:
    """Verify a Nitro attestation document (raw CBOR bytes) against ``policy`` at ``now``.

    Returns the verified :class:`NitroDocument`; raises
    :class:`~shared.errors.AttestationError` with a stable ``reason`` on the first failed check.
    """
    now = as_utc(now)
    protected, payload, signature, fields = _decode(document)
    doc = _parse_payload(fields)
    key = _check_chain(doc, policy.trust_anchor, now)

    sig_structure = cbor2.dumps(["Signature1", protected, b"", payload])
    der_signature = encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    try:
        key.verify(der_signature, sig_structure, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise fail(Reason.BAD_SIGNATURE, "the COSE signature does not verify with the leaf key") from None

    if doc.timestamp > now + policy.leeway:
        raise fail(Reason.NOT_YET_VALID, f"document timestamp {doc.timestamp.isoformat()} is in the future")
    if policy.max_age is not None and now - doc.timestamp > policy.max_age + policy.leeway:
        raise fail(Reason.STALE, f"document from {doc.timestamp.isoformat()} is older than the policy allows")
    if doc.debuggable and not policy.allow_debug:
        raise fail(Reason.DEBUGGABLE, "the enclave runs in debug mode (PCR0 is all zeros)")
    for index, expected in sorted(policy.expected_pcrs.items()):
        actual = doc.pcrs.get(index)
        if actual is None or not hmac.compare_digest(actual, expected):
            raise fail(Reason.PCR_MISMATCH, f"PCR{index} differs from the policy", pcr=index)
    _expect(doc.user_data, policy.expected_user_data, Reason.USER_DATA_MISMATCH, "user_data")
    _expect(doc.nonce, policy.expected_nonce, Reason.NONCE_MISMATCH, "nonce")
    _expect(doc.public_key, policy.expected_public_key, Reason.PUBLIC_KEY_MISMATCH, "public_key")
    return doc


def _expect(actual: bytes | None, expected: bytes | None, reason: Reason, name: str) -> None:
    if expected is not None and (actual is None or not hmac.compare_digest(actual, expected)):
        raise fail(reason, f"the document's {name} differs from the expected value")
