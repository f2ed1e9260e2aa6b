"""The process provider's software evidence: format, explicit opt-in, pinned platform key, and the
order of checks (docs/evidence.md, "Software reports")."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.attestation import (
    AttestationError,
    Evidence,
    Reason,
    SoftwarePolicy,
    cryptlet_report_data,
    sign_software_report,
    verify_software_report,
)
from shared.attestation.software import platform_public_key
from shared.encoding import canonical_json
from shared.errors import ConfigurationError
from shared.isolation.process import platform_key

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KEY = platform_key(b"\x07" * 32)
MEASUREMENT = bytes(range(32))
PUBLIC_KEY = b"\x04" + b"\x11" * 64
NONCE = b"\x22" * 32
REPORT_DATA = cryptlet_report_data(PUBLIC_KEY, NONCE)
EVIDENCE = sign_software_report(KEY, MEASUREMENT, REPORT_DATA, now=NOW)
ALLOW = SoftwarePolicy(allow_software=True, platform_keys=frozenset({platform_public_key(KEY)}))


def reason(blob: bytes, policy: SoftwarePolicy = ALLOW, now: datetime = NOW, **kwargs) -> str:
    with pytest.raises(AttestationError) as caught:
        verify_software_report(blob, policy, now=now, **kwargs)
    return caught.value.reason


def resigned(change) -> bytes:
    """The report with ``change`` applied and a valid signature by the same platform key."""
    from shared.attestation.software import _CONTEXT

    report = json.loads(EVIDENCE.blob)["report"]
    change(report)
    signature = KEY.sign(_CONTEXT + canonical_json(report))
    return canonical_json({"report": report, "signature": "0x" + signature.hex()})


def test_genuine_report_verifies_as_debug_software_evidence():
    verified = ALLOW.verify(EVIDENCE, now=NOW)
    assert verified.kind == "process" and verified.debuggable is True
    assert verified.measurement == MEASUREMENT.hex() and verified.issued_at == NOW
    verified.require_binding(PUBLIC_KEY, NONCE)
    report = json.loads(EVIDENCE.blob)["report"]
    assert report["security"] == "software" and report["debug"] is True
    assert report["notice"].startswith("SOFTWARE/DEBUG evidence")


def test_software_evidence_is_refused_unless_the_policy_allows_it_explicitly():
    assert reason(EVIDENCE.blob, SoftwarePolicy()) == Reason.SOFTWARE_EVIDENCE
    with pytest.raises(ConfigurationError):
        SoftwarePolicy(allow_software=True)  # allowing needs a pinned platform key
    with pytest.raises(ConfigurationError):
        SoftwarePolicy(allow_software=True, platform_keys=frozenset({"0x1234"}))


def test_another_platform_key_is_untrusted():
    other = platform_key(os.urandom(32))
    assert reason(sign_software_report(other, MEASUREMENT, REPORT_DATA, now=NOW).blob) == Reason.UNTRUSTED_KEY
    # pinning by hex works as well as by bytes
    assert SoftwarePolicy(
        allow_software=True, platform_keys=frozenset({"0x" + platform_public_key(other).hex()})
    ).verify(sign_software_report(other, MEASUREMENT, REPORT_DATA, now=NOW), now=NOW)


def test_signature_covers_every_field():
    forged = json.loads(EVIDENCE.blob)
    forged["report"]["measurement"] = "0x" + "ff" * 32
    assert reason(canonical_json(forged)) == Reason.BAD_SIGNATURE


def test_a_report_cannot_claim_to_be_hardware_or_not_debug():
    assert reason(resigned(lambda r: r.update(debug=False))) == Reason.MALFORMED
    assert reason(resigned(lambda r: r.update(security="hardware"))) == Reason.MALFORMED
    assert reason(resigned(lambda r: r.update(kind="maa-sgx"))) == Reason.WRONG_ATTESTATION_TYPE


def test_non_canonical_and_duplicate_member_encodings_are_malformed():
    document = json.loads(EVIDENCE.blob)
    assert reason(json.dumps(document, indent=1).encode()) == Reason.MALFORMED
    duplicated = EVIDENCE.blob.replace(b'{"report":', b'{"report":{},"report":', 1)
    assert reason(duplicated) == Reason.MALFORMED
    assert reason(b"[]") == Reason.MALFORMED and reason(b"\xff") == Reason.MALFORMED


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_is_rejected(position, mask):
    tampered = bytearray(EVIDENCE.blob)
    tampered[position % len(tampered)] ^= mask
    with pytest.raises(AttestationError):
        verify_software_report(bytes(tampered), ALLOW, now=NOW)


def test_time_checks():
    assert reason(EVIDENCE.blob, now=NOW - timedelta(minutes=5)) == Reason.NOT_YET_VALID
    aged = SoftwarePolicy(allow_software=True, platform_keys=ALLOW.platform_keys, max_age=timedelta(hours=1))
    assert aged.verify(EVIDENCE, now=NOW + timedelta(minutes=30))
    assert reason(EVIDENCE.blob, aged, now=NOW + timedelta(hours=2)) == Reason.STALE
    with pytest.raises(ValueError):
        verify_software_report(EVIDENCE.blob, ALLOW, now=datetime(2026, 5, 1))


def test_measurement_allow_list_and_expected_report_data():
    pinned = SoftwarePolicy(
        allow_software=True, platform_keys=ALLOW.platform_keys, allowed_measurements=frozenset({"0x" + "00" * 32})
    )
    assert reason(EVIDENCE.blob, pinned) == Reason.MEASUREMENT_NOT_ALLOWED
    assert reason(EVIDENCE.blob, expected_report_data=b"\x00" * 32) == Reason.RUNTIME_DATA_MISMATCH
    with pytest.raises(AttestationError) as caught:
        ALLOW.verify(EVIDENCE, now=NOW).require_binding(PUBLIC_KEY, b"\x23" * 32)
    assert caught.value.reason == Reason.RUNTIME_DATA_MISMATCH


def test_evidence_record_round_trip_and_tamper_detection():
    record = EVIDENCE.to_dict()
    assert record["hash"] == "0x" + EVIDENCE.hash.hex() and EVIDENCE.reference() == {
        "kind": "process",
        "hash": record["hash"],
    }
    assert Evidence.from_dict(record) == EVIDENCE
    tampered = {**record, "blob": base64.b64encode(EVIDENCE.blob.replace(b"software", b"softwarE")).decode()}
    with pytest.raises(AttestationError) as caught:
        Evidence.from_dict(tampered)
    assert caught.value.reason == Reason.EVIDENCE_TAMPERED
    with pytest.raises(AttestationError) as caught:
        Evidence.from_dict({**record, "blob": "not base64!"})
    assert caught.value.reason == Reason.MALFORMED
    with pytest.raises(AttestationError) as caught:
        ALLOW.verify(Evidence("nitro", EVIDENCE.blob), now=NOW)
    assert caught.value.reason == Reason.WRONG_ATTESTATION_TYPE
