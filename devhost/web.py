"""The HTTP front end: an ASGI app (starlette request/response types) for HTTP triggers.

Requests are routed with :class:`devhost.routing.RouteTable`, checked against the
function's auth level, turned into ``func.HttpRequest`` and the function's
``func.HttpResponse`` (or ``str``) is sent back. Errors produced by the host itself are
RFC 9457 ``application/problem+json`` documents; user exceptions become a generic 500
(the traceback goes to the log, never to the client).

A request body is read only up to its limit: the function's ``maxBodyBytes`` trigger property if it
declares one, else ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` (the Functions host's setting, default
100 MiB); past it (or when ``Content-Length`` says so) the answer is 413 and the rest is not buffered.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions import _abc as abc_types
from starlette.datastructures import URL
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from devhost.auth import ANONYMOUS, FUNCTION, Keys
from devhost.catalog import FunctionInfo
from devhost.errors import DevHostError
from devhost.invocation import Invoker
from devhost.routing import RouteTable

log = logging.getLogger("devhost")

PROBLEM_JSON = "application/problem+json"
_PROBLEM_TYPES = {
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
}
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding"})
#: The Functions host's request body limit (``ScriptConstants.DefaultMaxRequestBodySize``), which its
#: app setting ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` overrides.
DEFAULT_MAX_BODY_BYTES = 104_857_600
BODY_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"


@dataclass(frozen=True)
class Endpoint:
    """An HTTP-triggered function with its route and auth level."""

    function: FunctionInfo
    route: str  # template relative to the route prefix
    methods: frozenset[str]  # empty: every method
    auth_level: str
    max_body: int | None = None  # the trigger's maxBodyBytes: the largest body it takes


def endpoint(function: FunctionInfo) -> Endpoint:
    """The :class:`Endpoint` of an ``httpTrigger`` function (route defaults to its name)."""
    trigger = function.trigger
    methods = trigger.get("methods") or ()
    route = trigger.get("route")
    max_body = trigger.get("maxBodyBytes")
    if max_body is not None:
        try:
            max_body = int(max_body)
        except (TypeError, ValueError):
            max_body = -1
        if max_body < 0:
            raise DevHostError(f"maxBodyBytes must be a non-negative integer, not {trigger.get('maxBodyBytes')!r}")
    return Endpoint(
        function=function,
        route=(function.name if route is None else str(route)).strip("/"),
        methods=frozenset(str(m).upper() for m in methods),
        auth_level=str(trigger.get("authLevel", FUNCTION)).lower(),
        max_body=max_body,
    )


def host_body_limit(environ: Mapping[str, str] | None = None) -> int:
    """``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` as the Functions host reads it (a number of bytes; unset or
    not a number: its default, 100 MiB)."""
    raw = (os.environ if environ is None else environ).get(BODY_LIMIT_SETTING, "")
    try:
        value = int(raw.strip())
    except ValueError:
        return DEFAULT_MAX_BODY_BYTES
    return value if value >= 0 else DEFAULT_MAX_BODY_BYTES


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, field: str | None = None
) -> Response:
    """An ``application/problem+json`` response (with the offending ``field``, if one is named)."""
    body = {"type": _PROBLEM_TYPES.get(status, "about:blank"), "title": title, "status": status, "detail": detail}
    if field is not None:
        body["field"] = field
    return Response(json.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


class BodyTooLarge(Exception):
    """The request body is larger than its limit (raised while reading it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def to_response(value: Any) -> Response:
    """Convert a function's HTTP output (``func.HttpResponse``, ``str`` or None) to a response."""
    if isinstance(value, abc_types.HttpResponse):
        response = Response(value.get_body(), status_code=value.status_code)
        raw: list[tuple[bytes, bytes]] = []
        typed = False
        for name, val in value.headers.items():  # one pass (``in`` on these headers raises and catches a KeyError)
            name = name.lower()
            typed = typed or name == "content-type"
            if name not in _DROPPED_RESPONSE_HEADERS:
                raw.append((name.encode("latin-1"), str(val).encode("latin-1")))
        if not typed:
            mimetype = value.mimetype
            content_type = f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
            response.raw_headers.append((b"content-type", content_type.encode("latin-1")))
        response.raw_headers.extend(raw)
        return response
    if isinstance(value, str):
        return Response(value, media_type="text/plain; charset=utf-8")
    if value is None:
        return Response(status_code=204)
    raise TypeError(f"HTTP output must be func.HttpResponse or str, not {type(value).__name__}")


class WebApp:
    """ASGI application serving the HTTP-triggered functions."""

    def __init__(self, invoker: Invoker, keys: Keys, route_prefix: str = "api", max_body: int | None = None) -> None:
        self.invoker = invoker
        self.keys = keys
        self.routes: RouteTable[Endpoint] = RouteTable(route_prefix)
        self.max_body = host_body_limit() if max_body is None else max_body

    def add(self, function: FunctionInfo) -> Endpoint:
        """Serve an ``httpTrigger`` function (raises :class:`DevHostError` for a bad route)."""
        ep = endpoint(function)
        self.routes.add(ep.route, ep.methods, ep)
        return ep

    @property
    def endpoints(self) -> list[Endpoint]:
        return [route.target for route in self.routes.routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        response = await self._handle(scope, receive)
        await response(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        method: str = scope["method"]
        match = self.routes.match(method, scope["path"])
        ep = match.target
        if ep is None:
            if match.allowed:
                return problem(
                    405,
                    "Method Not Allowed",
                    f"{method} is not allowed on this route.",
                    {"Allow": ", ".join(sorted(match.allowed))},
                )
            return problem(404, "Not Found", "No function matches this route.")
        headers, key = _joined(scope["headers"])
        query: bytes = scope.get("query_string", b"")
        params, code = _query(query)
        if ep.auth_level != ANONYMOUS:
            if not self.keys.allows(ep.auth_level, key or code):
                detail = "A valid key is required in the x-functions-key header or the code query parameter."
                return problem(401, "Unauthorized", detail)
        limit = self.max_body if ep.max_body is None else min(ep.max_body, self.max_body)
        try:
            body = await _body(receive, limit, headers.get("content-length"))
        except BodyTooLarge:
            detail = f"The request body is larger than {limit} bytes, the most this route accepts."
            return problem(413, "Payload Too Large", detail, field="$")
        http_request = func.HttpRequest(
            method,
            _url(scope),
            headers=headers,
            params=params,
            route_params=match.params,
            body=body,
        )
        try:
            return to_response(await self.invoker.invoke(ep.function, http_request))
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", ep.function.name)
            return problem(500, "Internal Server Error", "The function failed. See the dev host log for details.")


def _joined(raw: Iterable[tuple[bytes, bytes]]) -> tuple[dict[str, str], str | None]:
    """Request headers with repeated names joined by ', ' (as the Functions host does), and the first
    ``x-functions-key`` value."""
    headers: dict[str, str] = {}
    key = None
    for name_b, value_b in raw:
        name, value = name_b.decode("latin-1").lower(), value_b.decode("latin-1")
        if name in headers:
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
            if name == "x-functions-key":
                key = value
    return headers, key


def _query(query_string: bytes) -> tuple[dict[str, str], str | None]:
    """Query parameters with repeated names joined by ',', and the last ``code`` value (what
    ``starlette``'s ``QueryParams.get`` returns)."""
    params: dict[str, str] = {}
    code = None
    if query_string:
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
            if name == "code":
                code = value
    return params, code


def _url(scope: Scope) -> str:
    """``str(starlette.datastructures.URL(scope=scope))``, with the scheme and authority worked out once
    per host header rather than on every request."""
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    server = scope.get("server")
    origin = _origin(scope.get("scheme", "http"), host, tuple(server) if server is not None else None)
    path: str = scope["path"]
    if origin is None or not path.startswith("/"):
        return str(URL(scope=scope))
    path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    query: bytes = scope.get("query_string", b"")
    return f"{origin}{path}?{query.decode()}" if query else origin + path


@functools.lru_cache(maxsize=256)
def _origin(scheme: str, host: bytes | None, server: tuple[str, int] | None) -> str | None:
    """``scheme://authority`` as starlette derives it from the host header (else the server address);
    None when there is neither."""
    scope = {
        "scheme": scheme,
        "server": server,
        "path": "/",
        "query_string": b"",
        "headers": [(b"host", host)] if host is not None else [],
    }
    root = str(URL(scope=scope))
    return root[:-1] if root != "/" and root.endswith("/") else None


async def _body(receive: Receive, limit: int, content_length: str | None = None) -> bytes:
    """The whole request body (as ``starlette``'s ``Request.body``; a disconnect raises ``ClientDisconnect``),
    or :class:`BodyTooLarge` as soon as ``Content-Length`` or the bytes read pass ``limit``: the rest is
    never asked for (uvicorn discards what still arrives once the response is sent)."""
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                size += len(body)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
