"""Unit tests of the dev host's pure parts: routes, settings, host.json, schedules, keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from devhost.auth import Keys
from devhost.catalog import Binding, FunctionInfo
from devhost.errors import DevHostError
from devhost.hostconfig import HostConfig
from devhost.routing import RouteTable
from devhost.settings import load_local_settings, parse_timespan, resolve
from devhost.storage import MessageCodec, resolve_connection
from devhost.timers import CronSchedule, IntervalSchedule, parse_schedule
from devhost.web import DEFAULT_MAX_BODY_BYTES, BodyTooLarge, _body, endpoint, host_body_limit


@pytest.fixture
def table() -> RouteTable[str]:
    t: RouteTable[str] = RouteTable("api")
    t.add("items/{id:int}", ["GET"], "by-id")
    t.add("items/{name:alpha}", ["GET"], "by-name")
    t.add("items/new", ["GET"], "new")
    t.add("items", ["POST"], "create")
    t.add("echo/{x?}", None, "echo")
    t.add("files/{*rest}", None, "files")
    t.add("f/{name}.{ext}", None, "file")
    t.add("r/{v:regex(^a\\d{{2}}$)}", None, "regex")
    t.add("n/{v:range(1,5)}/{w=7}", None, "range")
    t.add("s/{v:minlength(2):maxlength(3)}", None, "length")
    t.add("g/{v:guid}", ["GET"], "guid")
    return t


@pytest.mark.parametrize(
    "method,path,target,params",
    [
        ("GET", "/api/items/42", "by-id", {"id": "42"}),
        ("GET", "/api/items/-7", "by-id", {"id": "-7"}),
        ("GET", "/api/items/abc", "by-name", {"name": "abc"}),
        ("GET", "/api/ITEMS/new", "new", {}),
        ("POST", "/api/items/", "create", {}),
        ("DELETE", "/api/echo", "echo", {}),
        ("GET", "/api/echo/5", "echo", {"x": "5"}),
        ("GET", "/api/files", "files", {}),
        ("GET", "/api/files/a/b/c", "files", {"rest": "a/b/c"}),
        ("GET", "/api/f/x.tar.gz", "file", {"name": "x", "ext": "tar.gz"}),
        ("GET", "/api/r/A12", "regex", {"v": "A12"}),
        ("GET", "/api/n/3", "range", {"v": "3", "w": "7"}),
        ("GET", "/api/n/3/x", "range", {"v": "3", "w": "x"}),
        ("GET", "/api/s/abc", "length", {"v": "abc"}),
        ("GET", "/api/g/6f9619ff-8b86-d011-b42d-00cf4fc964ff", "guid", {"v": "6f9619ff-8b86-d011-b42d-00cf4fc964ff"}),
    ],
)
def test_route_matches(table: RouteTable[str], method: str, path: str, target: str, params: dict) -> None:
    match = table.match(method, path)
    assert (match.target, match.params) == (target, params)


@pytest.mark.parametrize(
    "path",
    [
        "/api/items/4x2",
        "/api/items/99999999999",
        "/api/r/a123",
        "/api/n/9",
        "/api/s/a",
        "/api/s/abcd",
        "/api/g/not-a-guid",
        "/items/42",
        "/api/nothing",
        "/",
    ],
)
def test_route_not_found(table: RouteTable[str], path: str) -> None:
    match = table.match("GET", path)
    assert match.target is None and not match.allowed


def test_route_method_not_allowed(table: RouteTable[str]) -> None:
    assert table.match("GET", "/api/items").allowed == {"POST"}
    # A literal route loses to a parameter route that allows the method (ASP.NET endpoint selection).
    assert table.match("DELETE", "/api/items/new").allowed == {"GET"}


def test_route_prefix_empty_and_errors() -> None:
    t: RouteTable[str] = RouteTable("")
    t.add("hello", None, "hello")
    assert t.match("GET", "/hello").target == "hello"
    with pytest.raises(DevHostError, match="declared twice"):
        t.add("HELLO", ["GET"], "again")
    for bad in ("x/{id:nosuch}", "x/{a}{b}", "x/{a", "x/{*rest}/y", "x/{a}/{A}"):
        with pytest.raises(DevHostError):
            t.add(bad, None, "bad")


def test_timespan() -> None:
    assert parse_timespan("00:00:00") == 0
    assert parse_timespan("00:01:30") == 90
    assert parse_timespan("1.02:00:00") == 93600
    assert parse_timespan("00:00:00.5") == 0.5
    assert parse_timespan(2000, default_unit=0.001) == 2.0
    with pytest.raises(DevHostError):
        parse_timespan("5 minutes")


def test_host_config() -> None:
    default = HostConfig.from_dict({})
    assert default.route_prefix == "api"
    assert (default.queues.batch_size, default.queues.max_dequeue_count) == (16, 5)
    assert (default.queues.visibility_timeout, default.queues.max_polling_interval) == (0.0, 60.0)
    assert default.queues.message_encoding == "base64"
    config = HostConfig.from_dict(
        {
            "extensions": {
                "http": {"routeprefix": ""},
                "queues": {
                    "batchsize": 4,
                    "maxdequeuecount": 2,
                    "visibilitytimeout": "00:00:10",
                    "maxpollinginterval": "00:00:02",
                    "messageencoding": "None",
                },
            }
        }
    )
    assert config.route_prefix == ""
    assert config.queues == type(config.queues)(4, 2, 10.0, 2.0, "none")
    with pytest.raises(DevHostError, match="batchSize"):
        HostConfig.from_dict({"extensions": {"queues": {"batchsize": 64}}})


def test_local_settings_do_not_override_environment(tmp_path) -> None:
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"IsEncrypted": False, "Values": {"A": "from-file", "B": "from-file", "FLAG": True, "N": 3}})
    )
    environ = {"A": "from-env"}
    applied = load_local_settings(tmp_path, environ)
    assert environ == {"A": "from-env", "B": "from-file", "FLAG": "true", "N": "3"}
    assert set(applied) == {"B", "FLAG", "N"}
    assert load_local_settings(tmp_path / "missing", {}) == {}


def test_binding_expressions() -> None:
    assert resolve("%Q%-x", {"Q": "jobs"}) == "jobs-x"
    assert resolve("plain", {}) == "plain"
    with pytest.raises(DevHostError, match="MISSING"):
        resolve("%MISSING%", {})


def test_schedules() -> None:
    start = datetime(2025, 1, 1, 0, 0, 5, 500000, tzinfo=UTC)
    every5 = parse_schedule("*/5 * * * * *")
    assert isinstance(every5, CronSchedule)
    assert every5.next_after(start) == datetime(2025, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert parse_schedule("0 30 9 * * *").next_after(start) == datetime(2025, 1, 1, 9, 30, tzinfo=UTC)
    interval = parse_schedule("00:00:30")
    assert isinstance(interval, IntervalSchedule)
    assert (interval.next_after(start) - start).total_seconds() == 30
    with pytest.raises(DevHostError, match="six fields"):
        parse_schedule("*/5 * * * *")
    with pytest.raises(DevHostError):
        parse_schedule("0 0 * * * *", "Not/AZone")


def test_message_codec_and_connections() -> None:
    codec = MessageCodec("base64")
    assert codec.encode(b"hi") == "aGk="
    assert codec.decode("aGk=") == b"hi"
    with pytest.raises(ValueError):
        codec.decode("not*base64!")
    assert MessageCodec("none").decode("hi") == b"hi"
    assert "127.0.0.1:10001" in resolve_connection(None, {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert resolve_connection("Other", {"AzureWebJobsOther": "conn"}) == "conn"
    with pytest.raises(DevHostError, match="AzureWebJobsStorage"):
        resolve_connection("", {})


def test_keys() -> None:
    keys = Keys(function_key="f", master_key="m")
    assert keys.allows("anonymous", None)
    assert keys.allows("function", "f") and keys.allows("function", "m")
    assert not keys.allows("function", "x") and not keys.allows("function", None)
    assert keys.allows("admin", "m") and not keys.allows("admin", "f")
    with pytest.raises(DevHostError, match="DEVHOST_FUNCTION_KEY"):
        Keys().require("function", "fn")
    with pytest.raises(DevHostError, match="DEVHOST_MASTER_KEY"):
        Keys(function_key="f").require("admin", "fn")
    Keys(master_key="m").require("function", "fn")


def _http_function(**props: object) -> FunctionInfo:
    trigger = Binding("req", "httpTrigger", "in", {"route": "items", "methods": ["POST"], **props})
    return FunctionInfo("items", lambda req: None, False, trigger, None, {}, (), False)


def test_a_route_declares_its_largest_body() -> None:
    assert endpoint(_http_function(maxBodyBytes=256)).max_body == 256
    assert endpoint(_http_function()).max_body is None
    for bad in (-1, "lots"):
        with pytest.raises(DevHostError, match="maxBodyBytes"):
            endpoint(_http_function(maxBodyBytes=bad))


def test_the_host_wide_body_limit_is_the_functions_hosts_setting() -> None:
    assert host_body_limit({}) == DEFAULT_MAX_BODY_BYTES == 100 * 1024 * 1024
    assert host_body_limit({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "4096"}) == 4096
    assert host_body_limit({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "big"}) == DEFAULT_MAX_BODY_BYTES


def _receiver(chunks: list[bytes]) -> tuple[Callable[[], Awaitable[dict]], list[int]]:
    """An ASGI ``receive`` handing out ``chunks``, and the count of the calls it answered."""
    calls = [0]

    async def receive() -> dict:
        calls[0] += 1
        body = chunks[calls[0] - 1]
        return {"type": "http.request", "body": body, "more_body": calls[0] < len(chunks)}

    return receive, calls


def test_a_body_is_read_only_up_to_its_limit() -> None:
    receive, calls = _receiver([b"a" * 100] * 10)
    assert asyncio.run(_body(receive, 1000)) == b"a" * 1000
    receive, calls = _receiver([b"a" * 100] * 10)
    with pytest.raises(BodyTooLarge):
        asyncio.run(_body(receive, 250))
    assert calls[0] == 3  # stopped at the chunk that passed the limit: the rest was never asked for
    receive, calls = _receiver([b"a" * 100])
    with pytest.raises(BodyTooLarge):
        asyncio.run(_body(receive, 250, content_length="52428800"))
    assert calls[0] == 0  # Content-Length alone settles it
