"""``verify_against_registration`` with evidence: envelope -> key -> evidence -> digest, naming the
link and the check that failed. Keys, evidence and envelopes come from real process regions; the
registration entry is built exactly as the registry writes it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.attestation import SoftwarePolicy, cryptlet_report_data
from shared.encoding import from_hex
from shared.envelope import Domain
from shared.errors import VerificationError
from shared.host.registry import KIND_REGISTERED, attest_key, evidence_reference
from shared.isolation.process import ProcessProvider
from shared.ledger.chain import LedgerEntry
from shared.packages.digest import package_digest
from shared.verification import verify_against_registration

SAMPLE = Path(__file__).resolve().parents[3] / "cryptlet_packages" / "customer_validator"
TIME = "2026-05-01T12:00:00.000Z"


def entry_for(payload: dict, sequence: int = 7) -> LedgerEntry:
    prev = "ab" * 32
    return LedgerEntry(
        "registry",
        sequence,
        KIND_REGISTERED,
        TIME,
        payload,
        prev,
        LedgerEntry.hash_of("registry", sequence, KIND_REGISTERED, TIME, payload, prev),
    )


class Setup:
    """A registered key with evidence, and a way to get envelopes signed by it."""

    def __init__(self, provider: ProcessProvider, package: Path) -> None:
        self.provider, self.package = provider, package
        self.digest = package_digest(package)
        self.region = provider.create_region(package, self.digest, domain=Domain())
        self.key = self.region.call("generate_key")
        self.evidence = attest_key(self.region, self.key["public_key"])
        self.sequence = 0

    def payload(self, **changes) -> dict:
        payload = {
            "name": "customer_validator",
            "version": "1.0.0",
            "kind": "utility",
            "address": self.key["address"],
            "public_key": self.key["public_key"],
            "digest": "0x" + self.digest.hex(),
            "provider": "process",
            "package": "customer_validator",
            "manifest": {},
            "key": {"store": "TableKeyStore", "version": 1},
            "evidence": self.evidence,
        }
        payload.update(changes)
        return {k: v for k, v in payload.items() if v is not None}

    def envelope(self, entry: LedgerEntry, evidence: dict | None = None) -> dict:
        self.region.call(
            "bind",
            registration=entry.reference(),
            evidence=evidence if evidence is not None else evidence_reference(self.evidence),
        )
        self.sequence += 1
        return self.region.call("invoke", method="rules", args={}, sequence=self.sequence, request_id="0x" + "00" * 32)[
            "envelope"
        ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    package = tmp_path_factory.mktemp("chain") / "customer_validator"
    shutil.copytree(SAMPLE, package, ignore=shutil.ignore_patterns("__pycache__"))
    provider = ProcessProvider(os.urandom(32))
    state = Setup(provider, package)
    yield state
    state.region.close()
    provider.close()


def failure(document: dict, entry: LedgerEntry, policy) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify_against_registration(document, entry, evidence_policy=policy)
    return caught.value


def test_the_whole_chain_verifies(setup):
    entry = entry_for(setup.payload())
    verified = verify_against_registration(
        setup.envelope(entry), entry, evidence_policy=setup.provider.evidence_policy()
    )
    assert verified.evidence is not None and verified.evidence.debuggable
    assert "evidence process (software/debug) binds the key" in verified.summary()
    unchecked = verify_against_registration(setup.envelope(entry), entry)
    assert unchecked.evidence is None and "evidence not checked" in unchecked.summary()


def _other_key_evidence(setup: Setup) -> dict:
    region = setup.provider.create_region(setup.package, setup.digest, domain=Domain())
    try:
        other = region.call("generate_key")
        return attest_key(region, other["public_key"])
    finally:
        region.close()


def _other_package_evidence(setup: Setup, tmp_path: Path) -> dict:
    """Evidence from a region of a changed package, over the registered key's report data."""
    package = tmp_path / "customer_validator"
    shutil.copytree(setup.package, package)
    (package / "extra.txt").write_text("another measurement")
    region = setup.provider.create_region(package, package_digest(package), domain=Domain())
    try:
        nonce = from_hex(setup.evidence["nonce"])
        evidence = region.evidence(cryptlet_report_data(from_hex(setup.key["public_key"]), nonce))
    finally:
        region.close()
    return {**evidence.to_dict(), "nonce": setup.evidence["nonce"]}


def _registered_with(setup: Setup, evidence: dict) -> tuple[dict, dict, SoftwarePolicy]:
    """A registration recording ``evidence``, an envelope citing it, the provider's own policy."""
    return {"evidence": evidence}, evidence_reference(evidence), setup.provider.evidence_policy()


CASES: list[tuple[str, str, str, Callable]] = [
    # (link, reason, description, make(setup, tmp_path) -> (payload changes, envelope evidence or None, policy))
    (
        "evidence",
        "software_evidence",
        "the default policy does not accept software evidence",
        lambda s, t: ({}, None, SoftwarePolicy()),
    ),
    (
        "evidence",
        "untrusted_key",
        "evidence of another platform",
        lambda s, t: ({}, None, ProcessProvider(os.urandom(32)).evidence_policy()),
    ),
    (
        "evidence",
        "evidence_missing",
        "a registration without evidence",
        lambda s, t: ({"evidence": None}, None, s.provider.evidence_policy()),
    ),
    (
        "evidence",
        "evidence_mismatch",
        "an envelope citing other evidence",
        lambda s, t: ({}, {"kind": "process", "hash": "0x" + "33" * 32}, s.provider.evidence_policy()),
    ),
    (
        "evidence",
        "evidence_tampered",
        "evidence bytes changed after the hash was recorded",
        lambda s, t: (
            {"evidence": {**s.evidence, "hash": "0x" + "44" * 32}},
            {"kind": "process", "hash": "0x" + "44" * 32},
            s.provider.evidence_policy(),
        ),
    ),
    (
        "evidence",
        "runtime_data_mismatch",
        "evidence binding another key",
        lambda s, t: _registered_with(s, _other_key_evidence(s)),
    ),
    (
        "digest",
        "measurement_mismatch",
        "evidence of another package",
        lambda s, t: _registered_with(s, _other_package_evidence(s, t)),
    ),
    (
        "key",
        "key_mismatch",
        "a registered public key that is not the registered address's",
        lambda s, t: ({"public_key": "0x04" + "55" * 64}, None, s.provider.evidence_policy()),
    ),
]


@pytest.mark.parametrize("link, reason, what, make", CASES, ids=[c[1] for c in CASES])
def test_each_broken_link_is_named(setup, tmp_path, link, reason, what, make):
    changes, cited, policy = make(setup, tmp_path)
    entry = entry_for(setup.payload(**changes))
    error = failure(setup.envelope(entry, cited), entry, policy)
    assert error.reason == reason, (what, error.detail)
    assert error.detail.startswith(f"{link}: ") and error.extra["link"] == link
