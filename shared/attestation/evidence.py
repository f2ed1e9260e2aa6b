"""What every evidence verifier shares: the evidence record, the failure reasons, the result
type, key binding and the policy protocol.

A verifier (``maa``, ``nitro``, ``software`` for the ``process`` provider's report) turns one
piece of evidence into a :class:`VerifiedEvidence` or raises
:class:`~shared.errors.AttestationError` whose ``reason`` is one of :class:`Reason`.
:class:`Evidence` is the format-independent record the fabric stores and envelopes cite (by
its SHA-256 ``hash``).

Key binding: a region proves that *its* cryptlet key lives inside the attested region by
putting ``report_data = SHA-256(cryptlet public key || nonce)`` into the hardware report
(see :func:`cryptlet_report_data` and ``docs/evidence.md``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from shared.errors import AttestationError


class Reason(StrEnum):
    """Stable ``reason`` values of :class:`AttestationError` raised by the verifiers."""

    MALFORMED = "malformed"  # not parseable / wrong types / missing fields
    UNSUPPORTED_ALG = "unsupported_alg"  # JWS alg other than RS256, COSE alg other than ES384
    UNKNOWN_KID = "unknown_kid"  # no JWKS key with the token's kid
    UNTRUSTED_KEY = "untrusted_key"  # JWKS key inconsistent, expired or too weak
    UNTRUSTED_JKU = "untrusted_jku"  # jku header not under the pinned issuer
    BAD_SIGNATURE = "bad_signature"  # JWS / COSE signature does not verify
    WRONG_ISSUER = "wrong_issuer"  # iss differs from the pinned issuer
    EXPIRED = "expired"  # token exp passed
    NOT_YET_VALID = "not_yet_valid"  # token nbf/iat or document timestamp in the future
    STALE = "stale"  # older than the policy's max_age
    WRONG_ATTESTATION_TYPE = "wrong_attestation_type"
    DEBUGGABLE = "debuggable"  # debug enclave / VM / Nitro debug mode
    MRENCLAVE_NOT_ALLOWED = "mrenclave_not_allowed"
    MRSIGNER_NOT_ALLOWED = "mrsigner_not_allowed"
    PRODUCT_ID_NOT_ALLOWED = "product_id_not_allowed"
    SVN_TOO_LOW = "svn_too_low"
    MEASUREMENT_NOT_ALLOWED = "measurement_not_allowed"  # SEV-SNP launch measurement
    HOST_DATA_NOT_ALLOWED = "host_data_not_allowed"  # SEV-SNP host data
    RUNTIME_DATA_MISMATCH = "runtime_data_mismatch"  # runtime/report data does not bind the key
    UNTRUSTED_ROOT = "untrusted_root"  # Nitro cabundle root is not the pinned root
    CHAIN_INVALID = "chain_invalid"  # Nitro certificate path does not validate
    CERT_EXPIRED = "cert_expired"  # a Nitro certificate is outside its validity
    PCR_MISMATCH = "pcr_mismatch"
    USER_DATA_MISMATCH = "user_data_mismatch"
    NONCE_MISMATCH = "nonce_mismatch"
    PUBLIC_KEY_MISMATCH = "public_key_mismatch"
    SOFTWARE_EVIDENCE = "software_evidence"  # software/debug evidence and the policy does not allow it
    EVIDENCE_TAMPERED = "evidence_tampered"  # the evidence bytes do not hash to the recorded hash


def fail(reason: Reason, detail: str, **extra: object) -> AttestationError:
    """An :class:`AttestationError` for ``reason`` (callers ``raise fail(...)``)."""
    return AttestationError(reason.value, detail, **extra)


def cryptlet_report_data(public_key: bytes, nonce: bytes) -> bytes:
    """The 32-byte value a region puts in its report data: ``SHA-256(public_key || nonce)``.

    ``public_key`` must be a fixed-length encoding (the fabric uses the uncompressed SEC1
    point it registers in the ledger) so the concatenation is unambiguous.
    """
    if not isinstance(public_key, bytes) or not isinstance(nonce, bytes) or not public_key:
        raise TypeError("public_key and nonce must be bytes (public_key non-empty)")
    return hashlib.sha256(public_key + nonce).digest()


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; naive datetimes are rejected (ambiguous clocks)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class VerifiedEvidence:
    """The format-independent summary of evidence that passed its verifier.

    ``kind``: ``"maa-sgx"``, ``"maa-sevsnp"`` or ``"nitro"`` (a software provider adds its own).
    ``measurement``: hex of the code identity (MRENCLAVE, SNP launch measurement, Nitro PCR0).
    ``report_data``: the 32-byte key-binding value the evidence carries, when it carries one.
    """

    kind: str
    measurement: str
    debuggable: bool
    report_data: bytes | None
    issued_at: datetime

    def binds(self, public_key: bytes, nonce: bytes) -> bool:
        """Whether ``report_data`` equals :func:`cryptlet_report_data` of ``public_key``/``nonce``."""
        if self.report_data is None:
            return False
        return hmac.compare_digest(self.report_data, cryptlet_report_data(public_key, nonce))

    def require_binding(self, public_key: bytes, nonce: bytes) -> None:
        """Raise ``runtime_data_mismatch`` unless the evidence binds ``public_key``/``nonce``."""
        if not self.binds(public_key, nonce):
            raise fail(Reason.RUNTIME_DATA_MISMATCH, f"{self.kind} evidence does not bind the cryptlet key and nonce")


MAX_EVIDENCE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Evidence:
    """One piece of attestation evidence: its ``kind`` and the exact bytes a verifier checks.

    ``kind`` names the verifier (``process``, ``maa-sgx``, ``maa-sevsnp``, ``nitro``); ``blob`` is
    the evidence as issued (the software report's canonical JSON, an MAA JWT's text, a Nitro
    COSE document). Envelopes cite it by :attr:`hash` = SHA-256(blob).
    """

    kind: str
    blob: bytes

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.blob).digest()

    def reference(self) -> dict[str, str]:
        """What envelopes and the catalog carry: ``{"kind", "hash"}`` (hash as 0x-hex)."""
        return {"kind": self.kind, "hash": "0x" + self.hash.hex()}

    def to_dict(self) -> dict[str, str]:
        """The stored form: the reference plus the blob in base64."""
        return {**self.reference(), "blob": base64.b64encode(self.blob).decode()}

    @classmethod
    def from_dict(cls, data: Any) -> Evidence:
        """Parse the stored form; the blob must hash to the recorded ``hash`` (``evidence_tampered``)."""
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or not isinstance(data.get("blob"), str):
            raise fail(Reason.MALFORMED, "evidence record must have a kind and a base64 blob")
        try:
            blob = base64.b64decode(data["blob"], validate=True)
        except (binascii.Error, ValueError):
            raise fail(Reason.MALFORMED, "evidence blob is not base64") from None
        if len(blob) > MAX_EVIDENCE_BYTES:
            raise fail(Reason.MALFORMED, f"evidence is larger than {MAX_EVIDENCE_BYTES} bytes")
        evidence = cls(data["kind"], blob)
        recorded = data.get("hash")
        if recorded is not None and not hmac.compare_digest(str(recorded).lower(), evidence.reference()["hash"]):
            raise fail(Reason.EVIDENCE_TAMPERED, "evidence bytes do not hash to the recorded evidence hash")
        return evidence


class EvidencePolicy(Protocol):
    """What a relying party accepts: turns :class:`Evidence` into :class:`VerifiedEvidence` or raises."""

    def verify(self, evidence: Evidence, *, now: datetime) -> VerifiedEvidence:
        """Verify ``evidence`` at ``now``; raise :class:`~shared.errors.AttestationError` naming the check."""
        ...
