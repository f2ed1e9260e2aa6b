"""The shared evidence pieces: key-binding digest, VerifiedEvidence, reasons, fixture integrity."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from shared.attestation import AttestationError, Reason, VerifiedEvidence, cryptlet_report_data
from shared.errors import VerificationError

from .conftest import FIXTURE_SHA256, FIXTURES, load_fixture

KEY = bytes.fromhex("02" + "ab" * 32)
NONCE = b"\x00\x01\x02\x03"


def test_report_data_is_sha256_of_key_then_nonce():
    assert cryptlet_report_data(KEY, NONCE) == hashlib.sha256(KEY + NONCE).digest()
    assert len(cryptlet_report_data(KEY, b"")) == 32
    with pytest.raises(TypeError):
        cryptlet_report_data("not bytes", NONCE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cryptlet_report_data(b"", NONCE)


def test_verified_evidence_binding():
    evidence = VerifiedEvidence(
        kind="nitro",
        measurement="00" * 48,
        debuggable=False,
        report_data=cryptlet_report_data(KEY, NONCE),
        issued_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert evidence.binds(KEY, NONCE)
    evidence.require_binding(KEY, NONCE)
    assert not evidence.binds(KEY, NONCE + b"\x04")
    with pytest.raises(AttestationError) as excinfo:
        evidence.require_binding(KEY, b"replay")
    assert excinfo.value.reason == Reason.RUNTIME_DATA_MISMATCH
    unbound = VerifiedEvidence("nitro", "", False, None, evidence.issued_at)
    assert not unbound.binds(KEY, NONCE)


def test_reasons_are_stable_strings():
    assert Reason.BAD_SIGNATURE == "bad_signature"
    assert len({r.value for r in Reason}) == len(Reason)
    error = AttestationError(Reason.PCR_MISMATCH.value, "PCR0 differs")
    assert isinstance(error, VerificationError)
    assert error.problem()["reason"] == "pcr_mismatch"


def test_every_fixture_file_is_pinned_and_attributed():
    files = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*") if p.is_file() and p.name != "README.md"}
    assert files == set(FIXTURE_SHA256)
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    for name, digest in FIXTURE_SHA256.items():
        load_fixture(name)  # checks the sha256
        assert name.split("/")[1] in readme and digest in readme, name
