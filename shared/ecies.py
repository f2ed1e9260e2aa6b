"""ECIES over secp256k1 + AES-256-GCM: the format of the ``property_privacy`` sample cryptlet.

The cryptlet encrypts a field to a set of counterparty public keys; this module is the
counterparty side (:func:`decrypt_field`) plus a reference :func:`encrypt_field` that produces the
same bytes as the cryptlet (tests prove they interoperate). The format is in ``docs/ecies.md``.

One message: a random 32-byte content key ``K`` encrypts the UTF-8 value with AES-256-GCM under a
random 12-byte nonce and the AAD (version, field name, context). For every recipient public key
``R`` the cryptlet does ECDH with a fresh ephemeral key ``e`` (``x(e·R)``), derives a key-wrapping
key ``KEK = HKDF-SHA256(ikm=x, salt=E || R, info="cryptlet-fabric/ecies/v1/kek")`` (``E``, ``R``
compressed SEC1) and wraps ``K`` with AES-256-GCM under ``KEK``, a zero nonce (each KEK is used
once: it depends on the ephemeral key) and the same AAD. A recipient is named by its key id,
SHA-256 of its compressed public key.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "ecies-secp256k1-aes256gcm-v1"
KEK_INFO = b"cryptlet-fabric/ecies/v1/kek"
WRAP_NONCE = b"\x00" * 12
MAX_RECIPIENTS = 64


class EciesError(ValueError):
    """A ciphertext object that cannot be decrypted (malformed, tampered or wrong AAD)."""


class NotARecipient(EciesError):
    """The private key is not one of the message's recipients."""


def _unhex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EciesError(f"{what} must be a hex string")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise EciesError(f"{what} is not valid hex") from None


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def parse_public_key(value: Any, what: str = "public key") -> coincurve.PublicKey:
    """A SEC1 secp256k1 public key (33 or 65 bytes, hex, optional 0x); ValueError naming ``what``."""
    try:
        raw = _unhex(value, what)
    except EciesError as exc:
        raise ValueError(str(exc)) from None
    if len(raw) not in (33, 65):
        raise ValueError(f"{what} must be a 33- or 65-byte SEC1 secp256k1 public key, got {len(raw)} bytes")
    try:
        return coincurve.PublicKey(raw)
    except Exception:
        raise ValueError(f"{what} is not a point on secp256k1") from None


def key_id(public_key: coincurve.PublicKey) -> bytes:
    """SHA-256 of the compressed SEC1 public key."""
    return hashlib.sha256(public_key.format(compressed=True)).digest()


def recipients_digest(key_ids: list[bytes]) -> bytes:
    """SHA-256 over the sorted key ids: one value naming the recipient set, independent of order."""
    return hashlib.sha256(b"".join(sorted(key_ids))).digest()


def aad(field: str, context: str) -> bytes:
    """version || u32be(len field) || field || u32be(len context) || context (UTF-8)."""
    f, c = field.encode("utf-8"), context.encode("utf-8")
    return VERSION.encode() + struct.pack(">I", len(f)) + f + struct.pack(">I", len(c)) + c


def _kek(shared_x: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=KEK_INFO).derive(shared_x)


def _shared_x(public_key: coincurve.PublicKey, secret: bytes) -> bytes:
    return public_key.multiply(secret).format(compressed=True)[1:]


