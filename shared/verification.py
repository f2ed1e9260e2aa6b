"""End-to-end envelope verification, one link after the other:

envelope (well formed, signature) -> registration entry (the ledger entry it cites) -> key (the
signer is the registered key) -> evidence (the envelope cites the registered evidence, which
verifies under the caller's policy and binds the registered key) -> digest (envelope, registration
and evidence agree on the package measurement, measured with a known ``digest_alg``; given the
package folder, it measures the registered digest under the registered algorithm).

Each failed link raises :class:`~shared.errors.VerificationError` whose ``reason`` names the
check and whose ``link`` (and the start of its message) names the link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.attestation.evidence import Evidence, EvidencePolicy, VerifiedEvidence
from shared.encoding import from_hex, to_hex
from shared.envelope import Envelope, address_of, verify_envelope
from shared.errors import AttestationError, InvalidInput, VerificationError
from shared.keys.history import KeyRecord
from shared.ledger.chain import LedgerEntry
from shared.ledger.kinds import KEY_ESTABLISHING, digest_alg
from shared.packages.digest import DIGEST_ALGS, measure


@dataclass(frozen=True)
class VerifiedEnvelope:
    """An envelope whose signature, signer registration and digest all checked out."""

    envelope: Envelope
    registration: LedgerEntry
    evidence: VerifiedEvidence | None = None
    #: how the registered digest was measured (``cfpkg-v1`` for entries that do not say)
    digest_alg: str = "cfpkg-v1"
    #: whether a package folder was measured and found to be the registered one
    package_checked: bool = False

    def summary(self) -> str:
        e = self.envelope
        if self.evidence is None:
            attested = "evidence not checked"
        else:
            attested = (
                f"evidence {self.evidence.kind}"
                + (" (software/debug)" if self.evidence.debuggable else "")
                + " binds the key"
            )
        package = "; the package measures it" if self.package_checked else ""
        return (
            f"verified: {e.name} ({e.cryptlet}) signed {e.topic} #{e.sequence}; digest {to_hex(e.digest)[:18]}... "
            f"({self.digest_alg}){package}; registered at ledger "
            f"{self.registration.stream}#{self.registration.sequence}; {attested}"
        )


def _broken(link: str, reason: str, detail: str) -> VerificationError:
    return VerificationError(reason, f"{link}: {detail}", link=link)


def verify_against_registration(
    document: Any,
    entry: LedgerEntry,
    *,
    evidence_policy: EvidencePolicy | None = None,
    now: datetime | None = None,
    key: KeyRecord | None = None,
    package: Path | None = None,
) -> VerifiedEnvelope:
    """Verify an envelope document against the ledger entry that registered its signer.

    With ``evidence_policy`` the evidence link is checked too (``now`` defaults to the current
    time); without it the result says the evidence was not checked. With ``key`` (the signer's
    :class:`~shared.keys.history.KeyRecord` replayed from the ledger) the key link also checks that
    the key was not revoked, rotated out or retired before the envelope's timestamp
    (``key_revoked``, ``key_superseded``, ``cryptlet_retired``). With ``package`` (a package folder)
    the digest link also measures it with the entry's ``digest_alg`` (``package_mismatch``).
    """
    try:
        envelope = document if isinstance(document, Envelope) else Envelope.from_dict(document)
        verify_envelope(envelope)  # signed by the key it names, low-S, well formed
    except VerificationError as exc:
        raise _broken("envelope", exc.reason, exc.detail) from None
    if entry.computed_hash() != entry.entry_hash:
        raise _broken("registration", "registration_tampered", f"ledger entry {entry.sequence} does not match its hash")
    if envelope.registration.get("sequence") != entry.sequence or envelope.registration_hash.hex() != entry.entry_hash:
        raise _broken(
            "registration",
            "registration_mismatch",
            "the envelope cites a different registration entry than the ledger holds",
        )
    if entry.kind not in KEY_ESTABLISHING:  # cryptlet.registered, or cryptlet.key_rotated for a rotated key
        raise _broken(
            "registration",
            "registration_mismatch",
            f"ledger entry {entry.sequence} is a {entry.kind}, not a registration",
        )
    registered = entry.payload
    if str(registered.get("address", "")).lower() != envelope.cryptlet.lower():
        raise _broken(
            "key",
            "signer_not_registered",
            f"envelope signer {envelope.cryptlet} is not the key registered for {registered.get('name')}",
        )
    try:
        public_key = from_hex(registered.get("public_key", ""), length=65, field="public_key")
        key_matches = address_of(public_key).lower() == envelope.cryptlet.lower()
    except (InvalidInput, ValueError):
        key_matches = False
    if not key_matches:
        raise _broken("key", "key_mismatch", "the registered public key does not hash to the registered address")
    if key is not None:
        if key.address.lower() != envelope.cryptlet.lower() or key.established.sequence != entry.sequence:
            raise _broken("key", "key_mismatch", "the key history given is not the signer's")
        try:
            key.check_signed_at(envelope.timestamp_ms)
        except VerificationError as exc:
            raise _broken("key", exc.reason, exc.detail) from None
    verified_evidence = None
    if evidence_policy is not None:
        verified_evidence = _check_evidence(envelope, registered, public_key, evidence_policy, now or datetime.now(UTC))
    if registered.get("digest") != to_hex(envelope.digest):
        raise _broken("digest", "digest_mismatch", "envelope digest differs from the registered package digest")
    if verified_evidence is not None and "0x" + verified_evidence.measurement != registered.get("digest"):
        raise _broken(
            "digest",
            "measurement_mismatch",
            "the evidence attests another package measurement than the registered digest",
        )
    if registered.get("name") != envelope.name:
        raise _broken(
            "digest", "name_mismatch", f"envelope names {envelope.name!r}, registration is {registered.get('name')!r}"
        )
    alg = digest_alg(registered)
    if alg not in DIGEST_ALGS:
        raise _broken(
            "digest", "unknown_digest_alg", f"the registration's digest_alg {alg!r} is not one of {DIGEST_ALGS}"
        )
    if package is not None:
        try:
            measured = measure(package).digest(alg)
        except InvalidInput as exc:
            raise _broken("digest", "package_mismatch", f"the package cannot be measured: {exc.detail}") from None
        if to_hex(measured) != registered.get("digest"):
            raise _broken(
                "digest",
                "package_mismatch",
                f"the package measures {to_hex(measured)} ({alg}), not the registered digest",
            )
    return VerifiedEnvelope(envelope, entry, verified_evidence, alg, package is not None)


def _check_evidence(
    envelope: Envelope, registered: dict[str, Any], public_key: bytes, policy: EvidencePolicy, now: datetime
) -> VerifiedEvidence:
    record = registered.get("evidence")
    if not isinstance(record, dict):
        raise _broken("evidence", "evidence_missing", "the registration entry records no attestation evidence")
    cited = str((envelope.evidence or {}).get("hash", "")).lower()
    if not cited or cited != str(record.get("hash", "")).lower():
        raise _broken("evidence", "evidence_mismatch", "the envelope does not cite the registered evidence")
    try:
        evidence = Evidence.from_dict(record)
        verified = policy.verify(evidence, now=now)
        nonce = from_hex(record.get("nonce", ""), length=32, field="evidence.nonce")
        verified.require_binding(public_key, nonce)
    except AttestationError as exc:
        raise AttestationError(exc.reason, f"evidence: {exc.detail}", link="evidence") from None
    except InvalidInput as exc:
        raise _broken("evidence", "malformed", exc.detail) from None
    return verified
