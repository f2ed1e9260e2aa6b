"""Subscribers and their signed requests.

A **subscriber** (a chain adapter or an application) is registered by an admin with its own secp256k1
public key; the fabric stores the key and its Ethereum address. Every request the subscriber makes
afterwards is a JSON document

    {"subscriber": NAME, "nonce": "0x<16..32 bytes hex>", "expires_ms": UNIX_MS, "action": ACTION, "body": {...}}

sent as the HTTP body with header ``X-Subscriber-Signature: 0x<r || s || v>`` (65 bytes, v 27/28, low s):
an EIP-191 ``personal_sign`` of the RFC 8785 canonical JSON of the parsed document, i.e. the signature of
``keccak256("\\x19Ethereum Signed Message:\\n" + len(message) + message)``. ``eth_account``'s
``Account.sign_message(encode_defunct(message), key)``, ethers' ``signMessage`` and web3's
``personal_sign`` produce it as is. Format and a test vector: docs/events.md.

:func:`verify_request` checks, in this order and before anything is trusted: the signature is there
and well formed, the document is a JSON object of the right shape, the signer recovered from the
signature is the named subscriber's registered address, ``expires_ms`` is in the future and at most
:data:`MAX_TTL_MS` ahead, the action is the one the route expects, and only then records the nonce
(a row created with ``create_entity``: a second use is refused with 409 ``replayed_nonce``).

Storage: table ``<prefix>subscribers``; subscribers in partition ``subscriber`` (RowKey = name),
nonces in partition ``nonce-<name>`` (RowKey = nonce, with its request's ``expires_ms``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import coincurve
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient

from shared import clock
from shared.encoding import canonical_json, parse_json_input, to_hex
from shared.envelope import address_of, eip191_hash, recover_address, sign_digest
from shared.errors import Conflict, FabricError, InvalidInput, NotFound, VerificationError
from shared.storage import storage_errors

HEADER = "X-Subscriber-Signature"
PARTITION = "subscriber"
NONCE_PARTITION_PREFIX = "nonce-"
#: A signed request may be valid for at most this long (its ``expires_ms`` at most this far ahead).
MAX_TTL_MS = 10 * 60 * 1000
ACTIONS = ("subscribe", "cancel", "list", "job")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,62}\Z")  # as cryptlet names
_NONCE = re.compile(r"^0x[0-9a-fA-F]{32,64}\Z")
_SIGNATURE = re.compile(r"^0x[0-9a-fA-F]{130}\Z")
_MEMBERS = ("subscriber", "nonce", "expires_ms", "action", "body")


class Unauthorized(VerificationError):
    """The request is not signed by a registered subscriber (401); ``reason`` names the failed check."""

    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(FabricError):
    """A correctly signed subscriber asked for something that is not theirs (403)."""

    status, code, title = 403, "forbidden", "Forbidden"


def _parse_private_key(private_key: bytes | str | coincurve.PrivateKey) -> coincurve.PrivateKey:
    if isinstance(private_key, coincurve.PrivateKey):
        return private_key
    if isinstance(private_key, str):
        text = private_key.strip()
        private_key = bytes.fromhex(text[2:] if text[:2] in ("0x", "0X") else text)
    if len(private_key) != 32:
        raise InvalidInput("a private key is 32 bytes", field="private_key")
    return coincurve.PrivateKey(private_key)


def sign_request(
    private_key: bytes | str | coincurve.PrivateKey,
    subscriber: str,
    action: str,
    body: Any,
    *,
    ttl_s: float = 300,
    now_ms: int | None = None,
    nonce: str | None = None,
) -> tuple[bytes, str]:
    """A signed request for the fabric: ``(HTTP body bytes, X-Subscriber-Signature header value)``.

    The body is the canonical JSON that is signed; ``nonce`` (default: 16 random bytes) and ``now_ms``
    (default: the clock) are for test vectors.
    """
    now = clock.now_ms() if now_ms is None else now_ms
    document = {
        "subscriber": subscriber,
        "nonce": nonce or to_hex(os.urandom(16)),
        "expires_ms": now + int(ttl_s * 1000),
        "action": action,
        "body": body,
    }
    message = canonical_json(document)
    signature = sign_digest(_parse_private_key(private_key), eip191_hash(message))
    return message, to_hex(signature)


def parse_public_key(text: Any, field: str = "$.public_key") -> bytes:
    """A secp256k1 public key from hex (SEC1 uncompressed 65 bytes ``04…`` or compressed 33 bytes
    ``02…``/``03…``, ``0x`` optional), returned uncompressed; :class:`InvalidInput` naming ``field``."""
    if not isinstance(text, str):
        raise InvalidInput("public_key must be a hex string", field=field)
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raise InvalidInput("public_key is not valid hex", field=field) from None
    if not (len(raw) == 65 and raw[0] == 4 or len(raw) == 33 and raw[0] in (2, 3)):
        raise InvalidInput(
            "public_key must be a SEC1 secp256k1 key: 65 bytes starting 04 or 33 bytes starting 02/03", field=field
        )
    try:
        return coincurve.PublicKey(raw).format(compressed=False)
    except Exception:
        raise InvalidInput("public_key is not a point on secp256k1", field=field) from None


@dataclass(frozen=True)
class Subscriber:
    name: str
    address: str
    public_key: str  # 0x04… uncompressed
    created_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "public_key": self.public_key,
            "created_ms": self.created_ms,
        }


@dataclass(frozen=True)
class SignedRequest:
    """A verified request: who signed it, what it asks, and its (now spent) nonce."""

    subscriber: str
    action: str
    body: Any
    nonce: str
    expires_ms: int


class SubscriberRegistry:
    """Registered subscribers and the nonces of their requests (one table)."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    # -- registry ---------------------------------------------------------------------------------
    def register(self, name: Any, public_key: Any, *, now_ms: int | None = None) -> Subscriber:
        """Register ``name`` with ``public_key`` (hex, compressed or not); 409 if the name is taken."""
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise InvalidInput("name must be 2-63 of a-z 0-9 _, starting with a letter", field="$.name")
        raw = parse_public_key(public_key)
        subscriber = Subscriber(
            name=name,
            address=address_of(raw),
            public_key=to_hex(raw),
            created_ms=clock.now_ms() if now_ms is None else now_ms,
        )
        with storage_errors("subscribers"):
            try:
                self.table.create_entity(
                    {
                        "PartitionKey": PARTITION,
                        "RowKey": name,
                        **subscriber.to_dict(),
                        "created_ms": EntityProperty(subscriber.created_ms, EdmType.INT64),
                    }
                )
            except ResourceExistsError:
                raise Conflict(f"subscriber {name!r} is already registered", field="$.name") from None
        return subscriber

    def get(self, name: str) -> Subscriber:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise NotFound(f"no subscriber {name!r}", field="name")
        with storage_errors("subscribers"):
            try:
                row = self.table.get_entity(PARTITION, name)
            except ResourceNotFoundError:
                raise NotFound(f"no subscriber {name!r}", field="name") from None
        return _subscriber(row)

    def list(self) -> list[Subscriber]:
        with storage_errors("subscribers"):
            rows = list(self.table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION}))
        return sorted((_subscriber(r) for r in rows), key=lambda s: s.name)

    # -- signed requests --------------------------------------------------------------------------
    def verify_request(
        self, body: bytes, signature_header: str | None, now_ms: int, *, expected_action: str | None = None
    ) -> SignedRequest:
        """Verify a signed subscriber request and spend its nonce; see the module docstring.

        401 :class:`Unauthorized` (reasons ``signature_missing``, ``malformed_signature``, ``high_s``,
        ``unknown_subscriber``, ``signature_mismatch``, ``request_expired``, ``expiry_too_far``),
        400 :class:`InvalidInput` for a malformed document (``field`` = its JSON path),
        409 :class:`Conflict` reason ``replayed_nonce``.
        """
        header = (signature_header or "").strip()
        if not header:
            raise Unauthorized(
                "signature_missing", f"the request must be signed: header {HEADER} is missing", field=HEADER
            )
        if not _SIGNATURE.match(header):
            raise Unauthorized("malformed_signature", f"{HEADER} must be 0x + 65 bytes hex (r || s || v)", field=HEADER)
        document = _parse_document(body)
        try:  # pure computation: nothing is read or written before the signature recovers
            signer = recover_address(eip191_hash(canonical_json(document)), bytes.fromhex(header[2:]))
        except VerificationError as exc:
            raise Unauthorized(exc.reason, exc.detail, field=HEADER) from None
        _check_shape(document)
        name = document["subscriber"]
        try:
            subscriber = self.get(name)
        except NotFound:
            raise Unauthorized(
                "unknown_subscriber", f"no subscriber {name!r} is registered", field="$.subscriber"
            ) from None
        if signer.lower() != subscriber.address.lower():
            raise Unauthorized(
                "signature_mismatch",
                f"the signature is not by subscriber {name!r}'s registered "
                "key (wrong key, or the request was changed after signing)",
                field=HEADER,
            )
        expires = document["expires_ms"]
        if expires <= now_ms:
            raise Unauthorized(
                "request_expired", f"the request expired {now_ms - expires} ms ago", field="$.expires_ms"
            )
        if expires > now_ms + MAX_TTL_MS:
            raise Unauthorized(
                "expiry_too_far", f"expires_ms may be at most {MAX_TTL_MS // 60000} minutes ahead", field="$.expires_ms"
            )
        if expected_action is not None and document["action"] != expected_action:
            raise InvalidInput(
                f"this route takes action {expected_action!r}, the request says {document['action']!r}",
                field="$.action",
            )
        nonce = document["nonce"].lower()
        with storage_errors("subscribers"):
            try:
                self.table.create_entity(
                    {
                        "PartitionKey": NONCE_PARTITION_PREFIX + name,
                        "RowKey": nonce,
                        "expires_ms": EntityProperty(expires, EdmType.INT64),
                        "action": document["action"],
                    }
                )
            except ResourceExistsError:
                raise Conflict(
                    f"nonce {nonce} was already used by {name!r}", field="$.nonce", reason="replayed_nonce"
                ) from None
        return SignedRequest(
            subscriber=name, action=document["action"], body=document["body"], nonce=nonce, expires_ms=expires
        )


