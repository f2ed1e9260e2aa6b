"""Egress: the allow-list, SSRF refusals, the fetch limits against a real local HTTP(S) server, and the
``fetch`` call-out end to end from a real region (package ``tests/packages/egress_probe``)."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.envelope import Domain
from shared.errors import InvalidInput, RegionError
from shared.isolation.callout import HostCallOuts
from shared.isolation.egress import EgressDenied, EgressPolicy, EgressTooLarge, FetchFailed, fetch
from shared.packages.digest import package_digest
from tests.helpers import resolver_for

PROBE = Path(__file__).resolve().parents[2] / "packages" / "egress_probe"
REGISTRATION = {"stream": "registry", "sequence": 1, "entry_hash": "0x" + "aa" * 32}
AS_ROOT = os.geteuid() == 0
BIG = 2 * 1024 * 1024
REGION_TIMEOUT_S = 20  # for `provider` (tests/integration/conftest.py)


# -- a real local HTTP server -----------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    """``/hello``, ``/echo`` (method, body, a few headers as JSON), ``/redirect?to=``, ``/big``, ``/stream``."""

    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        self.server.seen.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/hello":
            self._send(200, b"hello from the test server", Content_Type="text/plain")
        elif url.path == "/echo":
            echo = {
                "method": self.command,
                "body": body.decode(),
                "host": self.headers.get("Host"),
                "probe": self.headers.get("X-Probe"),
                "accept_encoding": self.headers.get("Accept-Encoding"),
            }
            self._send(200, json.dumps(echo).encode(), Content_Type="application/json")
        elif url.path == "/redirect":
            self._send(int(parse_qs(url.query).get("status", ["302"])[0]), Location=parse_qs(url.query)["to"][0])
        elif url.path == "/loop":
            self._send(302, Location="/loop")
        elif url.path == "/big":
            self._send(200, b"x" * BIG)
        elif url.path == "/stream":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for _ in range(BIG // 65536):
                self.wfile.write(b"y" * 65536)
        else:
            self._send(404, b"not found")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _route

    def log_message(self, *args) -> None:
        pass


@dataclass
class Server:
    host: str
    port: int
    seen: list = field(default_factory=list)
    sni: list = field(default_factory=list)

    def url(self, path: str = "/hello", scheme: str = "http", host: str | None = None) -> str:
        return f"{scheme}://{host or self.host}:{self.port}{path}"


def serve(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    httpd = ThreadingHTTPServer((host, 0), Handler)
    server = Server(host, httpd.server_address[1])
    httpd.seen = server.seen  # type: ignore[attr-defined]
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: server.sni.append(name)
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from serve()


# -- SSRF through a real connection -------------------------------------------------------------
def test_private_server_reached_through_a_hostname_is_refused(server):
    """The server runs on 127.0.0.1; allowing a hostname that resolves there must not reach it."""
    resolve = resolver_for({"internal.example": ["127.0.0.1"]})
    policy = EgressPolicy([f"internal.example:{server.port}"], resolver=resolve)
    before = len(server.seen)
    with pytest.raises(EgressDenied, match="resolves to a loopback address"):
        fetch(policy, url=server.url(host="internal.example"), timeout_s=5)
    assert len(server.seen) == before


# -- fetch against the local server ----------------------------------------------------------------
def allow(server: Server, *extra: str) -> EgressPolicy:
    return EgressPolicy([f"127.0.0.1:{server.port}", *extra])


def test_allowed_get_and_post(server):
    result = fetch(allow(server), url=server.url("/hello"), timeout_s=5)
    assert (result.status, result.body) == (200, b"hello from the test server")
    assert result.url == server.url("/hello") and result.headers["content-type"] == "text/plain"
    assert all(name == name.lower() for name in result.headers)
    posted = fetch(
        allow(server),
        url=server.url("/echo"),
        method="post",
        body=b'{"q": 1}',
        headers={"X-Probe": "yes", "Content-Type": "application/json"},
        timeout_s=5,
    )
    echo = json.loads(posted.body)
    assert echo == {
        "method": "POST",
        "body": '{"q": 1}',
        "host": f"127.0.0.1:{server.port}",
        "probe": "yes",
        "accept_encoding": "identity",
    }
    assert fetch(allow(server), url=server.url("/hello"), method="HEAD", timeout_s=5).body == b""
    assert fetch(allow(server), url=server.url("/nothing"), timeout_s=5).status == 404  # statuses pass through


def test_non_allowed_host_is_denied_before_any_request(server):
    before = len(server.seen)
    with pytest.raises(EgressDenied, match=f"host 127.0.0.1:{server.port} is not in"):
        fetch(EgressPolicy([f"127.0.0.1:{server.port + 1}"]), url=server.url(), timeout_s=5)
    assert len(server.seen) == before


def test_redirects_are_followed_and_each_hop_checked(server):
    followed = fetch(allow(server), url=server.url("/redirect?to=/echo"), method="POST", body=b"x", timeout_s=5)
    assert followed.status == 200 and followed.url == server.url("/echo")
    assert json.loads(followed.body)["method"] == "GET"  # 302 after POST: GET, body dropped
    kept = fetch(allow(server), url=server.url("/redirect?status=307&to=/echo"), method="POST", body=b"x", timeout_s=5)
    assert json.loads(kept.body)["method"] == "POST" and json.loads(kept.body)["body"] == "x"
    before = len(server.seen)
    for target in (
        "http://metadata.example/latest",
        "http://169.254.169.254/latest/meta-data/",
        f"http://localhost:{server.port}/hello",
    ):
        with pytest.raises(EgressDenied, match="is not in the cryptlet's egress allow-list"):
            fetch(allow(server), url=server.url(f"/redirect?to={target}"), timeout_s=5)
    assert len(server.seen) == before + 3  # only the redirecting requests reached a server
    with pytest.raises(FetchFailed, match="redirected to an unusable URL: url must be http:// or https://"):
        fetch(allow(server), url=server.url("/redirect?to=file:///etc/passwd"), timeout_s=5)
    with pytest.raises(FetchFailed, match="more than 5 redirects"):
        fetch(allow(server), url=server.url("/loop"), timeout_s=5)


def test_oversized_responses_are_refused(server):
    for path in ("/big", "/stream"):  # declared by Content-Length, and counted while streaming
        with pytest.raises(EgressTooLarge) as caught:
            fetch(allow(server), url=server.url(path), timeout_s=5)
        assert caught.value.code == "egress_too_large" and f"larger than {1024 * 1024} bytes" in caught.value.detail
    assert len(fetch(allow(server), url=server.url("/big"), timeout_s=5, max_response_bytes=BIG).body) == BIG
    with pytest.raises(EgressTooLarge):
        fetch(allow(server), url=server.url("/hello"), timeout_s=5, max_response_bytes=10)


@pytest.mark.parametrize(
    "headers, words",
    [
        ({"Host": "evil.example"}, "header 'Host' is set by the host"),
        ({"content-length": "5"}, "header 'content-length' is set by the host"),
        ({"Transfer-Encoding": "chunked"}, "header 'Transfer-Encoding'"),
        ({"Connection": "close"}, "header 'Connection'"),
        ({"X-A": "one\r\nX-Injected: 1"}, "header 'X-A' must be printable ASCII on one line"),
        ({"Bad Name": "x"}, "not a valid HTTP header name"),
    ],
)
def test_bad_headers_are_refused(server, headers, words):
    before = len(server.seen)
    with pytest.raises(InvalidInput) as caught:
        fetch(allow(server), url=server.url(), headers=headers, timeout_s=5)
    assert words in caught.value.detail and caught.value.field.startswith("headers")
    assert len(server.seen) == before


def test_request_limits(server):
    with pytest.raises(InvalidInput, match="larger than 262144 bytes"):
        fetch(allow(server), url=server.url("/echo"), method="POST", body=b"x" * (256 * 1024 + 1), timeout_s=5)
    with pytest.raises(InvalidInput, match="method must be one of"):
        fetch(allow(server), url=server.url(), method="CONNECT", timeout_s=5)
    with pytest.raises(InvalidInput, match="timeout_s"):
        fetch(allow(server), url=server.url(), timeout_s=0)


def test_network_failures_are_one_line_fetch_failures(server):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    with pytest.raises(FetchFailed) as caught:
        fetch(EgressPolicy([f"127.0.0.1:{port}"]), url=f"http://127.0.0.1:{port}/", timeout_s=5)
    assert caught.value.status == 502 and "\n" not in caught.value.detail
    assert caught.value.detail.startswith("GET 127.0.0.1 failed:")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (in the backlog) but never answers
    try:
        port = silent.getsockname()[1]
        with pytest.raises(FetchFailed, match="timed out"):
            fetch(EgressPolicy([f"127.0.0.1:{port}"]), url=f"http://127.0.0.1:{port}/", timeout_s=0.5)
    finally:
        silent.close()


# -- TLS: pinned address, SNI and certificate checked on the real host name ---------------------------
def certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize("served_name, ok", [("localhost", True), ("other.example", False)])
def test_tls_goes_to_the_checked_address_with_sni_and_verification_on_the_host_name(tmp_path, served_name, ok):
    """The server listens on 127.0.0.2 only; the resolver says localhost is 127.0.0.2 (the system says
    127.0.0.1), so reaching it proves the checked address was used; the certificate names only
    ``served_name``, so success proves TLS verified ``localhost``, not the address."""
    cert, key = certificate(tmp_path, served_name)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    for server in serve("127.0.0.2", tls):
        policy = EgressPolicy([f"localhost:{server.port}"], resolver=resolver_for({"localhost": ["127.0.0.2"]}))
        url = f"https://localhost:{server.port}/echo"
        if ok:
            result = fetch(policy, url=url, timeout_s=5, verify=trust)
            assert result.status == 200 and result.url == url
            assert json.loads(result.body)["host"] == f"localhost:{server.port}"
            assert server.sni == ["localhost"]
        else:
            with pytest.raises(FetchFailed) as caught:
                fetch(policy, url=url, timeout_s=5, verify=trust)
            assert "CERTIFICATE_VERIFY_FAILED" in caught.value.detail or "certificate" in caught.value.detail
        with pytest.raises(FetchFailed):  # the default trust store does not know the test certificate
            fetch(policy, url=url, timeout_s=5)
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        with pytest.raises(InvalidInput, match="cannot be turned off"):
            fetch(policy, url=url, timeout_s=5, verify=unverified)


# -- the call-out (host side) -----------------------------------------------------------------------
def test_fetch_call_out_message_format_and_logging(server, caplog):
    handler = HostCallOuts("probe", egress=[f"127.0.0.1:{server.port}"])
    with caplog.at_level(logging.INFO, logger="fabric.region"):
        result = handler(
            "fetch",
            {
                "url": server.url("/echo?secret=q"),
                "method": "PUT",
                "headers": {"X-Probe": "header-value-7"},
                "body_b64": "Ym9keS1zZWNyZXQ=",
                "timeout_s": 100,
            },
        )
        with pytest.raises(EgressDenied):
            handler("fetch", {"url": "https://elsewhere.example/x"})
        with pytest.raises(InvalidInput):  # a region cannot forge log lines through the logged method
            handler("fetch", {"url": "https://elsewhere.example/x", "method": "GET\nforged line"})
    assert set(result) == {"status", "url", "headers", "body_b64"}
    assert result["status"] == 200 and result["url"] == server.url("/echo?secret=q")
    echo = json.loads(base64.b64decode(result["body_b64"]))
    assert (echo["method"], echo["body"], echo["probe"]) == ("PUT", "body-secret", "header-value-7")
    assert result["headers"]["content-type"] == "application/json"
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    size = len(base64.b64decode(result["body_b64"]))
    assert [r.getMessage() for r in infos] == [f"cryptlet probe: fetch PUT 127.0.0.1 -> 200 ({size} bytes)"]
    assert [w.getMessage().split(":")[1] for w in warnings] == [
        " fetch GET elsewhere.example refused (egress_denied)",
        " fetch ? elsewhere.example refused (invalid_input)",
    ]
    assert "forged" not in caplog.text
    for secret in ("secret", "header-value-7", "body-secret", "Ym9keS1zZWNyZXQ="):
        assert secret not in caplog.text


# -- end to end through a real region --------------------------------------------------------------
@pytest.fixture
def probe(tmp_path, provider, server):
    package = tmp_path / "egress_probe"
    shutil.copytree(PROBE, package, ignore=shutil.ignore_patterns("__pycache__"))
    region = provider.create_region(
        package,
        package_digest(package),
        domain=Domain(),
        call_out=HostCallOuts("egress_probe", egress=[f"127.0.0.1:{server.port}"]),
    )
    try:
        region.call("generate_key")
        region.call("bind", registration=REGISTRATION)
        yield region
    finally:
        region.close()


def invoke(region, cryptlet_method: str, sequence: int, **args):
    return region.call("invoke", method=cryptlet_method, args=args, sequence=sequence, request_id="0x" + "00" * 32)[
        "envelope"
    ]["payload"]


def test_region_fetches_through_the_host_only_within_its_allow_list(probe, server):
    got = invoke(probe, "fetch", 1, url=server.url("/hello"))
    assert got == {
        "status": 200,
        "url": server.url("/hello"),
        "body": "hello from the test server",
        "content_type": "text/plain",
    }
    posted = json.loads(invoke(probe, "fetch", 2, url=server.url("/echo"), method="POST", body="from a region")["body"])
    assert (posted["method"], posted["body"], posted["probe"]) == ("POST", "from a region", "egress_probe")
    denied = invoke(probe, "try_fetch", 3, url="https://example.com/")
    assert denied["error"] == "egress_denied"
    assert "host example.com is not in the cryptlet's egress allow-list" in denied["message"]
    assert (
        invoke(probe, "try_fetch", 4, url=server.url("/redirect?to=http://elsewhere.example/"))["error"]
        == "egress_denied"
    )
    with pytest.raises(RegionError) as caught:  # uncaught, the refusal is the call's one-line error
        invoke(probe, "fetch", 5, url=f"http://127.0.0.1:{server.port + 1}/")
    assert caught.value.extra["region_code"] == "cryptlet_error"
    assert "egress_denied: host 127.0.0.1:" in caught.value.detail and "\n" not in caught.value.detail
    assert probe.alive


@pytest.mark.skipif(not AS_ROOT, reason="regions have their own (empty) network namespace only on a root host")
def test_region_cannot_connect_directly(probe, server):
    direct = invoke(probe, "connect", 1, host="127.0.0.1", port=server.port)
    assert direct["connected"] is False, direct
    assert invoke(probe, "fetch", 2, url=server.url("/hello"))["status"] == 200  # while the call-out works
