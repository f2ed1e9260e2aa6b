"""The dev host reads a request body only up to its limit (a route's ``maxBodyBytes``, else
``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``) and answers 413, and its log (access log included) never shows
a key given as ``?code=``."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devhost.ports import free_port, wait_for_port
from tests.e2e.devhost.test_devhost import FUNCTION_KEY, MASTER_KEY, PROJECT_ROOT, _env, _serve
from tests.helpers import wait_for

HOST_LIMIT = 4096


@pytest.fixture(scope="module")
def served(storage: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    """The sample app with a 4 KiB host-wide body limit and the access log on: (client, log file)."""
    work_dir = tmp_path_factory.mktemp("devhost-limits")
    env = _env(
        storage,
        work_dir,
        DEVHOST_FUNCTION_KEY=FUNCTION_KEY,
        DEVHOST_MASTER_KEY=MASTER_KEY,
        FUNCTIONS_REQUEST_BODY_SIZE_LIMIT=str(HOST_LIMIT),
    )
    port = free_port()
    log = work_dir / "host.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*_serve(port), "--access-log"], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait_for_port(port, 30, process)
        yield client, log
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 413 and problem["field"] == "$" and f"larger than {limit} bytes" in problem["detail"]


def test_the_host_wide_limit_applies_to_routes_that_declare_none(served) -> None:
    client, _ = served
    assert client.put("/api/echo/x", content=b"a" * HOST_LIMIT).json()["body"] == "a" * HOST_LIMIT
    assert_too_large(client.put("/api/echo/x", content=b"a" * (HOST_LIMIT + 1)), HOST_LIMIT)
    chunks = (b"a" * 1000 for _ in range(50))  # no Content-Length: counted while read
    assert_too_large(client.put("/api/echo/x", content=chunks), HOST_LIMIT)
    assert client.get("/api/ping").text == "pong"  # the connection and the host carry on


def test_a_route_declares_a_smaller_limit(served) -> None:
    client, _ = served
    assert client.post("/api/items", json={"id": 7, "name": "seven"}).status_code == 201
    assert_too_large(client.post("/api/items", json={"id": 8, "name": "x" * 300}), 256)


def test_a_key_in_the_url_is_redacted_in_the_access_log_and_error_lines(served) -> None:
    client, log = served
    assert client.get("/api/secret", params={"code": FUNCTION_KEY}).text == "function ok"
    assert client.get("/api/boom", params={"code": MASTER_KEY}).status_code == 500
    text = wait_for(lambda: "/api/boom?code=REDACTED" in log.read_text() and log.read_text())
    assert "/api/secret?code=REDACTED" in text and "kaboom-internal-detail" in text
    assert FUNCTION_KEY not in text and MASTER_KEY not in text
