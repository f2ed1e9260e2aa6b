"""Hostile input against the real dev host serving function_app.py: bodies past the JSON limits are a
400 naming the field on every body-parsing route (never a 500, never enqueued), oversized bodies a
413 without the host buffering them, policies outside their bounds a 400, and no function key given
as ``?code=`` ever reaches the host log (shared/limits.py, shared/encoding.py, shared/redact.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from tests.e2e.conftest import FabricHost, register
from tests.helpers import wait_for

NESTED = b'{"method":"validate","args":{"x":' + b"[" * 1100 + b"]" * 1100 + b"}}"
LONG_INT = b'{"method":"validate","args":{"x":' + b"9" * 5000 + b"}}"
SURROGATE = b'{"method":"validate","args":{"x":"\\ud800"}}'
SURROGATE_NAME = b'{"method":"validate","args":{"\\ud800":1}}'
DUPLICATE = b'{"method":"validate","args":{"x":1,"x":2}}'
HOSTILE = {
    "nested 1,100 deep": (NESTED, "$", "nested deeper than 64 levels"),
    "5,000-digit integer": (LONG_INT, "$.args.x", "more than 100 digits"),
    "lone surrogate": (SURROGATE, "$.args.x", "lone UTF-16 surrogate"),
    "lone surrogate in a name": (SURROGATE_NAME, "$.args['\\ud800']", "lone UTF-16 surrogate"),
    "duplicate name": (DUPLICATE, "$.args.x", "occurs twice"),
}
# (method, path, key): every route that parses a JSON body. The signed-request routes get a
# well-formed (but wrong) signature, so that the body is parsed before the signature is checked.
ROUTES = {
    "invoke": ("POST", "/api/cryptlets/customer_validator/invoke", "function"),
    "requests": ("POST", "/api/cryptlets/customer_validator/requests", "function"),
    "policy": ("PUT", "/api/cryptlets/customer_validator/policy", "admin"),
    "subscriptions": ("POST", "/api/subscriptions", "function"),
    "subscribers": ("POST", "/api/subscribers", "admin"),
}
SIGNATURE = {"X-Subscriber-Signature": "0x" + "11" * 65}


@pytest.fixture(scope="module")
def registered(fabric_host: FabricHost) -> dict[str, dict]:
    return {package: register(fabric_host, package) for package in ("customer_validator", "hostile_garbage")}


def send(host: FabricHost, route: str, body: bytes, **kwargs: object) -> httpx.Response:
    method, path, key = ROUTES[route]
    headers = {"content-type": "application/json", **(SIGNATURE if route == "subscriptions" else {})}
    with host.client(host.admin_key if key == "admin" else "default") as http:
        return http.request(method, path, content=body, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_json_is_a_400_naming_the_field(fabric_host, registered, route: str, kind: str) -> None:
    body, field, words = HOSTILE[kind]
    response = send(fabric_host, route, body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["field"] == field and words in problem["detail"], problem


def rows(host: FabricHost, table: str) -> list[dict]:
    client = TableClient.from_connection_string(host.storage, f"{host.table_prefix}{table}")
    try:
        return list(client.list_entities())
    except ResourceNotFoundError:
        return []


def test_hostile_requests_are_refused_at_post_and_never_enqueued(fabric_host, registered) -> None:
    for body, _, _ in HOSTILE.values():
        assert send(fabric_host, "requests", body).status_code == 400
    assert rows(fabric_host, "requests") == []  # nothing was accepted, so nothing can expire or fail later


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (VmRSS of /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50_mib_body_is_refused_while_it_is_read(fabric_host, registered, chunked: bool) -> None:
    with fabric_host.client() as http:
        valid = {"method": "validate", "args": {}}
        http.post("/api/cryptlets/customer_validator/invoke", json=valid)  # warm: regions and caches
        before = rss(fabric_host.process.pid)
        chunk = b"a" * (1024 * 1024)
        body = (chunk for _ in range(50)) if chunked else chunk * 50
        started = time.monotonic()
        response = http.post("/api/cryptlets/customer_validator/invoke", content=body)
        grown = rss(fabric_host.process.pid) - before
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == "$" and "1048576 bytes" in response.json()["detail"]
        assert grown < 16 * 1024 * 1024, f"the host grew by {grown / 2**20:.1f} MiB"
        assert time.monotonic() - started < 30
        assert http.post("/api/cryptlets/customer_validator/invoke", json=valid).status_code != 413  # still serving


def test_json_past_the_body_limit_on_the_upload_route_is_a_413_from_the_app(fabric_host, registered) -> None:
    """POST /api/cryptlets declares the package limit (5 MiB) to the host; its JSON form keeps 1 MiB."""
    body = b'{"package":"customer_validator","pad":"' + b"a" * (2 * 1024 * 1024) + b'"}'
    with fabric_host.client() as http:
        response = http.post("/api/cryptlets", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "too_large" and response.json()["field"] == "$"


@pytest.mark.parametrize(
    "policy,field",
    [
        ({"timeout_s": 0.0004}, "$.timeout_s"),
        ({"timeout_s": 301}, "$.timeout_s"),
        ({"max_instances": 65}, "$.max_instances"),
        ({"egress": ["api.example.com:70000"]}, "$.egress[0]"),
        ({"egress": ["x" * 63 + "." + "y" * 63 + "." + "z" * 63 + "." + "w" * 63 + ".com"]}, "$.egress[0]"),
    ],
)
def test_policies_outside_their_bounds_are_a_400(fabric_host, registered, policy: dict, field: str) -> None:
    with fabric_host.client(fabric_host.admin_key) as http:
        response = http.put("/api/cryptlets/customer_validator/policy", json=policy)
        assert response.status_code == 400, response.text
        assert response.json()["field"] == field
        assert http.get("/api/cryptlets/customer_validator/policy").json()["policy"] == {}  # nothing was set


def test_a_function_key_in_the_url_never_reaches_the_log(fabric_host, registered) -> None:
    """A 502 makes handle_errors log the request line; the key given as ?code= is redacted in it."""
    with fabric_host.client(key=None) as http:
        response = http.post(
            "/api/cryptlets/hostile_garbage/invoke",
            params={"code": fabric_host.key, "note": "kept"},
            json={"method": "run", "args": {}},
        )
    assert response.status_code == 502, response.text
    log = wait_for(lambda: "hostile_garbage/invoke?code=REDACTED" in fabric_host.log() and fabric_host.log())
    assert "code=REDACTED&note=kept failed" in log
    assert fabric_host.key not in log and fabric_host.admin_key not in log
