"""Signed ledger checkpoints: C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` envelopes.

A checkpoint commits to the first ``size`` entries of one ledger stream::

    cryptlet-fabric/ledger/registry          <- origin (also the signing key's name)
    4000                                     <- tree size
    3q2+7w...=                               <- base64 RFC 9162 Merkle root of the entries
    time 2026-11-24T12:00:00.000Z            <- extension: when the host signed it
    head 8f1c...e2                           <- extension: entry_hash of entry `size` (the chain head)
                                             <- blank line ends the body
    — cryptlet-fabric/ledger/registry AbCd...  <- base64(4-byte key id || Ed25519 signature of the body)

The host key is Ed25519, derived deterministically from the platform sealing secret with
``HKDF-SHA256(ikm=secret, salt=none, info="cryptlet-fabric/checkpoint-key/v1")``; it is never
logged or returned. Its public half travels as a note *verifier key*
``<name>+<key id hex>+<base64(0x01 || public key)>`` with key id = the first 4 bytes of
``SHA-256(name || "\\n" || 0x01 || public key)``, exactly as ``golang.org/x/mod/sumdb/note``
computes it. Auditors pin that string. Vectors: ``docs/ledger.md``.

:func:`open_checkpoint` returns a :class:`Checkpoint` only if a signature by the pinned key
verifies; it raises :class:`~shared.errors.VerificationError` with reason ``checkpoint_malformed``
or ``checkpoint_signature_invalid`` otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import InvalidInput, VerificationError
from shared.keys import derive

ORIGIN_PREFIX = "cryptlet-fabric/ledger/"
ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash + space
MALFORMED = "checkpoint_malformed"
BAD_SIGNATURE = "checkpoint_signature_invalid"

_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_HEX32 = re.compile(r"[0-9a-f]{64}")
_KEY_NAME = re.compile(r"[^\s+]+")


def origin_of(stream: str) -> str:
    """The checkpoint origin (and key name) of a ledger stream."""
    return ORIGIN_PREFIX + stream


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A note verifier key: who signs (``name``), its 4-byte id and Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __str__(self) -> str:
        return (
            f"{self.name}+{self.key_id.hex()}+"
            f"{base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode('ascii')}"
        )

    @classmethod
    def parse(cls, text: str, field: str = "public_key") -> VerifierKey:
        """Parse ``<name>+<key id hex>+<base64(0x01 || key)>`` (:class:`InvalidInput` otherwise)."""
        parts = text.strip().split("+", 2) if isinstance(text, str) else []  # base64 may hold a "+"
        if len(parts) != 3 or not _KEY_NAME.fullmatch(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            raise InvalidInput("a verifier key looks like <name>+<8 hex digits>+<base64 key>", field=field)
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("the verifier key's last part is not base64", field=field) from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise InvalidInput("the verifier key is not an Ed25519 note key", field=field)
        key = cls(parts[0], bytes.fromhex(parts[1]), raw[1:])
        if _key_id(key.name, key.public_key) != key.key_id:
            raise InvalidInput("the verifier key's id does not match its name and key", field=field)
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class CheckpointSigner:
    """Signs checkpoints with the host key. The private key is never exposed or printed."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        if not _KEY_NAME.fullmatch(name):
            raise ValueError("a key name must not be empty or contain spaces or '+'")
        self._key = private_key
        public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.verifier = VerifierKey(name, _key_id(name, public), public)

    @classmethod
    def from_secret(cls, secret: bytes, name: str) -> CheckpointSigner:
        """The host key derived from the platform sealing secret (HKDF-SHA256, see module doc)."""
        seed = derive.derive(secret, derive.CHECKPOINT_KEY)
        return cls(Ed25519PrivateKey.from_private_bytes(seed), name)

    def __repr__(self) -> str:
        return f"CheckpointSigner({self.verifier})"

    def sign_note(self, text: str) -> str:
        """``text`` (ending in a newline) as a signed note carrying this key's signature."""
        if not text.endswith("\n") or "\n\n" in text:
            raise ValueError("note text must end in a newline and contain no blank line")
        signature = self._key.sign(text.encode("utf-8"))
        stamp = base64.b64encode(self.verifier.key_id + signature).decode("ascii")
        return f"{text}\n{SIGNATURE_PREFIX}{self.verifier.name} {stamp}\n"

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note text of ``checkpoint``."""
        if checkpoint.origin != self.verifier.name:
            raise ValueError(f"this key signs {self.verifier.name} checkpoints, not {checkpoint.origin}")
        return self.sign_note(checkpoint.body())


@dataclass(frozen=True)
class Checkpoint:
    """What a signed checkpoint says: the first ``size`` entries of ``origin`` have Merkle root
    ``root`` and chain head ``head``, as of ``time``."""

    origin: str
    size: int
    root: bytes
    time: str
    head: str

    def body(self) -> str:
        """The note body (what is signed), ending in a newline."""
        return (
            f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"
            f"time {self.time}\nhead {self.head}\n"
        )

    @property
    def stream(self) -> str:
        return self.origin[len(ORIGIN_PREFIX) :] if self.origin.startswith(ORIGIN_PREFIX) else ""

    def to_dict(self) -> dict[str, object]:
        return {"origin": self.origin, "size": self.size, "root": self.root.hex(), "time": self.time, "head": self.head}


def _malformed(detail: str) -> VerificationError:
    return VerificationError(MALFORMED, f"checkpoint: {detail}", field="checkpoint")


def parse_body(body: str) -> Checkpoint:
    """Parse a checkpoint body strictly (origin, size, root, ``time`` and ``head`` lines)."""
    lines = body.split("\n")
    if len(lines) != 6 or lines[5] != "":
        raise _malformed("the body must be exactly origin, size, root, time and head lines")
    origin, size, root, when, head = lines[:5]
    if not origin or not _KEY_NAME.fullmatch(origin):
        raise _malformed("the origin line is empty or has spaces")
    if not _SIZE.fullmatch(size):
        raise _malformed("the size line is not a decimal number")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("the root line is not base64") from None
    if len(root_hash) != 32 or base64.b64encode(root_hash).decode("ascii") != root:
        raise _malformed("the root line is not the base64 of 32 bytes")
    if not when.startswith("time ") or not _TIME.fullmatch(when[5:]):
        raise _malformed("the time line is not 'time <UTC ISO 8601 with milliseconds>'")
    if not head.startswith("head ") or not _HEX32.fullmatch(head[5:]):
        raise _malformed("the head line is not 'head <64 lowercase hex digits>'")
    return Checkpoint(origin, int(size), root_hash, when[5:], head[5:])


def split_note(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """``(body, [(key name, key id || signature), ...])`` of a signed note."""
    if not isinstance(text, str):
        raise _malformed("a signed checkpoint is text")
    body, sep, signatures = text.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise _malformed("no blank line before the signature lines, or no final newline")
    body += "\n"
    found: list[tuple[str, bytes]] = []
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise _malformed("a signature line must start with an em dash and a space")
        name, _, stamp = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(stamp, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed("a signature is not base64") from None
        if not name or len(raw) < 5:
            raise _malformed("a signature line has no key name or a short signature")
        found.append((name, raw))
    return body, found


def open_note(text: str, key: VerifierKey) -> str:
    """The body of a signed note if ``key`` signed it (other keys' signatures are ignored)."""
    body, signatures = split_note(text)
    message = body.encode("utf-8")
    for name, raw in signatures:
        if name == key.name and raw[:4] == key.key_id and len(raw) == 68 and key.verify(message, raw[4:]):
            return body
    raise VerificationError(
        BAD_SIGNATURE, f"the note carries no valid signature by {key.name}+{key.key_id.hex()}", field="checkpoint"
    )


def open_checkpoint(text: str, key: VerifierKey) -> Checkpoint:
    """The checkpoint in ``text`` if ``key`` signed it; :class:`VerificationError` otherwise."""
    checkpoint = parse_body(split_note(text)[0])  # malformed beats unsigned: the clearer message
    open_note(text, key)
    if checkpoint.origin != key.name:
        raise VerificationError(
            BAD_SIGNATURE, f"checkpoint of {checkpoint.origin} is signed by the key of {key.name}", field="checkpoint"
        )
    return checkpoint
