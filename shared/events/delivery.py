"""Delivery: the fabric's delivery key, the signed delivery body, and the callback POST.

The delivery key is a secp256k1 key derived from the sealing secret with HKDF-SHA256 (info
``cryptlet-fabric/delivery/v1``; every host with the same secret has the same key, and no other
fabric key is derived with that label). Its address is ``delivery_address`` in ``GET
/api/attestation``. A delivery body (docs/events.md) is signed as an EIP-191 ``personal_sign`` of
its canonical JSON (RFC 8785): ``keccak256("\\x19Ethereum Signed Message:\\n" + len + message)``,
so ``eth_account``/``ethers`` recover the address from the body and the header as they are.
"""

from __future__ import annotations

import logging
from typing import Any

import coincurve
import httpx

from shared.encoding import canonical_json, to_hex
from shared.envelope import SECP256K1_N, address_of, eip191_hash, recover_address, sign_digest
from shared.keys import derive

log = logging.getLogger("fabric.delivery")
if logging.getLogger("httpx").level == logging.NOTSET:  # one INFO line per callback would drown the host log
    logging.getLogger("httpx").setLevel(logging.WARNING)
HEADER = "X-Fabric-Signature"
#: Seconds a callback may take to answer (connect + read).
CALLBACK_TIMEOUT_S = 5.0


class DeliveryFailed(Exception):
    """The target did not accept a delivery (non-2xx or unreachable); the queue retries it."""


class DeliveryKey:
    """The fabric's delivery signing key (never logged, never returned)."""

    def __init__(self, sealing_secret: bytes) -> None:
        counter = 0
        while True:  # HKDF output is a valid key with overwhelming probability; loop for the rest
            raw = derive.delivery_seed(sealing_secret, counter)
            if 0 < int.from_bytes(raw, "big") < SECP256K1_N:
                break
            counter += 1
        self._key = coincurve.PrivateKey(raw)
        self.address = address_of(self._key.public_key.format(compressed=False))

    def sign(self, body: dict[str, Any]) -> str:
        """``0x`` + r||s||v of the personal_sign of the body's canonical JSON."""
        return to_hex(sign_digest(self._key, eip191_hash(canonical_json(body))))


def signer_of(body: dict[str, Any], signature: bytes) -> str:
    """The address that signed a delivery body (for verifiers and tests)."""
    return recover_address(eip191_hash(canonical_json(body)), signature)


class CallbackClient:
    """POSTs signed delivery bodies with one shared HTTP connection pool."""

    def __init__(self, key: DeliveryKey, timeout: float = CALLBACK_TIMEOUT_S) -> None:
        self.key = key
        self.client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def post(self, url: str, body: dict[str, Any]) -> str:
        """Deliver; return the signature sent. :class:`DeliveryFailed` unless the target answered 2xx."""
        signature = self.key.sign(body)
        data = canonical_json(body)
        try:
            response = self.client.post(
                url, content=data, headers={"Content-Type": "application/json", HEADER: signature}
            )
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"callback unreachable: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"callback answered {response.status_code}")
        return signature

    def close(self) -> None:
        self.client.close()
