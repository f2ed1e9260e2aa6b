"""Canonical encodings and hashes shared by every signed or hashed structure.

* JSON that is hashed or signed is canonicalised with RFC 8785 (JCS).
* ``keccak256`` is Ethereum's Keccak-256 (not SHA3-256), as used by EIP-712.
* Byte strings travel as ``0x``-prefixed lowercase hex.
"""
from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from Crypto.Hash import keccak as _keccak

from shared.errors import InvalidInput


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of ``value``."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonicalised as JSON: {exc}") from None


def keccak256(data: bytes) -> bytes:
    """Ethereum Keccak-256 of ``data``."""
    return _keccak.new(digest_bits=256, data=data).digest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def to_hex(data: bytes) -> str:
    """``0x``-prefixed lowercase hex."""
    return "0x" + data.hex()


def from_hex(text: str, *, length: int | None = None, field: str = "value") -> bytes:
    """Parse ``0x``-prefixed (or bare) hex, optionally of an exact byte ``length``."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a hex string", field=field)
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        data = bytes.fromhex(body)
    except ValueError:
        raise InvalidInput(f"{field} is not valid hex", field=field) from None
    if length is not None and len(data) != length:
        raise InvalidInput(f"{field} must be {length} bytes, got {len(data)}", field=field)
    return data
