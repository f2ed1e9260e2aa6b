"""The fabric's error hierarchy.

Every error a caller can act on derives from :class:`FabricError`. Each carries an HTTP
status, a stable machine ``code``, an optional ``field`` (the JSON path of the offending
input) and renders as an RFC 9457 problem document with :meth:`FabricError.problem`.
Messages never contain key material.
"""

from __future__ import annotations

from typing import Any


class FabricError(Exception):
    """Base class of every error the fabric reports to a caller."""

    status: int = 500
    code: str = "fabric_error"
    title: str = "Fabric error"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The error as an RFC 9457 ``application/problem+json`` body."""
        body: dict[str, Any] = {
            "type": f"urn:cryptlet-fabric:error:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body

    def diagnostics(self) -> str:
        """One readable line for a terminal."""
        where = f" (field {self.field})" if self.field else ""
        return f"{self.title}: {self.detail}{where}"


class InvalidInput(FabricError):
    """A request or file is malformed; ``field`` names the offending JSON path."""

    status, code, title = 400, "invalid_input", "Invalid input"


class PayloadTooLarge(FabricError):
    """A request body (or another input) is larger than its limit (shared/limits.py); ``field`` is ``$``."""

    status, code, title = 413, "too_large", "Payload too large"


class ManifestError(InvalidInput):
    """A ``cryptlet.json`` does not match the schema."""

    code, title = "invalid_manifest", "Invalid cryptlet manifest"


class NotFound(FabricError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(FabricError):
    status, code, title = 409, "conflict", "Conflict"


class ConfigurationError(FabricError):
    """A required setting is missing or invalid."""

    status, code, title = 500, "configuration", "Configuration error"


class StorageError(FabricError):
    """Storage is unreachable or answered unexpectedly."""

    status, code, title = 503, "storage_unavailable", "Storage unavailable"


class RegionError(FabricError):
    """An isolated region failed: refused to start, crashed, hung or broke the protocol."""

    status, code, title = 502, "region_failed", "Region failed"


class SealingError(FabricError):
    """A sealed key could not be unsealed (wrong measurement, platform or tampered blob)."""

    status, code, title = 500, "sealing", "Sealing error"


class VerificationError(FabricError):
    """A signature, envelope, ledger entry or piece of evidence failed verification.

    ``reason`` is a stable short name of the failed check (e.g. ``signature_mismatch``).
    """

    status, code, title = 422, "verification_failed", "Verification failed"

    def __init__(self, reason: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, reason=reason, **extra)
        self.reason = reason

    def diagnostics(self) -> str:
        return f"verification failed ({self.reason}): {self.detail}"


class LedgerIntegrityError(VerificationError):
    """The ledger chain is broken; ``sequence`` is the first bad entry."""

    def __init__(self, sequence: int, reason: str, detail: str) -> None:
        super().__init__(reason, f"ledger entry {sequence}: {detail}", sequence=sequence)
        self.sequence = sequence


class AttestationError(VerificationError):
    """Attestation evidence failed verification against a policy."""