def encrypt_field(
    field: str,
    value: str,
    recipients: list[Any],
    context: str = "",
    *,
    ephemeral_secret: bytes | None = None,
    content_key: bytes | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """Encrypt ``value`` to ``recipients`` (hex SEC1 public keys). The keyword-only randomness
    parameters exist for test vectors only; leave them out."""
    if not isinstance(field, str) or not field:
        raise ValueError("field must be a non-empty string")
    if not isinstance(value, str):
        raise ValueError("value must be a string")
    if not isinstance(context, str):
        raise ValueError("context must be a string")
    if not isinstance(recipients, list) or not recipients:
        raise ValueError("recipients must be a non-empty list of SEC1 public keys")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} recipients")
    keys = [parse_public_key(r, f"recipients[{i}]") for i, r in enumerate(recipients)]
    ids = [key_id(k) for k in keys]
    if len(set(ids)) != len(ids):
        raise ValueError("recipients contains the same public key twice")
    ephemeral = coincurve.PrivateKey(ephemeral_secret) if ephemeral_secret else coincurve.PrivateKey()
    content_key = content_key or os.urandom(32)
    nonce = nonce or os.urandom(12)
    header = aad(field, context)
    e_pub = ephemeral.public_key.format(compressed=True)
    wrapped = []
    for k, kid in zip(keys, ids, strict=False):
        kek = _kek(_shared_x(k, ephemeral.secret), e_pub, k.format(compressed=True))
        wrapped.append({"key_id": _hex(kid), "wrapped_key": _hex(AESGCM(kek).encrypt(WRAP_NONCE, content_key, header))})
    return {
        "version": VERSION,
        "field": field,
        "context": context,
        "ephemeral_public_key": _hex(e_pub),
        "nonce": _hex(nonce),
        "ciphertext": _hex(AESGCM(content_key).encrypt(nonce, value.encode("utf-8"), header)),
        "recipients": wrapped,
        "recipients_digest": _hex(recipients_digest(ids)),
    }


def decrypt_field(
    message: dict[str, Any],
    private_key: bytes | str | coincurve.PrivateKey,
    *,
    field: str | None = None,
    context: str | None = None,
) -> str:
    """Decrypt a ciphertext object with a recipient's private key.

    ``field``/``context`` are what the counterparty expects (the AAD); by default the values the
    object states. Raises :class:`NotARecipient` if the key is not a recipient and
    :class:`EciesError` if the object is malformed, tampered with or bound to another field/context.
    """
    if not isinstance(message, dict):
        raise EciesError("ciphertext object must be a JSON object")
    if message.get("version") != VERSION:
        raise EciesError(f"unsupported version {message.get('version')!r} (expected {VERSION})")
    if isinstance(private_key, str):
        private_key = _unhex(private_key, "private key")
    key = private_key if isinstance(private_key, coincurve.PrivateKey) else coincurve.PrivateKey(private_key)
    field = message.get("field") if field is None else field
    context = message.get("context", "") if context is None else context
    if not isinstance(field, str) or not isinstance(context, str):
        raise EciesError("field and context must be strings")
    header = aad(field, context)
    own = key.public_key
    kid = _hex(key_id(own))
    entries = message.get("recipients")
    if not isinstance(entries, list):
        raise EciesError("recipients must be a list")
    entry = next((r for r in entries if isinstance(r, dict) and str(r.get("key_id", "")).lower() == kid), None)
    if entry is None:
        raise NotARecipient(f"not a recipient: key id {kid} is not among the {len(entries)} recipients")
    e_raw = _unhex(message.get("ephemeral_public_key"), "ephemeral_public_key")
    try:
        ephemeral = coincurve.PublicKey(e_raw)
    except Exception:
        raise EciesError("ephemeral_public_key is not a secp256k1 point") from None
    kek = _kek(_shared_x(ephemeral, key.secret), ephemeral.format(compressed=True), own.format(compressed=True))
    nonce = _unhex(message.get("nonce"), "nonce")
    if len(nonce) != 12:
        raise EciesError("nonce must be 12 bytes")
    try:
        content_key = AESGCM(kek).decrypt(WRAP_NONCE, _unhex(entry.get("wrapped_key"), "wrapped_key"), header)
        plain = AESGCM(content_key).decrypt(nonce, _unhex(message.get("ciphertext"), "ciphertext"), header)
    except InvalidTag:
        raise EciesError(
            "authentication failed: the ciphertext, its field/context (AAD) or the wrapped key "
            "was altered, or the message was bound to another field/context"
        ) from None
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise EciesError("plaintext is not UTF-8") from None
