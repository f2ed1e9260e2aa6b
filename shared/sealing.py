"""Sealing: a region's private key leaves it only encrypted to (platform, measurement).

``seal_key = HKDF-SHA256(ikm=platform sealing secret, salt="cryptlet-fabric/seal/v1",
info=package digest)``; the blob is ``0x01 || nonce(12) || AES-256-GCM(key, nonce, secret,
aad = digest || address)``. A package with another digest derives another key and cannot
unseal; a blob moved to another address fails authentication.
"""
from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import SealingError

SEAL_VERSION = 1
_SALT = b"cryptlet-fabric/seal/v1"
MIN_SECRET_BYTES = 32


def _seal_key(platform_secret: bytes, digest: bytes) -> bytes:
    if len(platform_secret) < MIN_SECRET_BYTES:
        raise SealingError(f"the platform sealing secret must be at least {MIN_SECRET_BYTES} bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=digest).derive(platform_secret)


def seal(platform_secret: bytes, digest: bytes, address: str, secret: bytes) -> bytes:
    """Encrypt ``secret`` so that only a region measuring ``digest`` on this platform can read it."""
    nonce = os.urandom(12)
    aad = digest + address.lower().encode()
    return bytes([SEAL_VERSION]) + nonce + AESGCM(_seal_key(platform_secret, digest)).encrypt(nonce, secret, aad)


def unseal(platform_secret: bytes, digest: bytes, address: str, blob: bytes) -> bytes:
    """Decrypt a sealed blob; raise :class:`SealingError` if the measurement, address or blob differ."""
    if len(blob) < 1 + 12 + 16 or blob[0] != SEAL_VERSION:
        raise SealingError("sealed blob is malformed or of an unknown version")
    aad = digest + address.lower().encode()
    try:
        return AESGCM(_seal_key(platform_secret, digest)).decrypt(blob[1:13], blob[13:], aad)
    except InvalidTag:
        raise SealingError("sealed key does not open for this package digest, address and platform") from None
