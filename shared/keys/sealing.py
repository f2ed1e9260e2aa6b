"""Sealing: a region's private key leaves it only encrypted to (platform, measurement).

``seal_key = HKDF-SHA256(ikm=platform sealing secret, salt="cryptlet-fabric/seal/v1",
info=package digest)``; the blob is ``0x01 || nonce(12) || AES-256-GCM(key, nonce, secret,
aad = digest || address)``. A package with another digest derives another key and cannot
unseal; a blob moved to another address fails authentication.

The platform secret never enters a region: the provider derives the seal key of the digest it
launched (:func:`seal_key`) and hands only that to the region, which seals and unseals with
:func:`seal_with_key` / :func:`unseal_with_key`. A hostile cryptlet can therefore read at most
its own seal key, never another package's.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import SealingError
from shared.keys import derive

SEAL_VERSION = 1
MIN_SECRET_BYTES = 32
SEAL_KEY_BYTES = 32


def seal_key(platform_secret: bytes, digest: bytes) -> bytes:
    """The AES-256 key that seals keys of packages measuring ``digest`` on this platform."""
    if len(platform_secret) < MIN_SECRET_BYTES:
        raise SealingError(f"the platform sealing secret must be at least {MIN_SECRET_BYTES} bytes")
    return derive.seal_key(platform_secret, digest, SEAL_KEY_BYTES)


def seal_with_key(key: bytes, digest: bytes, address: str, secret: bytes) -> bytes:
    """Encrypt ``secret`` under a seal key already derived for ``digest``."""
    nonce = os.urandom(12)
    aad = digest + address.lower().encode()
    return bytes([SEAL_VERSION]) + nonce + AESGCM(key).encrypt(nonce, secret, aad)


def unseal_with_key(key: bytes, digest: bytes, address: str, blob: bytes) -> bytes:
    """Decrypt a sealed blob; raise :class:`SealingError` if the key, digest, address or blob differ."""
    if len(blob) < 1 + 12 + 16 or blob[0] != SEAL_VERSION:
        raise SealingError("sealed blob is malformed or of an unknown version")
    aad = digest + address.lower().encode()
    try:
        return AESGCM(key).decrypt(blob[1:13], blob[13:], aad)
    except InvalidTag:
        raise SealingError("sealed key does not open for this package digest, address and platform") from None


def seal(platform_secret: bytes, digest: bytes, address: str, secret: bytes) -> bytes:
    """Encrypt ``secret`` so that only a region measuring ``digest`` on this platform can read it."""
    return seal_with_key(seal_key(platform_secret, digest), digest, address, secret)


def unseal(platform_secret: bytes, digest: bytes, address: str, blob: bytes) -> bytes:
    """Decrypt a sealed blob; raise :class:`SealingError` if the measurement, address or blob differ."""
    return unseal_with_key(seal_key(platform_secret, digest), digest, address, blob)
