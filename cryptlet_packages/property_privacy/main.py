"""property_privacy: encrypt a field to a set of counterparty public keys.

ECIES over secp256k1 + AES-256-GCM (format: docs/ecies.md). Self-contained on purpose: all code
that touches the plaintext is inside this package, so the package digest measures it. The
counterparty side (decryption) is ``shared/ecies.py``; tests prove both produce the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import struct

import coincurve
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "ecies-secp256k1-aes256gcm-v1"
KEK_INFO = b"cryptlet-fabric/ecies/v1/kek"
WRAP_NONCE = b"\x00" * 12
MAX_RECIPIENTS = 64
MAX_VALUE_BYTES = 64 * 1024


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def parse_public_key(value, what: str) -> coincurve.PublicKey:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a hex string (SEC1 public key)")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} is not valid hex") from None
    if len(raw) not in (33, 65):
        raise ValueError(f"{what} must be a 33- or 65-byte SEC1 secp256k1 public key, got {len(raw)} bytes")
    try:
        return coincurve.PublicKey(raw)
    except Exception:
        raise ValueError(f"{what} is not a point on secp256k1") from None


def parse_recipients(recipients) -> tuple[list[coincurve.PublicKey], list[bytes]]:
    if not isinstance(recipients, list) or not recipients:
        raise ValueError("recipients must be a non-empty list of SEC1 public keys")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValueError(f"at most {MAX_RECIPIENTS} recipients")
    keys = [parse_public_key(r, f"recipients[{i}]") for i, r in enumerate(recipients)]
    ids = [hashlib.sha256(k.format(compressed=True)).digest() for k in keys]
    if len(set(ids)) != len(ids):
        raise ValueError("recipients contains the same public key twice")
    return keys, ids


def aad(field: str, context: str) -> bytes:
    f, c = field.encode("utf-8"), context.encode("utf-8")
    return VERSION.encode() + struct.pack(">I", len(f)) + f + struct.pack(">I", len(c)) + c


def encrypt(field, value, recipients, context="", *, ephemeral_secret=None, content_key=None, nonce=None) -> dict:
    """The ciphertext object; the keyword-only randomness is for test vectors only."""
    if not isinstance(field, str) or not field:
        raise ValueError("field must be a non-empty string")
    if not isinstance(value, str):
        raise ValueError("value must be a string")
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ValueError(f"value is longer than {MAX_VALUE_BYTES} bytes")
    if not isinstance(context, str):
        raise ValueError("context must be a string")
    keys, ids = parse_recipients(recipients)
    ephemeral = coincurve.PrivateKey(ephemeral_secret) if ephemeral_secret else coincurve.PrivateKey()
    content_key = content_key or os.urandom(32)
    nonce = nonce or os.urandom(12)
    header = aad(field, context)
    e_pub = ephemeral.public_key.format(compressed=True)
    wrapped = []
    for key, kid in zip(keys, ids, strict=False):
        shared_x = key.multiply(ephemeral.secret).format(compressed=True)[1:]
        kek = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=e_pub + key.format(compressed=True), info=KEK_INFO
        ).derive(shared_x)
        wrapped.append({"key_id": _hex(kid), "wrapped_key": _hex(AESGCM(kek).encrypt(WRAP_NONCE, content_key, header))})
    return {
        "version": VERSION,
        "field": field,
        "context": context,
        "ephemeral_public_key": _hex(e_pub),
        "nonce": _hex(nonce),
        "ciphertext": _hex(AESGCM(content_key).encrypt(nonce, value.encode("utf-8"), header)),
        "recipients": wrapped,
        "recipients_digest": _hex(hashlib.sha256(b"".join(sorted(ids))).digest()),
    }


class PropertyPrivacy:
    def encrypt_field(self, field: str, value: str, recipients: list, context: str = "") -> dict:
        return {"encrypted": encrypt(field, value, recipients, context)}

    def recipient_set(self, recipients: list) -> dict:
        _, ids = parse_recipients(recipients)
        return {
            "key_ids": [_hex(i) for i in ids],
            "recipients_digest": _hex(hashlib.sha256(b"".join(sorted(ids))).digest()),
        }
