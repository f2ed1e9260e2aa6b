"""The isolation provider interface, after the paper's enclave layer.

The paper (Project Bletchley, "Cryptlets in Depth") builds on Microsoft's Secure Computation
Interfaces; its calls map onto ours as follows:

==========================================================  =================================================
paper                                                        here
==========================================================  =================================================
``IsolatedRegionCreate(packagePath, isolationProvider,       :meth:`IsolationProvider.create_region`
callOutHandler)``                                            ``(package_dir, expected_digest, domain=,
                                                             call_out=)``
call-in (``callInId``, input buffer -> output buffer)        :meth:`Region.call` ``(op, **params)``
``CALL_OUT_HANDLER(callOutId, input -> output)``             :data:`~shared.isolation.callout.CallOutHandler`
                                                             ``(op, params) -> result``; cryptlet code calls
                                                             ``fabric_host.call(op, ...)``
signature for output (keys only inside the region)           the container signs every envelope
                                                             (``invoke``); keys leave only sealed
``IsolatedRegionGetDigest(packagePath)``                     :meth:`IsolationProvider.digest`
``IsolatedRegionCheckSignature(provider, digest, message,    :meth:`IsolationProvider.check_signature`
signature)``                                                 ``(envelope, digest, address)``
(not in the paper) evidence over report data                 :meth:`Region.evidence` ``(report_data)``
(not in the paper) verify evidence against a policy          :meth:`IsolationProvider.verify_evidence`
                                                             ``(evidence, policy, now=)``
==========================================================  =================================================

Report data binds the cryptlet key: ``report_data = SHA-256(public key || nonce)``
(:func:`shared.attestation.cryptlet_report_data`), so verified evidence proves that the key
which signs envelopes lives in a region of the attested measurement.
"""

from __future__ import annotations

import abc
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.attestation.evidence import Evidence, EvidencePolicy, Reason, VerifiedEvidence, fail
from shared.envelope import Domain, Envelope, verify_envelope
from shared.errors import VerificationError
from shared.isolation.callout import CallOutHandler
from shared.packages.digest import package_digest


class Region(abc.ABC):
    """One isolated region running one cryptlet package."""

    #: The measurement the region verified before loading its package.
    digest: bytes

    @abc.abstractmethod
    def call(self, op: str, **params: Any) -> dict[str, Any]:
        """Call into the region; return its result or raise :class:`~shared.errors.RegionError`."""

    @abc.abstractmethod
    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence, issued by the region's platform, that this region runs :attr:`digest` and asked
        to bind the 32-byte ``report_data``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the region."""

    @property
    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether the region can still take calls."""


class IsolationProvider(abc.ABC):
    """Creates regions and answers questions about packages, signatures and evidence."""

    name: str
    #: The :attr:`Evidence.kind` this provider's regions produce.
    evidence_kind: str
    #: Whether every region is isolated from the host and other regions (a policy may require it).
    isolates: bool = False

    @property
    @abc.abstractmethod
    def platform_public_key(self) -> bytes:
        """The raw public key that signs this provider's evidence (what verifiers pin)."""

    @abc.abstractmethod
    def create_region(
        self,
        package_dir: Path,
        expected_digest: bytes,
        *,
        domain: Domain,
        call_out: CallOutHandler | None = None,
        timeout: float | None = None,
    ) -> Region:
        """Start a region for a package, signing under ``domain``; ``call_out`` answers its call-outs;
        ``timeout`` bounds each call (default: the provider's).

        The region refuses to load if the package no longer measures ``expected_digest``.
        """

    def digest(self, package_dir: Path) -> bytes:
        """The package's measurement."""
        return package_digest(package_dir)

    def check_signature(self, envelope: Envelope, digest: bytes, address: str) -> None:
        """Raise unless ``envelope`` was signed by the region of ``digest`` holding ``address``."""
        if envelope.digest != digest:
            raise VerificationError("digest_mismatch", "envelope was not produced by a region of this digest")
        verify_envelope(envelope, address)

    def verify_evidence(self, evidence: Evidence, policy: EvidencePolicy, *, now: datetime) -> VerifiedEvidence:
        """Verify this provider's evidence against ``policy``; raise :class:`~shared.errors.AttestationError`."""
        if evidence.kind != self.evidence_kind:
            raise fail(
                Reason.WRONG_ATTESTATION_TYPE,
                f"the {self.name} provider issues {self.evidence_kind!r} evidence, not {evidence.kind!r}",
            )
        return policy.verify(evidence, now=now)

    def close(self) -> None:  # noqa: B027  (a provider that holds nothing need not override it)
        """Release what the provider holds (helper processes); regions it made stop working."""
