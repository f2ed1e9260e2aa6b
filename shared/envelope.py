"""Signed envelopes: every cryptlet output, signed with EIP-712 typed data over secp256k1.

The typed struct (what Solidity sees) is::

    Envelope(address cryptlet,bytes32 digest,bytes32 topic,bytes32 requestId,uint64 sequence,
             uint64 timestamp,bytes32 payloadHash,bytes32 evidenceHash,bytes32 registration)

under the domain ``EIP712Domain(string name,string version,uint256 chainId,address
verifyingContract)`` with ``name = "CryptletFabric"`` and ``version = "1"``. ``topic`` is
keccak256 of the topic string, ``payloadHash`` keccak256 of the RFC 8785 canonical JSON of the
payload, ``registration`` the ledger entry hash of the cryptlet's registration.

Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28} and low ``s`` (EIP-2), so
``ecrecover`` accepts them and they are not malleable. This module is the fast path
(precomputed type hashes + ``coincurve``); ``eth-account`` is the reference implementation the
tests compare against on published vectors (``docs/envelope.md``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import coincurve

from shared.encoding import canonical_json, from_hex, keccak256, to_hex
from shared.errors import InvalidInput, VerificationError

DOMAIN_NAME = "CryptletFabric"
DOMAIN_VERSION = "1"
ENVELOPE_VERSION = 1
ZERO32 = b"\x00" * 32
ZERO_ADDRESS = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
ENVELOPE_TYPE = (
    "Envelope(address cryptlet,bytes32 digest,bytes32 topic,bytes32 requestId,uint64 sequence,"
    "uint64 timestamp,bytes32 payloadHash,bytes32 evidenceHash,bytes32 registration)"
)
DOMAIN_TYPEHASH = keccak256(DOMAIN_TYPE.encode())
ENVELOPE_TYPEHASH = keccak256(ENVELOPE_TYPE.encode())

#: EIP-712 type definitions, for ``eth_account.messages.encode_typed_data`` and for wallets.
EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Envelope": [
        {"name": "cryptlet", "type": "address"},
        {"name": "digest", "type": "bytes32"},
        {"name": "topic", "type": "bytes32"},
        {"name": "requestId", "type": "bytes32"},
        {"name": "sequence", "type": "uint64"},
        {"name": "timestamp", "type": "uint64"},
        {"name": "payloadHash", "type": "bytes32"},
        {"name": "evidenceHash", "type": "bytes32"},
        {"name": "registration", "type": "bytes32"},
    ],
}


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain: binds signatures to this fabric, a chain and a verifying contract."""

    chain_id: int = 0
    verifying_contract: str = ZERO_ADDRESS

    def separator(self) -> bytes:
        return _separator(self.chain_id, self.verifying_contract)

    @functools.cached_property
    def signing_prefix(self) -> bytes:
        """``0x19 || 0x01 || domainSeparator``: what every EIP-712 digest in this domain starts with."""
        return b"\x19\x01" + self.separator()

    def to_dict(self) -> dict[str, Any]:
        return dict(self._dict)

    @functools.cached_property
    def _dict(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Domain:
        if not isinstance(data, dict):
            raise InvalidInput("domain must be an object", field="domain")
        if data.get("name") != DOMAIN_NAME or data.get("version") != DOMAIN_VERSION:
            raise VerificationError("wrong_domain", f"domain is not {DOMAIN_NAME} v{DOMAIN_VERSION}")
        chain_id = data.get("chainId")
        if not isinstance(chain_id, int) or chain_id < 0:
            raise InvalidInput("domain.chainId must be a non-negative integer", field="domain.chainId")
        contract = data.get("verifyingContract", ZERO_ADDRESS)
        from_hex(contract, length=20, field="domain.verifyingContract")
        return cls(chain_id=chain_id, verifying_contract=contract)


@functools.lru_cache(maxsize=64)
def _separator(chain_id: int, verifying_contract: str) -> bytes:
    return keccak256(
        DOMAIN_TYPEHASH
        + keccak256(DOMAIN_NAME.encode())
        + keccak256(DOMAIN_VERSION.encode())
        + chain_id.to_bytes(32, "big")
        + _address_word(verifying_contract)
    )


@functools.lru_cache(maxsize=4096)
def to_checksum_address(address: str | bytes) -> str:
    """EIP-55 mixed-case checksum encoding of a 20-byte address.

    Written here (not imported from ``eth_utils``) to keep region cold start small; the tests
    check it against ``eth_utils.to_checksum_address``.
    """
    raw = address if isinstance(address, bytes) else from_hex(address, length=20, field="address")
    lower = raw.hex()
    hashed = keccak256(lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(lower, hashed, strict=False))


@functools.lru_cache(maxsize=4096)
def _address_word(address: str) -> bytes:
    """The ABI word of an address, parsed once per address (a region signs for one)."""
    return b"\x00" * 12 + from_hex(address, length=20, field="address")


@functools.lru_cache(maxsize=4096)
def _hash_word(text: str, field: str) -> bytes:
    """A bytes32 hex string, parsed once: the registration and evidence hashes a region cites are the
    same on every envelope."""
    return from_hex(text, length=32, field=field)


def payload_hash(payload: Any) -> bytes:
    """keccak256 of the canonical JSON of a payload."""
    return keccak256(canonical_json(payload))


@functools.lru_cache(maxsize=1024)
def topic_hash(topic: str) -> bytes:
    return keccak256(topic.encode("utf-8"))


def address_of(public_key: bytes) -> str:
    """Ethereum address (EIP-55 checksummed) of a secp256k1 public key (any SEC1 encoding)."""
    uncompressed = coincurve.PublicKey(public_key).format(compressed=False)
    return to_checksum_address(keccak256(uncompressed[1:])[12:])


@dataclass
class Envelope:
    """One signed cryptlet output. ``signature`` is empty until :func:`sign_envelope`.

    Treat it as a value: derive changed copies with ``dataclasses.replace``. It is not a frozen
    dataclass because a frozen one sets each field through ``object.__setattr__``, which made
    building an envelope cost a tenth of the container's whole non-signature signing path.
    """

    cryptlet: str
    name: str
    digest: bytes
    topic: str
    request_id: bytes
    sequence: int
    timestamp_ms: int
    payload: Any
    domain: Domain
    registration: dict[str, Any]
    evidence: dict[str, Any]
    signature: bytes = b""

    @property
    def payload_hash(self) -> bytes:
        return payload_hash(self.payload)

    @property
    def evidence_hash(self) -> bytes:
        value = self.evidence.get("hash") if self.evidence else None
        if not value:
            return ZERO32
        if type(value) is not str:
            return from_hex(value, length=32, field="evidence.hash")  # raises: not a hex string
        return _hash_word(value, "evidence.hash")

    @property
    def registration_hash(self) -> bytes:
        value = self.registration.get("entry_hash", "")
        if type(value) is not str:
            return from_hex(value, length=32, field="registration.entry_hash")  # raises: not a hex string
        return _hash_word(value, "registration.entry_hash")

    def struct_hash(self, payload_hash: bytes | None = None) -> bytes:
        """keccak256 of the encoded struct; ``payload_hash`` if the caller already has it."""
        return keccak256(
            b"".join(
                (
                    ENVELOPE_TYPEHASH,
                    _address_word(self.cryptlet),
                    self.digest,
                    topic_hash(self.topic),
                    self.request_id,
                    self.sequence.to_bytes(32, "big"),
                    self.timestamp_ms.to_bytes(32, "big"),
                    payload_hash or self.payload_hash,
                    self.evidence_hash,
                    self.registration_hash,
                )
            )
        )

    def signing_hash(self, payload_hash: bytes | None = None) -> bytes:
        """The EIP-712 digest ``keccak256(0x1901 || domainSeparator || structHash)``."""
        return keccak256(self.domain.signing_prefix + self.struct_hash(payload_hash))

    def typed_data(self) -> dict[str, Any]:
        """The EIP-712 ``eth_signTypedData_v4`` document of this envelope."""
        return {
            "types": EIP712_TYPES,
            "primaryType": "Envelope",
            "domain": self.domain.to_dict(),
            "message": {
                "cryptlet": to_checksum_address(self.cryptlet),
                "digest": to_hex(self.digest),
                "topic": to_hex(topic_hash(self.topic)),
                "requestId": to_hex(self.request_id),
                "sequence": self.sequence,
                "timestamp": self.timestamp_ms,
                "payloadHash": to_hex(self.payload_hash),
                "evidenceHash": to_hex(self.evidence_hash),
                "registration": to_hex(self.registration_hash),
            },
        }

    def to_dict(self, payload_hash: bytes | None = None) -> dict[str, Any]:
        """The envelope document; ``payload_hash`` if the caller already has it."""
        return self._render(payload_hash or self.payload_hash, self.signature)

    def _render(self, payload_hash: bytes, signature: bytes) -> dict[str, Any]:
        return {
            "version": ENVELOPE_VERSION,
            "cryptlet": to_checksum_address(self.cryptlet),
            "name": self.name,
            "digest": "0x" + self.digest.hex(),
            "topic": self.topic,
            "request_id": "0x" + self.request_id.hex(),
            "sequence": self.sequence,
            "timestamp": self.timestamp_ms,
            "payload": self.payload,
            "payload_hash": "0x" + payload_hash.hex(),
            "evidence": self.evidence,
            "registration": self.registration,
            "domain": self.domain.to_dict(),
            "signature": "0x" + signature.hex(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Parse an envelope document; malformed input raises :class:`InvalidInput` naming the field."""
        if not isinstance(data, dict):
            raise InvalidInput("envelope must be a JSON object", field="$")
        for key in (
            "cryptlet",
            "name",
            "digest",
            "topic",
            "request_id",
            "sequence",
            "timestamp",
            "payload",
            "registration",
            "domain",
            "signature",
        ):
            if key not in data:
                raise InvalidInput(f"envelope is missing {key!r}", field=key)
        if data.get("version", ENVELOPE_VERSION) != ENVELOPE_VERSION:
            raise InvalidInput(f"unsupported envelope version {data.get('version')!r}", field="version")
        for key in ("sequence", "timestamp"):
            if not isinstance(data[key], int) or isinstance(data[key], bool) or not 0 <= data[key] < 2**64:
                raise InvalidInput(f"{key} must be an unsigned 64-bit integer", field=key)
        if not isinstance(data["registration"], dict):
            raise InvalidInput("registration must be an object", field="registration")
        evidence = data.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise InvalidInput("evidence must be an object", field="evidence")
        from_hex(data["cryptlet"], length=20, field="cryptlet")
        envelope = cls(
            cryptlet=data["cryptlet"],
            name=str(data["name"]),
            digest=from_hex(data["digest"], length=32, field="digest"),
            topic=str(data["topic"]),
            request_id=from_hex(data["request_id"], length=32, field="request_id"),
            sequence=data["sequence"],
            timestamp_ms=data["timestamp"],
            payload=data["payload"],
            domain=Domain.from_dict(data["domain"]),
            registration=data["registration"],
            evidence=evidence,
            signature=from_hex(data["signature"], field="signature"),
        )
        _ = envelope.registration_hash  # validates the field early
        if (
            "payload_hash" in data
            and from_hex(data["payload_hash"], length=32, field="payload_hash") != envelope.payload_hash
        ):
            raise VerificationError("payload_hash_mismatch", "payload_hash does not match the payload")
        return envelope


PrivateKeyLike = bytes | coincurve.PrivateKey
_V_BYTE = (b"\x1b", b"\x1c", b"\x1d", b"\x1e")  # recovery id 0-3 -> v = 27-30


def sign_digest(private_key: PrivateKeyLike, digest: bytes) -> bytes:
    """Sign a 32-byte digest; returns ``r || s || v`` (v = 27/28), always low-S.

    Pass a ``coincurve.PrivateKey`` when signing repeatedly: building one from bytes derives the
    public key, which costs about as much as the signature.
    """
    key = private_key if isinstance(private_key, coincurve.PrivateKey) else coincurve.PrivateKey(private_key)
    raw = key.sign_recoverable(digest, hasher=None)
    return raw[:64] + _V_BYTE[raw[64]]


EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"


def eip191_hash(message: bytes) -> bytes:
    """The EIP-191 version 0x45 (``personal_sign``) hash of ``message``:
    ``keccak256("\\x19Ethereum Signed Message:\\n" + decimal length + message)``."""
    return keccak256(EIP191_PREFIX + str(len(message)).encode() + message)


def recover_address(digest: bytes, signature: bytes) -> str:
    """Recover the signer's address; raises :class:`VerificationError` on malformed or high-S input."""
    if len(signature) != 65:
        raise VerificationError("malformed_signature", f"signature must be 65 bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise VerificationError("malformed_signature", f"signature v must be 27 or 28, got {v}")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise VerificationError("malformed_signature", "signature r or s out of range")
    if s > SECP256K1_HALF_N:
        raise VerificationError("high_s", "signature s is in the upper half of the curve order (malleable)")
    try:
        public = coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([v - 27]), digest, hasher=None)
    except Exception:
        raise VerificationError("malformed_signature", "no public key can be recovered from the signature") from None
    return address_of(public.format(compressed=False))


def sign_envelope(envelope: Envelope, private_key: PrivateKeyLike) -> Envelope:
    """Return a copy of ``envelope`` carrying its signature."""
    return replace(envelope, signature=sign_digest(private_key, envelope.signing_hash()))


def signed_document(envelope: Envelope, private_key: PrivateKeyLike) -> dict[str, Any]:
    """``sign_envelope(envelope, private_key).to_dict()``, hashing the payload once (the container's path)."""
    payload_hash = keccak256(canonical_json(envelope.payload))
    digest = keccak256(envelope.domain.signing_prefix + envelope.struct_hash(payload_hash))  # = signing_hash()
    return envelope._render(payload_hash, sign_digest(private_key, digest))


def verify_envelope(envelope: Envelope, expected_address: str | None = None) -> str:
    """Check the envelope's signature; return the signer address or raise :class:`VerificationError`.

    With ``expected_address``, the signer must be that address (reason ``signer_mismatch``).
    """
    signer = recover_address(envelope.signing_hash(), envelope.signature)
    if signer.lower() != envelope.cryptlet.lower():
        raise VerificationError(
            "signature_mismatch", f"signature was made by {signer}, not by the envelope's cryptlet {envelope.cryptlet}"
        )
    if expected_address is not None and signer.lower() != expected_address.lower():
        raise VerificationError("signer_mismatch", f"envelope signed by {signer}, expected {expected_address}")
    return signer
