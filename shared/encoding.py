"""Canonical encodings and hashes shared by every signed or hashed structure.

* JSON that is hashed or signed is canonicalised with RFC 8785 (JCS).
* ``keccak256`` is Ethereum's Keccak-256 (not SHA3-256), as used by EIP-712.
* Byte strings travel as ``0x``-prefixed lowercase hex.
"""
from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import rfc8785
from Crypto.Hash import keccak as _keccak
from Crypto.Util._raw_api import (SmartPointer, VoidPointer, c_size_t, c_ubyte, c_uint8_ptr, create_string_buffer,
                                  backend, get_raw_buffer)

from shared.errors import InvalidInput


_MAX_SAFE_INT = 2**53 - 1
_FAST_DEPTH = 32


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``json.dumps(sort_keys=True)`` of ``value`` is already its RFC 8785 form: only dicts with
    ASCII keys (so code-point and UTF-16 order agree), lists, strings, booleans, None and integers
    of at most 53 bits (no floats: their JCS form is ECMAScript's number formatting)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
    if depth >= _FAST_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) is not str and not _plain(item, depth + 1):
                return False
        return True
    if kind is list:
        for item in value:
            if type(item) is not str and not _plain(item, depth + 1):
                return False
        return True
    return False


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of ``value``."""
    if _plain(value):  # the common case, without the general (pure-Python) canonicaliser
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: let the canonicaliser report them
            pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"value cannot be canonicalised as JSON: {exc}") from None


class _KeccakState(threading.local):
    """One reusable Keccak-256 state per thread, driven through pycryptodome's raw functions
    (``keccak.new(...).digest()`` spends ~3x longer in Python wrappers than in the permutation)."""

    def __init__(self) -> None:
        state = VoidPointer()
        if _LIB.keccak_init(state.address_of(), c_size_t(64), c_ubyte(24)):
            raise RuntimeError("keccak_init failed")
        self._owner = SmartPointer(state.get(), _LIB.keccak_destroy)  # freed with the thread
        self.state = self._owner.get()
        self.out = create_string_buffer(32)


_LIB = _keccak._raw_keccak_lib
_KECCAK = _KeccakState()
_CFFI = backend == "cffi"  # cffi takes bytes and ints directly; ctypes needs the wrappers


def keccak256(data: bytes) -> bytes:
    """Ethereum Keccak-256 of ``data``."""
    k = _KECCAK
    if _CFFI and type(data) is bytes:
        failed = _LIB.keccak_reset(k.state) or _LIB.keccak_absorb(k.state, data, len(data)) \
            or _LIB.keccak_digest(k.state, k.out, 32, 1)
    else:
        failed = _LIB.keccak_reset(k.state) or _LIB.keccak_absorb(k.state, c_uint8_ptr(data), c_size_t(len(data))) \
            or _LIB.keccak_digest(k.state, k.out, c_size_t(32), c_ubyte(1))
    if failed:  # not expected; the object API is exact too
        return _keccak.new(digest_bits=256, data=data).digest()
    return get_raw_buffer(k.out)


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
