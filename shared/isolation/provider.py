"""The isolation provider interface, after the paper's enclave layer.

=====================================  ==========================================
paper                                  here
=====================================  ==========================================
``IsolatedRegionCreate``               :meth:`IsolationProvider.create_region`
call-in                                :meth:`Region.call`
``GetDigest``                          :meth:`IsolationProvider.digest`
``CheckSignature``                     :meth:`IsolationProvider.check_signature`
=====================================  ==========================================
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from shared.digest import package_digest
from shared.envelope import Domain, Envelope, verify_envelope
from shared.errors import VerificationError


class Region(abc.ABC):
    """One isolated region running one cryptlet package."""

    @abc.abstractmethod
    def call(self, op: str, **params: Any) -> dict[str, Any]:
        """Call into the region; return its result or raise :class:`~shared.errors.RegionError`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the region."""

    @property
    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether the region can still take calls."""


class IsolationProvider(abc.ABC):
    """Creates regions and answers questions about packages and signatures."""

    name: str

    @abc.abstractmethod
    def create_region(self, package_dir: Path, expected_digest: bytes, *, domain: Domain) -> Region:
        """Start a region for a package, signing under ``domain``.

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
