"""Software evidence: the ``process`` provider's signed report, and its verifier.

A ``process`` region has no hardware root of trust, so its evidence says so. The provider's
*platform key* (Ed25519, derived from the platform sealing secret; see
:func:`shared.isolation.process.platform_key`) signs a report::

    {"format": "cryptlet-fabric/software-report/v1", "kind": "process",
     "security": "software", "debug": true, "notice": "SOFTWARE/DEBUG evidence ...",
     "measurement": "0x<package digest>", "report_data": "0x<32 bytes>",
     "issued_at": <unix ms>, "platform_key": "0x<Ed25519 public key>"}

The evidence blob is the RFC 8785 canonical JSON of ``{"report": ..., "signature": "0x..."}``
where the signature is Ed25519 over ``"cryptlet-fabric/software-report/v1\\n" || JCS(report)``.

:class:`SoftwarePolicy` accepts such evidence only when it says so explicitly
(``allow_software=True``) and pins the platform key(s) it trusts; the result is always
``debuggable``. Checks run in the order documented in ``docs/evidence.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.encoding import canonical_json
from shared.errors import ConfigurationError

from .evidence import Evidence, Reason, VerifiedEvidence, as_utc, fail

__all__ = [
    "KIND",
    "FORMAT",
    "NOTICE",
    "SoftwarePolicy",
    "sign_software_report",
    "verify_software_report",
    "platform_public_key",
]

KIND = "process"
FORMAT = "cryptlet-fabric/software-report/v1"
NOTICE = (
    "SOFTWARE/DEBUG evidence from the process isolation provider: signed by the host's platform key, "
    "no hardware root of trust. Accept only for development."
)
_CONTEXT = FORMAT.encode() + b"\n"
MAX_REPORT_BYTES = 16 * 1024
_FIELDS = {"format", "kind", "security", "debug", "notice", "measurement", "report_data", "issued_at", "platform_key"}


def platform_public_key(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key that verifiers pin."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_software_report(key: Ed25519PrivateKey, measurement: bytes, report_data: bytes, *, now: datetime) -> Evidence:
    """Issue software evidence that a region measuring ``measurement`` asked to bind ``report_data``."""
    if len(measurement) != 32 or len(report_data) != 32:
        raise ValueError("measurement and report_data must be 32 bytes")
    report = {
        "format": FORMAT,
        "kind": KIND,
        "security": "software",
        "debug": True,
        "notice": NOTICE,
        "measurement": "0x" + measurement.hex(),
        "report_data": "0x" + report_data.hex(),
        "issued_at": int(as_utc(now).timestamp() * 1000),
        "platform_key": "0x" + platform_public_key(key).hex(),
    }
    signature = key.sign(_CONTEXT + canonical_json(report))
    return Evidence(KIND, canonical_json({"report": report, "signature": "0x" + signature.hex()}))


def _hex32(value: Any, name: str, nbytes: int = 32) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * nbytes:
        raise fail(Reason.MALFORMED, f"{name} must be 0x-prefixed hex of {nbytes} bytes")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise fail(Reason.MALFORMED, f"{name} is not hex") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate member")
    return dict(pairs)


def _key_bytes(value: bytes | str) -> bytes:
    raw = value if isinstance(value, bytes) else bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value)
    if len(raw) != 32:
        raise ValueError
    return raw


@dataclass(frozen=True)
class SoftwarePolicy:
    """Whether, and from which platforms, software (``process``) evidence is accepted.

    ``allow_software`` must be set explicitly: the default policy rejects every software report
    with ``software_evidence``. An allowing policy must pin ``platform_keys`` (raw Ed25519
    public keys as bytes or hex). ``allowed_measurements`` (``None``: not checked) limits the
    package digests; ``max_age`` bounds ``now - issued_at``; ``leeway`` absorbs clock skew.
    """

    allow_software: bool = False
    platform_keys: frozenset[bytes | str] = frozenset()  # bytes once constructed
    allowed_measurements: frozenset[bytes] | None = None
    max_age: timedelta | None = None
    leeway: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        try:
            keys = frozenset(_key_bytes(k) for k in self.platform_keys)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "platform_keys must be 32-byte Ed25519 public keys (bytes or hex)", field="platform_keys"
            ) from None
        if self.allow_software and not keys:
            raise ConfigurationError(
                "a policy that allows software evidence must pin its platform key(s)", field="platform_keys"
            )
        object.__setattr__(self, "platform_keys", keys)
        if self.allowed_measurements is not None:
            try:
                object.__setattr__(
                    self, "allowed_measurements", frozenset(_key_bytes(m) for m in self.allowed_measurements)
                )
            except (ValueError, TypeError):
                raise ConfigurationError(
                    "allowed_measurements must be 32-byte digests (bytes or hex)", field="allowed_measurements"
                ) from None

    def verify(self, evidence: Evidence, *, now: datetime) -> VerifiedEvidence:
        if evidence.kind != KIND:
            raise fail(Reason.WRONG_ATTESTATION_TYPE, f"policy accepts {KIND!r} evidence, not {evidence.kind!r}")
        return verify_software_report(evidence.blob, self, now=now)


def verify_software_report(
    blob: bytes, policy: SoftwarePolicy, *, now: datetime, expected_report_data: bytes | None = None
) -> VerifiedEvidence:
    """Verify a software report against ``policy``; return it as :class:`VerifiedEvidence`."""
    now = as_utc(now)
    if not isinstance(blob, bytes) or len(blob) > MAX_REPORT_BYTES:
        raise fail(Reason.MALFORMED, f"software report must be at most {MAX_REPORT_BYTES} bytes")
    try:
        document = json.loads(blob, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        raise fail(Reason.MALFORMED, "software report is not a JSON object without duplicate members") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"report", "signature"}
        or not isinstance(document["report"], dict)
        or set(document["report"]) != _FIELDS
    ):
        raise fail(Reason.MALFORMED, "software report must be {report, signature} with the documented fields")
    if canonical_json(document) != blob:
        raise fail(Reason.MALFORMED, "software report is not in RFC 8785 canonical form")
    report = document["report"]
    if report["format"] != FORMAT or report["kind"] != KIND:
        raise fail(Reason.WRONG_ATTESTATION_TYPE, f"not a {FORMAT} report")
    if report["security"] != "software" or report["debug"] is not True:
        raise fail(Reason.MALFORMED, "a software report must say security=software and debug=true")
    if not policy.allow_software:
        raise fail(
            Reason.SOFTWARE_EVIDENCE,
            "evidence is a software/debug report from the process provider (no hardware root of trust) "
            "and the policy does not allow software evidence",
        )
    platform_key = _hex32(report["platform_key"], "platform_key")
    if platform_key not in policy.platform_keys:
        raise fail(
            Reason.UNTRUSTED_KEY,
            f"report signed by platform key 0x{platform_key.hex()[:16]}..., which the policy does not pin",
        )
    signature = _hex32(document["signature"], "signature", 64)
    try:
        Ed25519PublicKey.from_public_bytes(platform_key).verify(signature, _CONTEXT + canonical_json(report))
    except InvalidSignature:
        raise fail(Reason.BAD_SIGNATURE, "software report signature does not verify under its platform key") from None
    issued_ms = report["issued_at"]
    if not isinstance(issued_ms, int) or isinstance(issued_ms, bool) or issued_ms <= 0:
        raise fail(Reason.MALFORMED, "issued_at must be a positive integer (unix ms)")
    issued_at = datetime.fromtimestamp(issued_ms / 1000, tz=UTC)
    if issued_at > now + policy.leeway:
        raise fail(Reason.NOT_YET_VALID, "software report is issued in the future")
    if policy.max_age is not None and now - issued_at > policy.max_age + policy.leeway:
        raise fail(Reason.STALE, "software report is older than the policy's max_age")
    measurement = _hex32(report["measurement"], "measurement")
    if policy.allowed_measurements is not None and measurement not in policy.allowed_measurements:
        raise fail(Reason.MEASUREMENT_NOT_ALLOWED, "package digest is not in the policy's allowed measurements")
    report_data = _hex32(report["report_data"], "report_data")
    verified = VerifiedEvidence(
        kind=KIND, measurement=measurement.hex(), debuggable=True, report_data=report_data, issued_at=issued_at
    )
    if expected_report_data is not None and report_data != expected_report_data:
        raise fail(Reason.RUNTIME_DATA_MISMATCH, "software report does not carry the expected report data")
    return verified
