"""Egress: HTTP fetches made by the host on a cryptlet's behalf, confined to its allow-list.

A region has no network; the ``fetch`` call-out (:mod:`shared.isolation.callout`) asks the host to
make one HTTP request for it. :class:`EgressPolicy` decides whether a URL may be reached (the
cryptlet's ``egress`` host patterns, see ``shared/schemas/policy.schema.json``) and where to
connect (the address it checked, so DNS cannot be rebound between check and connect);
:func:`fetch` makes the request with httpx under fixed limits, following redirects itself and
re-checking every hop. Rules and limits: ``docs/egress.md``.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx

from shared.errors import FabricError, InvalidInput

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
"""``socket.getaddrinfo``-shaped: ``resolver(host, port, type=socket.SOCK_STREAM) -> [(.., .., .., .., sockaddr)]``."""

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Headers the host sets itself (or that would smuggle framing); a cryptlet may not set them.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
MAX_REQUEST_BYTES = 256 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
MAX_TIMEOUT_S = 10.0
MAX_REDIRECTS = 5
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8 * 1024
MAX_URL_CHARS = 8 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Dropped when a redirect leaves the origin (as browsers and httpx do).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
PATTERN_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*(:[0-9]{{1,5}})?\Z")  # as in policy.schema.json
_HOST_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\Z")
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an HTTP header name (RFC 9110 token)
_VALUE_RE = re.compile(r"^[\t\x20-\x7e]*\Z")  # printable ASCII and tab: no CR/LF/NUL, nothing to encode
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Cloud metadata and platform endpoints that are public-looking addresses (Azure's WireServer), or
#: named here for the record (AWS's IPv6 instance metadata, also a unique-local address).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("168.63.129.16", "fd00:ec2::254"))
_NUMBER = re.compile(r"^(0x[0-9a-f]*|[0-9]+)\Z")


class EgressDenied(FabricError):
    """The cryptlet may not reach this URL (not allow-listed, or a non-public address)."""

    status, code, title = 403, "egress_denied", "Egress denied"


class EgressTooLarge(FabricError):
    """The response body exceeded the fetch's byte limit."""

    status, code, title = 502, "egress_too_large", "Response too large"


class FetchFailed(FabricError):
    """The fetch could not be completed (DNS, connect, TLS, timeout, protocol, too many redirects)."""

    status, code, title = 502, "fetch_failed", "Fetch failed"


@dataclass(frozen=True)
class Pattern:
    """One allow-list entry: ``host``, ``*.suffix`` (subdomains only), optional ``:port``."""

    host: str
    wildcard: bool
    port: int | None

    @classmethod
    def parse(cls, text: str) -> Pattern:
        if not isinstance(text, str) or not PATTERN_RE.match(text):
            raise InvalidInput(f"egress pattern {text!r} is not a host, *.suffix or host:port", field="egress")
        host, _, port = text.partition(":")
        if port and not 1 <= int(port) <= 65535:
            raise InvalidInput(f"egress pattern {text!r} has a port outside 1-65535", field="egress")
        wildcard = host.startswith("*.")
        return cls(host[2:] if wildcard else host, wildcard, int(port) if port else None)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if self.port is None:
            if port != DEFAULT_PORTS[scheme]:
                return False
        elif port != self.port:
            return False
        return host.endswith("." + self.host) if self.wildcard else host == self.host

    @property
    def explicit_local(self) -> bool:
        """Whether the entry names its host exactly as an IP literal or ``localhost`` (may be non-public)."""
        return not self.wildcard and (self.host == "localhost" or _ip_literal(self.host) is not None)

    def __str__(self) -> str:
        return ("*." if self.wildcard else "") + self.host + (f":{self.port}" if self.port is not None else "")


@dataclass(frozen=True)
class Target:
    """A checked URL: where it points (``host``, ``port``) and the checked ``addresses`` to connect to."""

    url: httpx.URL
    scheme: str
    host: str
    port: int
    pattern: Pattern
    addresses: tuple[str, ...] = ()

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def host_header(self) -> str:
        return host_header(self.host, self.port, self.scheme)


@dataclass(frozen=True)
class FetchResult:
    status: int
    url: str
    headers: dict[str, str]
    body: bytes


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def ends_in_a_number(host: str) -> bool:
    """Whether a host that is not an IP literal still reads as an IPv4 address to some parser (its last
    label is a decimal, octal or hex number, as the WHATWG URL standard puts it: ``2130706433``,
    ``0x7f.1``, ``0177.0.0.1``); such hosts are refused rather than guessed at."""
    labels = host.removesuffix(".").split(".")
    return _ip_literal(host) is None and bool(_NUMBER.match(labels[-1]))


