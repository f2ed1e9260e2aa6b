"""End-to-end envelope verification: envelope -> signature -> registration entry -> key and digest.

Each failed link raises :class:`~shared.errors.VerificationError` whose ``reason`` names it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.encoding import to_hex
from shared.envelope import Envelope, verify_envelope
from shared.errors import VerificationError
from shared.ledger import LedgerEntry
from shared.registry import KIND_REGISTERED


@dataclass(frozen=True)
class VerifiedEnvelope:
    """An envelope whose signature, signer registration and digest all checked out."""

    envelope: Envelope
    registration: LedgerEntry

    def summary(self) -> str:
        e = self.envelope
        return (f"verified: {e.name} ({e.cryptlet}) signed {e.topic} #{e.sequence}; digest {to_hex(e.digest)[:18]}...; "
                f"registered at ledger {self.registration.stream}#{self.registration.sequence}")


def verify_against_registration(document: Any, entry: LedgerEntry) -> VerifiedEnvelope:
    """Verify an envelope document against the ledger entry that registered its signer."""
    envelope = document if isinstance(document, Envelope) else Envelope.from_dict(document)
    verify_envelope(envelope)  # signed by the key it names, low-S, well formed
    if entry.computed_hash() != entry.entry_hash:
        raise VerificationError("registration_tampered", f"ledger entry {entry.sequence} does not match its hash")
    if (envelope.registration.get("sequence") != entry.sequence
            or envelope.registration_hash.hex() != entry.entry_hash):
        raise VerificationError("registration_mismatch",
                                "the envelope cites a different registration entry than the ledger holds")
    if entry.kind != KIND_REGISTERED:
        raise VerificationError("registration_mismatch", f"ledger entry {entry.sequence} is a {entry.kind}, not a registration")
    registered = entry.payload
    if str(registered.get("address", "")).lower() != envelope.cryptlet.lower():
        raise VerificationError("signer_not_registered",
                                f"envelope signer {envelope.cryptlet} is not the key registered for {registered.get('name')}")
    if registered.get("digest") != to_hex(envelope.digest):
        raise VerificationError("digest_mismatch", "envelope digest differs from the registered package digest")
    if registered.get("name") != envelope.name:
        raise VerificationError("name_mismatch", f"envelope names {envelope.name!r}, registration is {registered.get('name')!r}")
    return VerifiedEnvelope(envelope, entry)
