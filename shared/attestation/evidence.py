"""What every evidence verifier shares: the failure reasons, the result type, key binding.

A verifier (``maa``, ``nitro``, later the ``process`` provider's software report) turns one
piece of evidence into a :class:`VerifiedEvidence` or raises
:class:`~shared.errors.AttestationError` whose ``reason`` is one of :class:`Reason`.

Key binding: a region proves that *its* cryptlet key lives inside the attested region by
putting ``report_data = SHA-256(cryptlet public key || nonce)`` into the hardware report
(see :func:`cryptlet_report_data` and ``docs/evidence.md``).
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

from shared.errors import AttestationError


class Reason(StrEnum):
    """Stable ``reason`` values of :class:`AttestationError` raised by the verifiers."""

    MALFORMED = "malformed"                      # not parseable / wrong types / missing fields
    UNSUPPORTED_ALG = "unsupported_alg"          # JWS alg other than RS256, COSE alg other than ES384
    UNKNOWN_KID = "unknown_kid"                  # no JWKS key with the token's kid
    UNTRUSTED_KEY = "untrusted_key"              # JWKS key inconsistent, expired or too weak
    UNTRUSTED_JKU = "untrusted_jku"              # jku header not under the pinned issuer
    BAD_SIGNATURE = "bad_signature"              # JWS / COSE signature does not verify
    WRONG_ISSUER = "wrong_issuer"                # iss differs from the pinned issuer
    EXPIRED = "expired"                          # token exp passed
    NOT_YET_VALID = "not_yet_valid"              # token nbf/iat or document timestamp in the future
    STALE = "stale"                              # older than the policy's max_age
    WRONG_ATTESTATION_TYPE = "wrong_attestation_type"
    DEBUGGABLE = "debuggable"                    # debug enclave / VM / Nitro debug mode
    MRENCLAVE_NOT_ALLOWED = "mrenclave_not_allowed"
    MRSIGNER_NOT_ALLOWED = "mrsigner_not_allowed"
    PRODUCT_ID_NOT_ALLOWED = "product_id_not_allowed"
    SVN_TOO_LOW = "svn_too_low"
    MEASUREMENT_NOT_ALLOWED = "measurement_not_allowed"  # SEV-SNP launch measurement
    HOST_DATA_NOT_ALLOWED = "host_data_not_allowed"      # SEV-SNP host data
    RUNTIME_DATA_MISMATCH = "runtime_data_mismatch"      # runtime/report data does not bind the key
    UNTRUSTED_ROOT = "untrusted_root"            # Nitro cabundle root is not the pinned root
    CHAIN_INVALID = "chain_invalid"              # Nitro certificate path does not validate
    CERT_EXPIRED = "cert_expired"                # a Nitro certificate is outside its validity
    PCR_MISMATCH = "pcr_mismatch"
    USER_DATA_MISMATCH = "user_data_mismatch"
    NONCE_MISMATCH = "nonce_mismatch"
    PUBLIC_KEY_MISMATCH = "public_key_mismatch"


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
    return moment.astimezone(timezone.utc)


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
            raise fail(Reason.RUNTIME_DATA_MISMATCH,
                       f"{self.kind} evidence does not bind the cryptlet key and nonce")
