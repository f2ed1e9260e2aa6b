"""Typed requests the host services take: ``functions/`` parses HTTP bodies into these at the edge
(:mod:`functions.models`), so the core never handles raw JSON bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Call:
    """One invocation: a method of the cryptlet's interface, its named arguments, an optional request id
    (32 bytes; a fresh random one is used when absent)."""

    method: str
    args: dict[str, Any] = field(default_factory=dict)
    request_id: bytes | None = None


@dataclass(frozen=True)
class Revocation:
    """Why and from when a key's signatures are distrusted (``invalid_after`` ISO 8601; default now)."""

    reason: str = "compromised"
    invalid_after: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class RevokeRequest:
    """Revoke key ``address`` (``None``: the current key, which is then rotated)."""

    address: str | None
    revocation: Revocation
