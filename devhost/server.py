"""The dev host: load a function app and serve its HTTP, timer and queue triggers.

In-process use (tests, demos)::

    host = build("path/to/app", port=0).start()
    ...  # host.url is e.g. http://127.0.0.1:40123
    host.stop()

``build`` applies ``local.settings.json``, reads ``host.json``, imports the app and
indexes its functions; ``start`` serves HTTP (uvicorn + httptools on a background event
loop) and starts one thread per timer and per queue trigger; ``stop`` shuts everything
down, letting invocations in progress finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
import uvloop

from devhost.auth import Keys
from devhost.catalog import HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER, FunctionInfo, index
from devhost.errors import DevHostError
from devhost.hostconfig import HostConfig
from devhost.invocation import Invoker
from devhost.loader import find_app, import_script
from devhost.queues import QueueOutput, QueuePoller, WakeRegistry
from devhost.settings import load_local_settings
from devhost.storage import QueueClients, resolve_connection
from devhost.timers import TimerRunner
from devhost.web import WebApp, endpoint
from shared.redact import RedactingFilter

log = logging.getLogger("devhost")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7071


@dataclass
class DevHost:
    """A loaded function app, ready to :meth:`start`. Create it with :func:`build`."""

    app_dir: Path
    config: HostConfig
    functions: list[FunctionInfo]
    errors: dict[str, str]  # function name -> why it is in error (not served)
    web: WebApp
    invoker: Invoker
    timers: list[TimerRunner]
    pollers: list[QueuePoller]
    clients: QueueClients
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    access_log: bool = False
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _failure: BaseException | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> DevHost:
        """Listen on ``host:port`` (port 0 picks a free one), then start timers and pollers."""
        if self._thread is not None:
            raise RuntimeError("the dev host is already started")
        sock = _listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.web,
            host=self.host,
            port=self.port,
            http="httptools",
            ws="none",
            loop="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=self.access_log,
            timeout_graceful_shutdown=5,
        )
        if self.access_log:
            access = logging.getLogger("uvicorn.access")
            access.setLevel(logging.INFO)
            if not any(isinstance(f, RedactingFilter) for f in access.filters):
                access.addFilter(RedactingFilter())  # request lines carry ?code= keys
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="devhost-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                self._thread.join(5)
                raise DevHostError(f"the HTTP server did not start: {self._failure or 'timeout'}")
            time.sleep(0.005)
        runners: list[QueuePoller | TimerRunner] = [*self.pollers, *self.timers]
        for runner in runners:
            runner.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop timers and pollers, then the HTTP server, then the worker threads."""
        runners: list[TimerRunner | QueuePoller] = [*self.timers, *self.pollers]
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join(timeout)
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        self._thread = None
        self.invoker.shutdown()
        self.clients.close()

    def summary(self) -> list[str]:
        """One line per function: its name and trigger (or why it is in error)."""
        lines = []
        for function in self.functions:
            trigger = function.trigger
            if function.kind == HTTP_TRIGGER:
                ep = next(e for e in self.web.endpoints if e.function is function)
                methods = ",".join(sorted(ep.methods)) or "*"
                path = self.web.routes.full_template(ep.route)
                what = f"http {methods} {self.url}{path} (auth: {ep.auth_level})"
            elif function.kind == TIMER_TRIGGER:
                startup = ", run on startup" if trigger.get("runOnStartup") else ""
                what = f"timer '{trigger.get('schedule')}'{startup}"
            else:
                what = (
                    f"queue {str(trigger.get('queueName')).lower()} (connection: "
                    f"{trigger.get('connection') or 'AzureWebJobsStorage'})"
                )
            lines.append(f"  {function.name}: {what}")
        lines.extend(f"  {name}: IN ERROR, not running: {reason}" for name, reason in self.errors.items())
        return lines

    def __enter__(self) -> DevHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, sock: socket.socket) -> None:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.invoker.loop = loop
        assert self._server is not None
        try:
            loop.run_until_complete(self._server.serve(sockets=[sock]))
        except BaseException as exc:  # SystemExit from uvicorn startup failures included
            self._failure = exc
            log.exception("HTTP server failed")
        finally:
            sock.close()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def build(
    app_dir: str | os.PathLike[str] = ".",
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    access_log: bool = False,
) -> DevHost:
    """Load the function app in ``app_dir`` and prepare a :class:`DevHost` (not started).

    Raises :class:`DevHostError` when the app cannot be served at all (no app, bad
    host.json, an auth level whose key setting is unset, ...). A single function that
    cannot be set up (unresolved ``%SETTING%``, bad schedule or route, ...) is "in
    error" instead, as in the Functions host: logged, listed in ``DevHost.errors`` and
    not served.
    """
    directory = Path(app_dir).resolve()
    if not directory.is_dir():
        raise DevHostError(f"app folder {directory} does not exist")
    load_local_settings(directory)
    config = HostConfig.load(directory)
    app = find_app(import_script(directory))
    indexed, errors = index(app, only=config.functions)

    keys = Keys.from_settings()
    for function in indexed:
        if function.kind == HTTP_TRIGGER:
            keys.require(endpoint(function).auth_level, function.name)

    invoker = Invoker(str(directory))
    clients = QueueClients()
    wake = WakeRegistry()
    invoker.add_sink("queue", QueueOutput(clients, config.queues, wake))
    web = WebApp(invoker, keys, config.route_prefix)
    functions: list[FunctionInfo] = []
    timers: list[TimerRunner] = []
    pollers: list[QueuePoller] = []
    for function in indexed:
        try:
            for binding in function.outputs.values():
                if binding.type == "queue":  # fail now rather than at the first invocation
                    resolve_connection(binding.get("connection"))
            if function.kind == HTTP_TRIGGER:
                web.add(function)
            elif function.kind == TIMER_TRIGGER:
                timers.append(TimerRunner(function, invoker))
            elif function.kind == QUEUE_TRIGGER:
                pollers.append(QueuePoller(function, invoker, clients, config.queues))
        except DevHostError as exc:
            errors[function.name] = str(exc)
            continue
        functions.append(function)
    for name, reason in errors.items():
        log.error("function %s is in error and will not run: %s", name, reason)
    for poller in pollers:
        wake.register(poller)
    return DevHost(
        app_dir=directory,
        config=config,
        functions=functions,
        errors=errors,
        web=web,
        invoker=invoker,
        timers=timers,
        pollers=pollers,
        clients=clients,
        host=host,
        port=port,
        access_log=access_log,
    )


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto is TCP; with proto 0, Nagle + delayed ACKs cost ~40 ms per response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DevHostError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    return sock
