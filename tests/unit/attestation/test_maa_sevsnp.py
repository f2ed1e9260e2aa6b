"""MAA tokens for AMD SEV-SNP VMs. ALL TOKENS HERE ARE SYNTHETIC.

No real SEV-SNP token is recorded in the handout, so these tokens are signed by a freshly
generated test RSA key (``synthetic_maa``) and verified against a test JWKS. Their claim names
and shapes follow Microsoft's published SEV-SNP sample token; the values are made up, except
that the report data follows the fabric's binding rule: SHA-256(public key || nonce) || 32 zeros.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.attestation import (
    SEVSNP,
    SGX,
    AttestationError,
    MaaPolicy,
    Reason,
    cryptlet_report_data,
    verify_maa_token,
)

from .conftest import SYNTHETIC_ISSUER

NOW = datetime(2024, 4, 14, 13, 0, tzinfo=UTC)
LAUNCH_MEASUREMENT = "04a170f39a3f702472ed0c7ecbda9babfc530e3caac475fdd607ff499177d14c278c5a15ad07ceacd5230ae63d507e9d"
HOST_DATA = "00" * 32
CRYPTLET_KEY = bytes.fromhex("02" + "11" * 32)  # a SEC1 compressed point (value irrelevant here)
NONCE = b"synthetic-nonce-0001"


def snp_claims(**changes: Any) -> dict[str, Any]:
    """SYNTHETIC SEV-SNP claims."""
    iat = int(NOW.timestamp()) - 60
    claims: dict[str, Any] = {
        "iss": SYNTHETIC_ISSUER,
        "iat": iat,
        "nbf": iat,
        "exp": iat + 8 * 3600,
        "jti": "synthetic",
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": "sevsnpvm",
        "x-ms-compliance-status": "azure-compliant-cvm",
        "x-ms-sevsnpvm-launchmeasurement": LAUNCH_MEASUREMENT,
        "x-ms-sevsnpvm-hostdata": HOST_DATA,
        "x-ms-sevsnpvm-is-debuggable": False,
        "x-ms-sevsnpvm-guestsvn": 2,
        "x-ms-sevsnpvm-vmpl": 0,
        "x-ms-sevsnpvm-reportdata": (cryptlet_report_data(CRYPTLET_KEY, NONCE) + bytes(32)).hex(),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def snp_policy(**changes: Any) -> MaaPolicy:
    fields: dict[str, Any] = dict(
        issuer=SYNTHETIC_ISSUER,
        attestation_types={SEVSNP},
        allowed_launch_measurements={LAUNCH_MEASUREMENT},
        allowed_host_data={HOST_DATA},
    )
    fields.update(changes)
    return MaaPolicy(**fields)


def verify(synthetic_maa, claims, policy=None, **kwargs):
    return verify_maa_token(synthetic_maa.sign(claims), synthetic_maa.jwks, policy or snp_policy(), now=NOW, **kwargs)


def test_synthetic_snp_token_verifies_and_binds_the_cryptlet_key(synthetic_maa):
    claims = verify(
        synthetic_maa,
        snp_claims(),
        expected_report_data=cryptlet_report_data(CRYPTLET_KEY, NONCE),
        expected_runtime_data=CRYPTLET_KEY + NONCE,
    )
    assert claims.attestation_type == SEVSNP
    assert claims.launch_measurement == LAUNCH_MEASUREMENT and claims.host_data == HOST_DATA
    assert claims.debuggable is False and claims.svn == 2
    assert claims.mrenclave is None and claims.runtime_data is None
    assert claims.report_data[:32] == hashlib.sha256(CRYPTLET_KEY + NONCE).digest()
    evidence = claims.to_evidence()
    assert (evidence.kind, evidence.measurement) == ("maa-sevsnp", LAUNCH_MEASUREMENT)
    assert evidence.binds(CRYPTLET_KEY, NONCE) and not evidence.binds(CRYPTLET_KEY, b"other nonce")


def test_synthetic_snp_binding_fails_for_another_key_or_nonce(synthetic_maa):
    for key, nonce in ((CRYPTLET_KEY, b"replayed-nonce"), (bytes.fromhex("03" + "22" * 32), NONCE)):
        with pytest.raises(AttestationError) as excinfo:
            verify(synthetic_maa, snp_claims(), expected_report_data=cryptlet_report_data(key, nonce))
        assert excinfo.value.reason == Reason.RUNTIME_DATA_MISMATCH
        with pytest.raises(AttestationError) as excinfo:
            verify(synthetic_maa, snp_claims(), expected_runtime_data=key + nonce)
        assert excinfo.value.reason == Reason.RUNTIME_DATA_MISMATCH


def test_synthetic_snp_debuggable_vm(synthetic_maa):
    claims = snp_claims(**{"x-ms-sevsnpvm-is-debuggable": True})
    with pytest.raises(AttestationError) as excinfo:
        verify(synthetic_maa, claims)
    assert excinfo.value.reason == Reason.DEBUGGABLE
    assert verify(synthetic_maa, claims, snp_policy(allow_debuggable=True)).debuggable is True


def test_synthetic_snp_launch_measurement_not_allowed(synthetic_maa):
    with pytest.raises(AttestationError) as excinfo:
        verify(synthetic_maa, snp_claims(), snp_policy(allowed_launch_measurements={"ab" * 48}))
    assert excinfo.value.reason == Reason.MEASUREMENT_NOT_ALLOWED


def test_synthetic_snp_host_data_not_allowed(synthetic_maa):
    with pytest.raises(AttestationError) as excinfo:
        verify(synthetic_maa, snp_claims(**{"x-ms-sevsnpvm-hostdata": "ff" * 32}))
    assert excinfo.value.reason == Reason.HOST_DATA_NOT_ALLOWED
    # A policy that does not pin host data accepts any.
    verify(synthetic_maa, snp_claims(**{"x-ms-sevsnpvm-hostdata": "ff" * 32}), snp_policy(allowed_host_data=None))


def test_synthetic_snp_guest_svn(synthetic_maa):
    with pytest.raises(AttestationError) as excinfo:
        verify(synthetic_maa, snp_claims(), snp_policy(min_svn=3))
    assert excinfo.value.reason == Reason.SVN_TOO_LOW


def test_synthetic_snp_token_under_an_sgx_policy(synthetic_maa):
    policy = MaaPolicy(issuer=SYNTHETIC_ISSUER, allowed_mrenclaves={"00" * 32})
    assert policy.attestation_types == {SGX}
    with pytest.raises(AttestationError) as excinfo:
        verify(synthetic_maa, snp_claims(), policy)
    assert excinfo.value.reason == Reason.WRONG_ATTESTATION_TYPE


def test_one_policy_may_accept_both_types(synthetic_maa, synthetic_sgx_claims):
    policy = snp_policy(
        attestation_types={SGX, SEVSNP},
        allowed_mrenclaves={"b779202618becb636768e5d902f28d524222735fafb539ea9ba07c3fc171a1c2"},
    )
    assert verify(synthetic_maa, snp_claims(), policy).attestation_type == SEVSNP
    sgx = verify_maa_token(
        synthetic_maa.sign(synthetic_sgx_claims),
        synthetic_maa.jwks,
        policy,
        now=datetime.fromtimestamp(synthetic_sgx_claims["iat"] + 60, tz=UTC),
    )
    assert sgx.attestation_type == SGX


@pytest.mark.parametrize(
    "changes",
    [
        {"x-ms-sevsnpvm-launchmeasurement": None},
        {"x-ms-sevsnpvm-launchmeasurement": "04a1"},
        {"x-ms-sevsnpvm-hostdata": None},
        {"x-ms-sevsnpvm-is-debuggable": None},
        {"x-ms-sevsnpvm-reportdata": "00" * 32},  # 32 instead of 64 bytes
        {"x-ms-sevsnpvm-guestsvn": "2"},
    ],
)
def test_synthetic_snp_malformed_claims(synthetic_maa, changes):
    with pytest.raises(AttestationError) as excinfo:
        verify(synthetic_maa, snp_claims(**changes))
    assert excinfo.value.reason == Reason.MALFORMED


def test_synthetic_snp_expired_and_stale(synthetic_maa):
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(
            synthetic_maa.sign(snp_claims()), synthetic_maa.jwks, snp_policy(), now=NOW + timedelta(hours=9)
        )
    assert excinfo.value.reason == Reason.EXPIRED
    with pytest.raises(AttestationError) as excinfo:
        verify_maa_token(
            synthetic_maa.sign(snp_claims()),
            synthetic_maa.jwks,
            snp_policy(max_age=timedelta(minutes=5)),
            now=NOW + timedelta(minutes=10),
        )
    assert excinfo.value.reason == Reason.STALE
