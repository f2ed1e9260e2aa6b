"""In-process use of the dev host: ``build(app_dir)`` -> ``DevHost.start()/stop()``."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devhost.errors import DevHostError
from devhost.server import build
from tests.helpers import wait_for

APP = """
import os
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="greet/{name}")
async def greet(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"{os.environ['EMBED_GREETING']}, {req.route_params['name']}")


@app.route(route="preset", methods=["GET"])
def preset(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ["EMBED_PRESET"], headers={"Set-Cookie": "a=1"}, mimetype="text/csv")


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    with open(os.environ["EMBED_STARTUP_FILE"], "w") as f:
        f.write(str(timer.past_due))
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "function_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}}))
    (tmp_path / "local.settings.json").write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "EMBED_GREETING": "Hi",
                    "EMBED_PRESET": "from-file",
                    "EMBED_STARTUP_FILE": str(tmp_path / "started.txt"),
                },
            }
        )
    )
    os.environ["EMBED_PRESET"] = "from-env"
    try:
        yield tmp_path
    finally:
        for name in ("EMBED_GREETING", "EMBED_PRESET", "EMBED_STARTUP_FILE"):
            os.environ.pop(name, None)


def test_build_start_stop(app_dir: Path) -> None:
    host = build(app_dir, port=0)
    assert [f.name for f in host.functions] == ["greet", "preset", "on_startup"]
    with host:
        assert host.port != 0
        with httpx.Client(base_url=host.url) as client:
            assert client.get("/greet/bob").text == "Hi, bob"  # routePrefix "" honoured
            assert client.get("/api/greet/bob").status_code == 404
            response = client.get("/preset")
            assert response.text == "from-env"  # environment beats local.settings.json
            assert response.headers["content-type"] == "text/csv; charset=utf-8"  # as the worker does
            assert response.headers["set-cookie"] == "a=1"
        started = app_dir / "started.txt"
        wait_for(started.exists, timeout=5, interval=0.05)
        assert started.read_text() == "False"  # run_on_startup
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{host.url}/greet/bob")


def test_functions_in_error_are_reported_not_served(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        textwrap.dedent("""
        import azure.functions as func
        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @app.queue_trigger(arg_name="msg", queue_name="%EMBED_NO_SUCH_QUEUE%", connection="AzureWebJobsStorage")
        def work(msg: func.QueueMessage) -> None:
            pass

        @app.route(route="x")
        def extra_param(req: func.HttpRequest, extra: str) -> func.HttpResponse:
            return func.HttpResponse("x")

        @app.schedule(arg_name="timer", schedule="*/5 * * * *")
        def five_fields(timer: func.TimerRequest) -> None:
            pass

        @app.route(route="ok")
        def ok(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("still serving")
    """)
    )
    host = build(tmp_path, port=0)
    try:
        assert [f.name for f in host.functions] == ["ok"]
        assert "EMBED_NO_SUCH_QUEUE" in host.errors["work"]
        assert "parameter 'extra' has no binding" in host.errors["extra_param"]
        assert "six fields" in host.errors["five_fields"]
        assert any(line.startswith("  work: IN ERROR") for line in host.summary())
    finally:
        host.stop()


def test_missing_key_setting_refuses_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVHOST_FUNCTION_KEY", raising=False)
    monkeypatch.delenv("DEVHOST_MASTER_KEY", raising=False)
    (tmp_path / "function_app.py").write_text(
        textwrap.dedent("""
        import azure.functions as func
        app = func.FunctionApp()   # auth level "function" by default

        @app.route(route="x")
        def x(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("x")
    """)
    )
    with pytest.raises(DevHostError, match="DEVHOST_FUNCTION_KEY"):
        build(tmp_path, port=0)