def _subscriber(row: dict[str, Any]) -> Subscriber:
    created = row["created_ms"]  # an Int64 property reads back as EntityProperty
    return Subscriber(
        name=row["RowKey"],
        address=row["address"],
        public_key=row["public_key"],
        created_ms=int(getattr(created, "value", created)),
    )


def _parse_document(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidInput("request body must be the signed JSON request", field="$")
    document = parse_json_input(body)  # limits, no duplicate names: the signer and the host read the same
    if not isinstance(document, dict):
        raise InvalidInput("a signed request is a JSON object", field="$")
    return document


def _check_shape(document: dict[str, Any]) -> None:
    extra = sorted(set(document) - set(_MEMBERS))
    if extra:
        raise InvalidInput(f"unknown member {extra[0]!r}", field=f"$.{extra[0]}")
    for name in _MEMBERS:
        if name not in document:
            raise InvalidInput(f"{name} is required", field=f"$.{name}")
    if not isinstance(document["subscriber"], str) or not document["subscriber"]:
        raise InvalidInput("subscriber must be a non-empty string", field="$.subscriber")
    if not isinstance(document["nonce"], str) or not _NONCE.match(document["nonce"]):
        raise InvalidInput("nonce must be 0x + 16 to 32 random bytes in hex", field="$.nonce")
    expires = document["expires_ms"]
    if not isinstance(expires, int) or isinstance(expires, bool) or expires < 0:
        raise InvalidInput("expires_ms must be unix milliseconds (an integer)", field="$.expires_ms")
    if document["action"] not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}", field="$.action")
