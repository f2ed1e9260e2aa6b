"""Delivery: the fabric's delivery key, the signed delivery body, and the callback POST.

The delivery key is a secp256k1 key derived from the sealing secret with HKDF-SHA256 (info
``cryptlet-fabric/delivery/v1``; every host with the same secret has the same key, and no other
fabric key is derived with that label). Its address is ``delivery_address`` in ``GET
/api/attestation``. A delivery body (docs/events.md) is signed as an EIP-191 ``personal_sign`` of
its canonical JSON (RFC 8785): ``keccak256("\\x19Ethereum Signed Message:\\n" + len + message)``,
so ``eth_account``/``ethers`` recover the address from the body and the header as they are.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import coincurve
import httpcore
import httpx

from shared.encoding import canonical_json, to_hex
from shared.envelope import SECP256K1_N, address_of, eip191_hash, recover_address, sign_digest
from shared.errors import ConfigurationError, FabricError, InvalidInput
from shared.isolation.egress import (
    FetchFailed,
    Resolver,
    host_header,
    non_public_reason,
    resolve,
    split_url,
)
from shared.keys import derive

log = logging.getLogger("fabric.delivery")
if logging.getLogger("httpx").level == logging.NOTSET:  # one INFO line per callback would drown the host log
    logging.getLogger("httpx").setLevel(logging.WARNING)
HEADER = "X-Fabric-Signature"
#: Seconds a callback may take to answer (connect + read).
CALLBACK_TIMEOUT_S = 5.0
#: Most bytes of a callback's answer read (the rest is dropped with the connection).
MAX_ANSWER_BYTES = 64 * 1024
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\Z")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


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


class CallbackDenied(FabricError):
    """A callback URL points at an address callbacks may not reach (loopback, private, metadata, ...)."""

    status, code, title = 400, "callback_denied", "Callback destination not allowed"


class CallbackPolicy:
    """Where callbacks may go: the egress rules of ``fetch`` (docs/egress.md), with the admin's exceptions.

    A callback URL is ``http(s)://`` without user information, its host a name or an IP literal (never
    a number some parser reads as IPv4: ``2130706433``, ``0x7f.1``). Every address it resolves to
    that is not public unicast (:func:`~shared.isolation.egress.non_public_reason`: loopback,
    private, link-local with 169.254.169.254, multicast, reserved, unspecified, Azure's
    168.63.129.16, and IPv4 embedded in IPv6: mapped, 6to4, NAT64) is refused unless ``allow``
    (``FABRIC_CALLBACK_ALLOW``) names the host exactly, or a network holding the address; the POST
    connects only to the addresses that passed, resolved when it connects.
    """

    def __init__(self, allow: str | Iterable[str] = "", *, resolver: Resolver = socket.getaddrinfo) -> None:
        entries = [e.strip().lower() for e in (allow.split(",") if isinstance(allow, str) else allow)]
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in filter(None, entries):
            try:
                self.networks.append(ipaddress.ip_network(entry.removeprefix("[").removesuffix("]"), strict=False))
            except ValueError:
                if not _NAME.match(entry.removesuffix(".")):
                    raise ConfigurationError(
                        f"FABRIC_CALLBACK_ALLOW entry {entry!r} is not a host name, IP address or CIDR",
                        field="FABRIC_CALLBACK_ALLOW",
                    ) from None
                self.names.add(entry.removesuffix("."))
        self.resolver = resolver

    def check_url(self, url: object) -> tuple[httpx.URL, str, int]:
        """``(parsed, host, port)`` of a well-formed callback URL (no DNS); :class:`InvalidInput` (``url``)."""
        if not isinstance(url, str):
            raise InvalidInput("a callback url is a string", field="url")
        parsed, _, host, port = split_url(url)
        return parsed, host, port

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses a callback to ``host`` may connect to (resolved now): the public ones and those
        the admin allowed. :class:`CallbackDenied` if none is left; ``FetchFailed`` if ``host`` does not
        resolve."""
        found = resolve(self.resolver, host, port)
        allowed = [str(a) for a in found if self.permits(host, a)]
        if not allowed:
            reasons = sorted({non_public_reason(a) or "" for a in found})
            raise CallbackDenied(
                f"callback host {host} resolves only to non-public addresses ({', '.join(reasons)}); "
                "an admin may allow it with FABRIC_CALLBACK_ALLOW",
                field="url",
                host=host,
            )
        return allowed

    def permits(self, host: str, address: Address) -> bool:
        return (
            non_public_reason(address) is None
            or host in self.names
            or any(address.version == n.version and address in n for n in self.networks)
        )

    def check(self, url: object) -> None:
        """Subscribe-time check: well-formed, and not resolving only to refused addresses. A host that
        does not resolve now passes (each delivery checks again, and fails until it resolves)."""
        _, host, port = self.check_url(url)
        try:
            self.addresses(host, port)
        except FetchFailed:
            pass


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects a callback's connection to the addresses its policy passed, resolved at connect time,
    so DNS cannot be rebound between the check and the connection."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self.policy.addresses(host.strip("[]"), port):
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"could not connect to {host}")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("callbacks do not use unix sockets")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class CallbackClient:
    """POSTs signed delivery bodies with one shared connection pool, only where ``policy`` allows."""

    def __init__(
        self, key: DeliveryKey, policy: CallbackPolicy | None = None, timeout: float = CALLBACK_TIMEOUT_S
    ) -> None:
        self.key = key
        self.policy = policy if policy is not None else CallbackPolicy()
        self.timeout = timeout
        trust = httpx.create_ssl_context(verify=True, trust_env=False)  # certifi's CAs, hostname checked
        self.pool = httpcore.ConnectionPool(
            ssl_context=trust,
            max_connections=64,
            max_keepalive_connections=32,
            keepalive_expiry=5.0,
            network_backend=_PinnedBackend(self.policy),
        )
        assert trust.verify_mode == ssl.CERT_REQUIRED and trust.check_hostname

    def post(self, url: str, body: dict[str, Any]) -> str:
        """Deliver; return the signature sent. :class:`DeliveryFailed` unless the target answered 2xx
        (a destination the policy refuses, now that its host resolves elsewhere, fails the same way)."""
        try:
            parsed, host, port = self.policy.check_url(url)
        except InvalidInput as exc:
            raise DeliveryFailed(f"callback url refused: {exc.detail}") from None
        signature = self.key.sign(body)
        data = canonical_json(body)
        headers = [
            ("Host", host_header(host, port, parsed.scheme)),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            (HEADER, signature),
        ]
        timeouts = {"connect": self.timeout, "read": self.timeout, "write": self.timeout, "pool": self.timeout}
        try:
            with self.pool.stream(
                "POST", str(parsed), headers=headers, content=data, extensions={"timeout": timeouts}
            ) as response:
                status = response.status
                read = 0
                for chunk in response.iter_stream():  # drain a little, so the connection can be reused
                    read += len(chunk)
                    if read > MAX_ANSWER_BYTES:
                        break
        except CallbackDenied as exc:
            raise DeliveryFailed(f"callback refused: {exc.detail}") from None
        except FetchFailed:
            raise DeliveryFailed(f"callback unreachable: {host} does not resolve") from None
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            raise DeliveryFailed(f"callback unreachable: {type(exc).__name__}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"callback answered {status}")
        return signature

    def close(self) -> None:
        self.pool.close()
