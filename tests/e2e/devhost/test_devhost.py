"""End-to-end tests: ``python -m devhost serve`` on the sample app, against a real Azurite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devhost.ports import free_port, wait_for_port
from tests.helpers import wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
FUNCTION_KEY = "test-function-key"
MASTER_KEY = "test-master-key"


@dataclass
class Host:
    process: subprocess.Popen
    client: httpx.Client
    storage: str
    work_dir: Path
    work_queue: str
    out_queue: str
    ready_at: float

    @property
    def stdout(self) -> str:
        return (self.work_dir / "stdout.log").read_text()

    @property
    def stderr(self) -> str:
        return (self.work_dir / "stderr.log").read_text()

    def queue(self, name: str, *, base64: bool = True) -> QueueClient:
        policies: dict[str, Any] = (
            {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
            if base64
            else {}
        )
        return QueueClient.from_connection_string(self.storage, name, **policies)


def peek(queue: QueueClient) -> list[Any]:
    """Visible messages of ``queue`` ([] if the queue does not exist yet)."""
    try:
        return list(queue.peek_messages(max_messages=32))
    except ResourceNotFoundError:
        return []


def _env(storage: str, work_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVHOST_")}
    env.update(
        AzureWebJobsStorage=storage,
        TICK_SCHEDULE="*/1 * * * * *",
        WORK_QUEUE="w" + uuid.uuid4().hex[:12],
        OUT_QUEUE="o" + uuid.uuid4().hex[:12],
        TIMER_LOG=str(work_dir / "timer.log"),
        MARKER_DIR=str(work_dir),
        ATEXIT_MARKER=str(work_dir / "atexit.txt"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _serve(port: int) -> list[str]:
    return [sys.executable, "-m", "devhost", "serve", "--app-dir", str(SAMPLE_APP), "--port", str(port)]


@pytest.fixture(scope="module")
def host(storage: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    work_dir = tmp_path_factory.mktemp("devhost")
    env = _env(storage, work_dir, DEVHOST_FUNCTION_KEY=FUNCTION_KEY, DEVHOST_MASTER_KEY=MASTER_KEY)
    port = free_port()
    with open(work_dir / "stdout.log", "wb") as out, open(work_dir / "stderr.log", "wb") as err:
        process = subprocess.Popen(_serve(port), cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        wait_for_port(port, 30, process)
        yield Host(process, client, storage, work_dir, env["WORK_QUEUE"], env["OUT_QUEUE"], time.time())
    finally:
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0, (work_dir / "stderr.log").read_text()
    assert "devhost: shutting down" in (work_dir / "stdout.log").read_text()
    assert (work_dir / "atexit.txt").read_text() == "atexit ran"


def test_banner_lists_functions(host: Host) -> None:
    lines = wait_for(lambda: host.stdout.splitlines())
    port = host.client.base_url.port
    assert lines[0] == f"devhost: serving 16 functions on http://127.0.0.1:{port}"
    text = "\n".join(lines)
    assert f"item_by_id: http GET http://127.0.0.1:{port}/api/items/{{id:int}}" in text
    assert "tick: timer '*/1 * * * * *'" in text
    assert f"work: queue {host.work_queue}" in text
    assert f"ping: http GET http://127.0.0.1:{port}/api/ping" in text
    assert "misconfigured: IN ERROR, not running: binding expression '%SAMPLE_UNSET_SCHEDULE%'" in text


def test_http_routes_and_params(host: Host) -> None:
    c = host.client
    assert c.get("/api/ping").text == "pong"  # no route: the function name
    assert c.get("/api/hello/Ada").text == "Hello, Ada!"
    assert c.get("/api/hello", params={"name": "Bob"}).text == "Hello, Bob!"
    response = c.get("/api/items/42")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"by": "id", "id": 42}
    assert c.get("/api/items/abc").json() == {"by": "name", "name": "abc"}
    assert c.get("/api/items/4x2").status_code == 404  # neither int nor alpha
    text = c.get("/api/text")
    assert (text.status_code, text.text, text.headers["content-type"]) == (
        200,
        "plain string result",
        "text/plain; charset=utf-8",
    )


def test_http_post_put_headers_and_body(host: Host) -> None:
    created = host.client.post("/api/items", json={"id": 7, "name": "seven"})
    assert created.status_code == 201
    assert created.headers["location"] == "/api/items/7"
    assert created.json() == {"created": {"id": 7, "name": "seven"}}
    echoed = host.client.put("/api/echo/a/b?x=1&x=2&y=", content=b"payload", headers={"X-Custom": "yes"}).json()
    assert echoed["method"] == "PUT"
    assert echoed["params"] == {"x": "1,2", "y": ""}
    assert echoed["route_params"] == {"rest": "a/b"}
    assert echoed["x_custom"] == "yes"
    assert echoed["body"] == "payload"
    assert echoed["url"].endswith("/api/echo/a/b?x=1&x=2&y=")


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail"} and body["status"] == status
    return body


def test_auth_levels(host: Host) -> None:
    c = host.client
    assert c.get("/api/hello").status_code == 200  # anonymous
    _assert_problem(c.get("/api/secret"), 401)
    _assert_problem(c.get("/api/secret", headers={"x-functions-key": "wrong"}), 401)
    assert c.get("/api/secret", headers={"x-functions-key": FUNCTION_KEY}).text == "function ok"
    assert c.get("/api/secret", params={"code": FUNCTION_KEY}).text == "function ok"
    assert c.get("/api/secret", params={"code": MASTER_KEY}).status_code == 200
    _assert_problem(c.get("/api/adminonly", headers={"x-functions-key": FUNCTION_KEY}), 401)
    assert c.get("/api/adminonly", headers={"x-functions-key": MASTER_KEY}).text == "admin ok"


def test_not_found_and_method_not_allowed(host: Host) -> None:
    _assert_problem(host.client.get("/api/nothing/here"), 404)
    _assert_problem(host.client.get("/ping"), 404)  # outside the route prefix
    response = host.client.delete("/api/items/5")
    _assert_problem(response, 405)
    assert response.headers["allow"] == "GET"


def test_unhandled_exception_is_a_generic_500(host: Host) -> None:
    body = _assert_problem(host.client.get("/api/boom"), 500)
    assert "kaboom" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    log = wait_for(lambda: "kaboom-internal-detail" in host.stderr and host.stderr)
    assert "Traceback" in log and "Functions.boom" in log


def test_context_parameter(host: Host) -> None:
    info = host.client.get("/api/context").json()
    assert info["function_name"] == "context_info"
    assert uuid.UUID(info["invocation_id"])


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_concurrent_requests(host: Host, kind: str) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: host.client.get(f"/api/sleep/{kind}/400").status_code, range(16)))
    assert codes == [200] * 16
    assert time.monotonic() - started < 2.0  # 16 x 0.4 s run in parallel


def test_timer_fires_every_second_on_the_second(host: Host) -> None:
    window_end = host.ready_at + 4.5
    time.sleep(max(0.0, window_end + 0.3 - time.time()))
    fires = [line.split() for line in (host.work_dir / "timer.log").read_text().splitlines()]
    in_window = [float(t) for t, _ in fires if host.ready_at <= float(t) <= window_end]
    assert 3 <= len(in_window) <= 6, in_window
    assert all(abs(t - round(t)) < 0.3 for t in in_window), in_window
    assert all(past_due == "False" for _, past_due in fires)
    seconds = [round(float(t)) for t, _ in fires]
    assert len(seconds) == len(set(seconds))  # never twice for one occurrence


def test_queue_trigger_and_output_binding(host: Host) -> None:
    work = host.queue(host.work_queue)
    names = [f"good-{i}" for i in range(3)]
    for name in names:
        work.send_message(name)
    markers = [host.work_dir / f"{name}.json" for name in names]
    wait_for(lambda: all(m.exists() for m in markers))
    first = json.loads(markers[0].read_text())
    assert first["dequeue_count"] == 1 and first["id"]
    out = host.queue(host.out_queue)
    received: set[str] = set()

    def drained() -> bool:
        for message in out.receive_messages(messages_per_page=32):
            received.add(message.content)
            out.delete_message(message)
        return received >= {f"done:{n}" for n in names}

    wait_for(drained)
    # The output binding wrote base64, as the Functions host does by default.
    raw = host.queue(host.out_queue, base64=False)
    work.send_message("good-raw")
    wait_for(lambda: (host.work_dir / "good-raw.json").exists())
    peeked = wait_for(lambda: peek(raw))
    assert "ZG9uZTpnb29kLXJhdw==" in [m.content for m in peeked]  # base64("done:good-raw")


def test_http_to_queue_output_to_queue_trigger(host: Host) -> None:
    response = host.client.post("/api/enqueue", content=b"from-http")
    assert (response.status_code, response.text) == (202, "queued")
    wait_for(lambda: (host.work_dir / "from-http.json").exists())


def test_failing_and_undecodable_messages_go_to_poison(host: Host) -> None:
    host.queue(host.work_queue).send_message("bad-1")
    host.queue(host.work_queue, base64=False).send_message("not*base64!")
    poison = host.queue(f"{host.work_queue}-poison", base64=False)
    peeked = wait_for(lambda: len(found := peek(poison)) >= 2 and found)
    assert sorted(m.content for m in peeked) == sorted(["YmFkLTE=", "not*base64!"])  # bodies unchanged
    wait_for(lambda: not peek(host.queue(host.work_queue)))
    assert host.stderr.count("cannot process bad-1") == 2  # maxDequeueCount in host.json is 2


@pytest.mark.parametrize(
    "keys,setting",
    [
        ({}, "DEVHOST_FUNCTION_KEY"),
        ({"DEVHOST_FUNCTION_KEY": FUNCTION_KEY}, "DEVHOST_MASTER_KEY"),
    ],
)
def test_refuses_to_start_without_keys(storage: str, tmp_path: Path, keys: dict[str, str], setting: str) -> None:
    result = subprocess.run(
        _serve(free_port()),
        cwd=PROJECT_ROOT,
        env=_env(storage, tmp_path, **keys),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("devhost: error:")]
    assert len(errors) == 1 and setting in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_sigint_stops_gracefully(storage: str, tmp_path: Path) -> None:
    env = _env(storage, tmp_path, DEVHOST_FUNCTION_KEY=FUNCTION_KEY, DEVHOST_MASTER_KEY=MASTER_KEY)
    port = free_port()
    process = subprocess.Popen(
        _serve(port), cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, 30, process)
        assert httpx.get(f"http://127.0.0.1:{port}/api/ping").text == "pong"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "KeyboardInterrupt" not in stderr
    assert (tmp_path / "atexit.txt").read_text() == "atexit ran"