def non_public_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is not a public unicast address (``None`` if it is one)."""
    if address in METADATA_ADDRESSES:
        return "metadata"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = (
            address.ipv4_mapped
            or address.sixtofour
            or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        )
        if embedded is not None:
            return non_public_reason(embedded)
    for reason in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{reason}"):
            return reason.replace("_", "-")
    if not address.is_global:
        return "non-global"
    return None


class EgressPolicy:
    """A cryptlet's egress allow-list: which URLs it may fetch, and which address to connect to."""

    def __init__(self, patterns: Iterable[str], *, resolver: Resolver = socket.getaddrinfo) -> None:
        self.patterns = tuple(Pattern.parse(p) for p in patterns)
        self.resolver = resolver

    def match(self, url: str | httpx.URL) -> Target:
        """Parse ``url`` and find the allow-list entry it falls under (no DNS); else :class:`EgressDenied`."""
        parsed, scheme, host, port = split_url(url)
        for pattern in self.patterns:
            if pattern.matches(scheme, host, port):
                return Target(parsed, scheme, host, port, pattern)
        shown = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
        raise EgressDenied(f"host {shown} is not in the cryptlet's egress allow-list", host=host)

    def check(self, url: str | httpx.URL) -> Target:
        """:meth:`match`, then resolve the host once and refuse non-public addresses.

        Non-public addresses (loopback, private, link-local incl. 169.254.169.254, multicast,
        reserved, unspecified) pass only when the matching entry names the host exactly as an IP
        literal or ``localhost``. The returned ``addresses`` are the only ones connected to.
        """
        target = self.match(url)
        addresses = self._resolve(target.host, target.port)
        if not target.pattern.explicit_local:
            for address in addresses:
                reason = non_public_reason(address)
                if reason is not None:
                    raise EgressDenied(
                        f"host {target.host} resolves to a {reason} address; only an egress entry "
                        "naming that IP address (or localhost) explicitly may reach it",
                        host=target.host,
                    )
        return Target(
            target.url, target.scheme, target.host, target.port, target.pattern, tuple(str(a) for a in addresses)
        )

    def _resolve(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return resolve(self.resolver, host, port)


def resolve(resolver: Resolver, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``host`` resolves to (an IP literal: itself); :class:`FetchFailed` if none."""
    literal = _ip_literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"could not resolve {host}: {_one_line(exc)}", host=host) from None
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for info in infos:
        address = _ip_literal(str(info[4][0]).partition("%")[0])
        if address is not None and address not in found:
            found.append(address)
    if not found:
        raise FetchFailed(f"could not resolve {host}: no addresses", host=host)
    return found


def split_url(url: str | httpx.URL) -> tuple[httpx.URL, str, str, int]:
    """``(parsed, scheme, host, port)`` of an http(s) URL: the host lower-case without a trailing dot,
    a host name or an IP literal (never a number that some parser would read as IPv4); else
    :class:`InvalidInput` (``url``)."""
    parsed = _parse(url)
    scheme = parsed.scheme
    host = parsed.raw_host.decode("ascii").lower().removesuffix(".")
    port = parsed.port or DEFAULT_PORTS[scheme]
    if not (_HOST_RE.match(host) or _ip_literal(host) is not None):
        raise InvalidInput(f"url host {host!r} is not a host name or IP address", field="url")
    if ends_in_a_number(host):
        raise InvalidInput(f"url host {host!r} is a number but not a dotted-quad IPv4 address", field="url")
    return parsed, scheme, host, port


def host_header(host: str, port: int, scheme: str) -> str:
    """The ``Host`` header of a request to ``host:port`` (IPv6 literals in brackets, default ports left out)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == DEFAULT_PORTS[scheme] else f"{name}:{port}"


@lru_cache(maxsize=1)
def _default_trust() -> ssl.SSLContext:
    """httpx's default trust (certifi's CA store), ignoring SSL_CERT_FILE/SSL_CERT_DIR; loaded once."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


def _parse(url: str | httpx.URL) -> httpx.URL:
    if isinstance(url, str) and len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"url is longer than {MAX_URL_CHARS} characters", field="url")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidInput(f"url is not a valid URL: {_one_line(exc)}", field="url") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise InvalidInput("url must be http:// or https://", field="url")
    if parsed.userinfo:
        raise InvalidInput("url must not contain user information (user:password@)", field="url")
    if not parsed.raw_host:
        raise InvalidInput("url has no host", field="url")
    return parsed


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def check_headers(headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """The caller's headers as a list; refuses framing/hop-by-hop headers, naming them."""
    if not headers:
        return []
    if len(headers) > MAX_HEADERS:
        raise InvalidInput(f"at most {MAX_HEADERS} headers", field="headers")
    checked = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN_RE.match(name):
            raise InvalidInput(f"header name {str(name)[:64]!r} is not a valid HTTP header name", field="headers")
        if name.lower() in FORBIDDEN_HEADERS:
            raise InvalidInput(f"header {name!r} is set by the host and may not be given", field=f"headers.{name}")
        if not isinstance(value, str) or len(value) > MAX_HEADER_BYTES or not _VALUE_RE.match(value):
            raise InvalidInput(
                f"header {name!r} must be printable ASCII on one line, at most {MAX_HEADER_BYTES} characters",
                field=f"headers.{name}",
            )
        checked.append((name, value))
    return checked


def fetch(
    policy: EgressPolicy,
    *,
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout_s: float = MAX_TIMEOUT_S,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    verify: ssl.SSLContext | None = None,
) -> FetchResult:
    """Make one HTTP request allowed by ``policy``, following up to 5 redirects (each re-checked).

    The whole fetch, redirects included, gets ``timeout_s`` (at most 10 s). The response body is
    returned as received (no content decoding; ``Accept-Encoding: identity`` unless the caller asks
    otherwise) and may not exceed ``max_response_bytes``. ``verify`` is the TLS trust (default: the
    certifi store); certificate and host name checks cannot be turned off.
    """
    method = method.upper() if isinstance(method, str) else method
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}", field="method")
    if not isinstance(body, (bytes, bytearray)):
        raise InvalidInput("body must be bytes", field="body")
    if len(body) > MAX_REQUEST_BYTES:
        raise InvalidInput(f"request body is larger than {MAX_REQUEST_BYTES} bytes", field="body")
    extra = check_headers(headers)
    if not any(n.lower() == "accept-encoding" for n, _ in extra):
        extra.append(("Accept-Encoding", "identity"))
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not timeout_s > 0
        or not math.isfinite(timeout_s)
    ):
        raise InvalidInput("timeout_s must be a positive number of seconds", field="timeout_s")
    deadline = time.monotonic() + min(float(timeout_s), MAX_TIMEOUT_S)
    trust = verify if verify is not None else _default_trust()
    if trust.verify_mode != ssl.CERT_REQUIRED or not trust.check_hostname:
        raise InvalidInput("TLS verification cannot be turned off", field="verify")
    target = policy.check(url)
    content = bytes(body)
    for hop in range(MAX_REDIRECTS + 1):
        status, response_headers, data = _request(target, method, extra, content, deadline, max_response_bytes, trust)
        location = response_headers.get("location")
        if status not in REDIRECTS or location is None:
            return FetchResult(status, str(target.url), dict(response_headers.items()), data)
        if hop == MAX_REDIRECTS:
            break
        try:
            next_url = target.url.join(location)
        except (httpx.InvalidURL, ValueError) as exc:
            raise FetchFailed(
                f"{target.host} redirected to an invalid URL: {_one_line(exc)}", host=target.host
            ) from None
        if status == 303 or (status in (301, 302) and method == "POST"):
            method = "GET" if method != "HEAD" else method
            content = b""
        try:
            following = policy.check(next_url)
        except InvalidInput as exc:  # e.g. a redirect to ftp:// or to user:password@host
            raise FetchFailed(f"{target.host} redirected to an unusable URL: {exc.detail}", host=target.host) from None
        if following.origin != target.origin:
            extra = [(n, v) for n, v in extra if n.lower() not in CREDENTIAL_HEADERS]
        target = following
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects, starting from {policy.match(url).host}")


