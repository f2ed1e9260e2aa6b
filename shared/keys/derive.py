"""Every key derived from the platform sealing secret, in one place.

Each derivation is HKDF-SHA256 over the sealing secret under its own (salt, info) label, so no two
uses share a key and a new use cannot reuse a label by accident (a unit test checks they are
distinct). Changing a label changes the derived key: sealed blobs, checkpoint signatures, webhook
secrets and the delivery address all depend on these bytes, so they are versioned and never edited.

* seal key of one package: salt ``cryptlet-fabric/seal/v1``, info = the package digest (32 bytes);
  :mod:`shared.keys.sealing`
* process provider platform key (Ed25519): salt ``cryptlet-fabric/platform-key/v1``, info ``process
  provider software evidence signing key (Ed25519)``; :mod:`shared.isolation.process`
* ledger checkpoint key (Ed25519): no salt, info ``cryptlet-fabric/checkpoint-key/v1``;
  :mod:`shared.ledger.checkpoints`
* webhook secret sealing key (AES-256-GCM): no salt, info ``cryptlet-fabric/webhook/v1``;
  :mod:`shared.events.webhooks`
* delivery key (secp256k1): no salt, info ``cryptlet-fabric/delivery/v1`` (then ``/1``, ``/2``... while
  out of range); :mod:`shared.events.delivery`
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


@dataclass(frozen=True)
class Label:
    """One HKDF label: ``salt`` (or none) and ``info``; a per-use ``context`` replaces or extends info."""

    salt: bytes | None
    info: bytes


SEAL = Label(b"cryptlet-fabric/seal/v1", b"")  # info: the package digest
PLATFORM_KEY = Label(b"cryptlet-fabric/platform-key/v1", b"process provider software evidence signing key (Ed25519)")
CHECKPOINT_KEY = Label(None, b"cryptlet-fabric/checkpoint-key/v1")
WEBHOOK = Label(None, b"cryptlet-fabric/webhook/v1")
DELIVERY = Label(None, b"cryptlet-fabric/delivery/v1")

#: Every label, for the distinctness check and for readers.
LABELS: dict[str, Label] = {
    "seal": SEAL,
    "platform_key": PLATFORM_KEY,
    "checkpoint_key": CHECKPOINT_KEY,
    "webhook": WEBHOOK,
    "delivery": DELIVERY,
}


def derive(secret: bytes, label: Label, *, info: bytes | None = None, length: int = 32) -> bytes:
    """``HKDF-SHA256(ikm=secret, salt=label.salt, info=info or label.info)`` of ``length`` bytes."""
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=label.salt, info=label.info if info is None else info
    ).derive(secret)


def seal_key(secret: bytes, digest: bytes, length: int = 32) -> bytes:
    """The seal key of the package measured ``digest``."""
    return derive(secret, SEAL, info=digest, length=length)


def delivery_seed(secret: bytes, counter: int = 0) -> bytes:
    """Candidate ``counter`` of the delivery key (the first valid secp256k1 scalar is used)."""
    info = DELIVERY.info if counter == 0 else DELIVERY.info + b"/" + str(counter).encode()
    return derive(secret, DELIVERY, info=info)
