"""Call-outs: code inside a region asking its host for something (the paper's ``CALL_OUT_HANDLER``).

A region has no other way out: in the ``process`` provider it has no network (own network
namespace when the host runs as root), no host environment and no host files; what it may ask
for is what the host's call-out handler answers. Messages ride the container protocol
(:mod:`shared.isolation.protocol`), interleaved with call-in replies.

Host side: a :data:`CallOutHandler` is ``handler(op, params) -> result`` and is given to
``IsolationProvider.create_region``; :class:`HostCallOuts` is the default (``log``, ``time``,
``fetch``, an HTTP request through the cryptlet's egress allow-list: :mod:`shared.isolation.egress`, and
``progress``, how far a long call has come, handed to a progress sink: :mod:`shared.host.progress`).
Raising a :class:`~shared.errors.FabricError` refuses the call-out with its ``code``; any other
exception is logged on the host and reported to the region as ``host_error``.

Region side: the container installs a module named ``fabric_host`` for cryptlet code::

    import fabric_host
    fabric_host.log("fetched 3 quotes")            # host log, tagged with the cryptlet name
    fabric_host.now_ms()                           # the host's clock (unix ms)
    fabric_host.call("time")                       # any call-out by name -> result dict
    fabric_host.fetch("https://api.example.com/q")  # HTTP through the host -> status, url, headers, body
    fabric_host.progress(request_id, 0.5, "half")  # how far the call has come (the SDK's context.progress)
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from shared import clock
from shared.errors import FabricError, InvalidInput, StorageError
from shared.isolation import protocol
from shared.isolation.region_output import escape

if TYPE_CHECKING:  # the region imports this module too: httpx stays on the host
    from shared.isolation.egress import EgressPolicy

CallOutHandler = Callable[[str, dict[str, Any]], dict[str, Any]]
#: ``sink(cryptlet name, request_id, fraction, message)``: where ``progress`` call-outs go.
ProgressSink = Callable[[str, str, float, str], None]

MAX_LOG_CHARS = 4000
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FETCH_PARAMS = frozenset({"url", "method", "headers", "body_b64", "timeout_s"})
_LOGGABLE = re.compile(r"^[A-Za-z0-9._:%-]{1,255}\Z")
PROGRESS_PARAMS = frozenset({"request_id", "fraction", "message"})
MAX_PROGRESS_MESSAGE = 500
_REQUEST_ID = re.compile(r"^0x[0-9a-fA-F]{64}\Z")


class HostCallOuts:
    """The default call-out handler: ``log`` (to the host log), ``time`` (the host clock),
    ``fetch`` (HTTP through ``egress``, the cryptlet's allow-list of host patterns; empty: none) and
    ``progress`` (handed to the ``progress`` sink as ``sink(name, request_id, fraction, message)``;
    without a sink it is only logged at debug level)."""

    def __init__(
        self,
        name: str,
        logger: logging.Logger | None = None,
        *,
        egress: Sequence[str] = (),
        progress: ProgressSink | None = None,
    ) -> None:
        self.name = name
        self.logger = logger or logging.getLogger("fabric.region")
        self._egress = tuple(egress)
        self._policy: EgressPolicy | None = None
        self.progress = progress

    def __call__(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        if op == "log":
            level = LOG_LEVELS.get(str(params.get("level", "info")))
            message = params.get("message")
            if level is None or not isinstance(message, str):
                raise InvalidInput(
                    "log takes a message string and a level of debug/info/warning/error", field="message"
                )
            if len(message) > MAX_LOG_CHARS:
                message = message[:MAX_LOG_CHARS] + f"... ({len(message) - MAX_LOG_CHARS} more characters)"
            self.logger.log(level, "cryptlet %s: %s", self.name, escape(message))  # one line, no escapes
            return {}
        if op == "time":
            return {"unix_ms": clock.now_ms()}
        if op == "fetch":
            return self.fetch(params)
        if op == "progress":
            return self.report_progress(params)
        raise InvalidInput(f"unknown call-out {op!r}", field="op")

    def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{url, method?, headers?, body_b64?, timeout_s?}`` -> ``{status, url, headers, body_b64}``.

        Logs each fetch (info) and each refusal (warning) with the method and host only: never
        bodies, header values or the URL's path and query.
        """
        from shared.isolation import egress

        method = _loggable(params.get("method", "GET"))
        host = _host_of(params.get("url"))
        try:
            request = _fetch_request(params)
            if self._policy is None:
                self._policy = egress.EgressPolicy(self._egress)
            result = egress.fetch(self._policy, timeout_s=request.pop("timeout_s", egress.MAX_TIMEOUT_S), **request)
        except FabricError as exc:
            self.logger.warning(
                "cryptlet %s: fetch %s %s refused (%s): %s", self.name, method.upper(), host, exc.code, exc.detail
            )
            raise
        self.logger.info(
            "cryptlet %s: fetch %s %s -> %d (%d bytes)",
            self.name,
            request["method"],
            host,
            result.status,
            len(result.body),
        )
        return {
            "status": result.status,
            "url": result.url,
            "headers": result.headers,
            "body_b64": base64.b64encode(result.body).decode("ascii"),
        }

    def report_progress(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{request_id, fraction, message?}`` -> ``{"recorded"}``: how far the call ``request_id`` has come.

        ``recorded`` is false without a sink (only logged) or when the sink's storage failed (logged
        as a warning: progress is best effort); a sink's other refusals (e.g. ``conflict``) are raised.
        """
        unknown = sorted(set(params) - PROGRESS_PARAMS)
        if unknown:
            raise InvalidInput(f"progress takes request_id, fraction and message, not {unknown[0]!r}", field=unknown[0])
        request_id = params.get("request_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            raise InvalidInput("request_id must be the call's 0x-prefixed 32-byte request id", field="request_id")
        fraction = params.get("fraction")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise InvalidInput("fraction must be a number from 0 to 1", field="fraction")
        message = params.get("message", "")
        if not isinstance(message, str) or len(message) > MAX_PROGRESS_MESSAGE:
            raise InvalidInput(
                f"message must be a string of at most {MAX_PROGRESS_MESSAGE} characters", field="message"
            )
        if self.progress is None:
            self.logger.debug("cryptlet %s: progress %s %.4f", self.name, request_id[:18], fraction)
            return {"recorded": False}
        try:
            self.progress(self.name, request_id.lower(), float(fraction), message)
        except StorageError as exc:  # progress is best effort: a storage hiccup must not fail a long job
            self.logger.warning("cryptlet %s: progress not recorded: %s", self.name, exc.detail)
            return {"recorded": False}
        return {"recorded": True}


def _loggable(value: Any) -> str:
    """``value`` if it is a short plain token (nothing a region could forge log lines with), else ``?``."""
    return value if isinstance(value, str) and _LOGGABLE.match(value) else "?"


def _host_of(url: Any) -> str:
    """The host of ``url`` for the log (never its path, query or user information)."""
    try:
        return _loggable(urlsplit(url).hostname) if isinstance(url, str) else "?"
    except ValueError:
        return "?"


def _fetch_request(params: dict[str, Any]) -> dict[str, Any]:
    """The ``fetch`` call-out's parameters, type-checked (:class:`InvalidInput` names the field)."""
    unknown = sorted(set(params) - FETCH_PARAMS)
    if unknown:
        raise InvalidInput(
            f"fetch takes url, method, headers, body_b64 and timeout_s, not {unknown[0]!r}", field=unknown[0]
        )
    url = params.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidInput("fetch needs a url string", field="url")
    method = params.get("method", "GET")
    if not isinstance(method, str):
        raise InvalidInput("method must be a string", field="method")
    headers = params.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise InvalidInput("headers must be an object of strings", field="headers")
    body_b64 = params.get("body_b64") or ""
    if not isinstance(body_b64, str):
        raise InvalidInput("body_b64 must be a base64 string", field="body_b64")
    try:
        body = base64.b64decode(body_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("body_b64 is not valid base64", field="body_b64") from None
    request: dict[str, Any] = {"url": url, "method": method.upper(), "headers": headers, "body": body}
    timeout_s = params.get("timeout_s")
    if timeout_s is not None:
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise InvalidInput("timeout_s must be a positive number of seconds", field="timeout_s")
        request["timeout_s"] = timeout_s
    return request


# -- region side -------------------------------------------------------------------------------
class CallOutError(Exception):
    """The host refused or failed a call-out (raised inside the region)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class HostChannel:
    """The region's end of the call-out channel: writes a request, reads the host's answer."""

    def __init__(self, reader: BinaryIO, writer: Callable[[bytes], None]) -> None:
        self._reader = reader
        self._write = writer
        self._ids = 0
        self._lock = threading.Lock()

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        with self._lock:
            self._ids += 1
            self._write(protocol.encode({"callout": self._ids, "op": op, **params}))
            line = self._reader.readline(protocol.MAX_LINE + 1)
            if not line:
                raise CallOutError("closed", "the host closed the channel")
            reply = protocol.decode(line)
            if reply.get("callout") != self._ids:
                raise CallOutError("protocol", "the host answered another call-out")
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise CallOutError(str(error.get("code", "refused")), str(error.get("message", "call-out refused")))
        return reply.get("result") or {}


def host_module(channel: HostChannel) -> types.ModuleType:
    """The ``fabric_host`` module cryptlet code imports inside a region."""
    module = types.ModuleType("fabric_host", "Call-outs from a cryptlet to its host (log, time, fetch, progress, ...).")

    def log(message: str, level: str = "info") -> None:
        """Write ``message`` to the host log (levels: debug, info, warning, error)."""
        channel.call("log", message=str(message), level=level)

    def now_ms() -> int:
        """The host's clock, in unix milliseconds."""
        return int(channel.call("time")["unix_ms"])

    def fetch(
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """HTTP through the host, only to hosts in the cryptlet's egress allow-list (docs/egress.md).

        Returns ``{"status", "url" (after redirects), "headers" (lower-case names), "body" (bytes)}``;
        refusals raise :class:`CallOutError` (``egress_denied``, ``egress_too_large``, ``fetch_failed``,
        ``invalid_input``).
        """
        params: dict[str, Any] = {"url": url, "method": method}
        if headers:
            params["headers"] = dict(headers)
        if body:
            raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
            params["body_b64"] = base64.b64encode(raw).decode("ascii")
        if timeout_s is not None:
            params["timeout_s"] = timeout_s
        reply = channel.call("fetch", **params)
        return {
            "status": int(reply["status"]),
            "url": reply["url"],
            "headers": dict(reply.get("headers") or {}),
            "body": base64.b64decode(reply.get("body_b64") or ""),
        }

    def progress(request_id: str, fraction: float, message: str = "") -> None:
        """Report how far the call ``request_id`` has come (``fraction`` 0..1) to the host."""
        channel.call("progress", request_id=request_id, fraction=fraction, message=str(message))

    module.__dict__.update(
        call=channel.call, progress=progress, log=log, now_ms=now_ms, fetch=fetch, CallOutError=CallOutError
    )
    return module