def _request(
    target: Target,
    method: str,
    headers: list[tuple[str, str]],
    content: bytes,
    deadline: float,
    max_bytes: int,
    verify: ssl.SSLContext,
) -> tuple[int, httpx.Headers, bytes]:
    """One request to the checked addresses of ``target``, in order until one connects.

    The URL carries the address, so nothing resolves the host again; the ``Host`` header and the
    TLS server name (SNI and certificate check) stay ``target.host``.
    """
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and _ip_literal(target.host) is None:
        extensions["sni_hostname"] = target.host
    request_headers = [("Host", target.host_header), *headers]
    failure: Exception | None = None
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with httpx.Client(verify=verify, trust_env=False, follow_redirects=False, timeout=remaining) as client:
                request = client.build_request(
                    method,
                    target.url.copy_with(host=address),
                    headers=request_headers,
                    content=content or None,
                    extensions=extensions,
                )
                response = client.send(request, stream=True)
                try:
                    return response.status_code, response.headers, _read(response, target, deadline, max_bytes)
                finally:
                    response.close()
        except httpx.ConnectError as exc:  # refused, unreachable, TLS: try the next checked address
            failure = exc
        except httpx.TimeoutException:
            raise FetchFailed(f"{method} {target.host} timed out", host=target.host) from None
        except (httpx.HTTPError, OSError) as exc:
            raise FetchFailed(f"{method} {target.host} failed: {_one_line(exc)}", host=target.host) from None
    if failure is None:
        raise FetchFailed(f"{method} {target.host} timed out", host=target.host)
    raise FetchFailed(f"{method} {target.host} failed: {_one_line(failure)}", host=target.host)


def _read(response: httpx.Response, target: Target, deadline: float, max_bytes: int) -> bytes:
    """The body as received, cut at ``max_bytes`` (a redirect's body is not read)."""
    if response.status_code in REDIRECTS and "location" in response.headers:
        return b""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise EgressTooLarge(
            f"response from {target.host} is larger than {max_bytes} bytes (content-length {declared})",
            host=target.host,
        )
    data = bytearray()
    for chunk in response.iter_raw():
        data += chunk
        if len(data) > max_bytes:
            raise EgressTooLarge(f"response from {target.host} is larger than {max_bytes} bytes", host=target.host)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the response did not finish in time")
    return bytes(data)
