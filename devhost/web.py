"""The HTTP front end: an ASGI app (starlette request/response types) for HTTP triggers.

Requests are routed with :class:`devhost.routing.RouteTable`, checked against the
function's auth level, turned into ``func.HttpRequest`` and the function's
``func.HttpResponse`` (or ``str``) is sent back. Errors produced by the host itself are
RFC 9457 ``application/problem+json`` documents; user exceptions become a generic 500
(the traceback goes to the log, never to the client).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions import _abc as abc_types
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from devhost.auth import ANONYMOUS, FUNCTION, Keys
from devhost.catalog import FunctionInfo
from devhost.invocation import Invoker
from devhost.routing import RouteTable

log = logging.getLogger("devhost")

PROBLEM_JSON = "application/problem+json"
_PROBLEM_TYPES = {
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
}
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding"})


@dataclass(frozen=True)
class Endpoint:
    """An HTTP-triggered function with its route and auth level."""

    function: FunctionInfo
    route: str                       # template relative to the route prefix
    methods: frozenset[str]          # empty: every method
    auth_level: str


def endpoint(function: FunctionInfo) -> Endpoint:
    """The :class:`Endpoint` of an ``httpTrigger`` function (route defaults to its name)."""
    trigger = function.trigger
    methods = trigger.get("methods") or ()
    route = trigger.get("route")
    return Endpoint(
        function=function,
        route=(function.name if route is None else str(route)).strip("/"),
        methods=frozenset(str(m).upper() for m in methods),
        auth_level=str(trigger.get("authLevel", FUNCTION)).lower(),
    )


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An ``application/problem+json`` response."""
    body = {"type": _PROBLEM_TYPES.get(status, "about:blank"), "title": title, "status": status, "detail": detail}
    return Response(json.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


def to_response(value: Any) -> Response:
    """Convert a function's HTTP output (``func.HttpResponse``, ``str`` or None) to a response."""
    if isinstance(value, abc_types.HttpResponse):
        response = Response(value.get_body(), status_code=value.status_code)
        headers = value.headers
        if "content-type" not in headers:
            mimetype = value.mimetype
            content_type = f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
            response.raw_headers.append((b"content-type", content_type.encode("latin-1")))
        response.raw_headers.extend(
            (name.lower().encode("latin-1"), str(val).encode("latin-1"))
            for name, val in headers.items() if name.lower() not in _DROPPED_RESPONSE_HEADERS)
        return response
    if isinstance(value, str):
        return Response(value, media_type="text/plain; charset=utf-8")
    if value is None:
        return Response(status_code=204)
    raise TypeError(f"HTTP output must be func.HttpResponse or str, not {type(value).__name__}")


class WebApp:
    """ASGI application serving the HTTP-triggered functions."""

    def __init__(self, invoker: Invoker, keys: Keys, route_prefix: str = "api") -> None:
        self.invoker = invoker
        self.keys = keys
        self.routes: RouteTable[Endpoint] = RouteTable(route_prefix)

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
                return problem(405, "Method Not Allowed", f"{method} is not allowed on this route.",
                               {"Allow": ", ".join(sorted(match.allowed))})
            return problem(404, "Not Found", "No function matches this route.")
        request = Request(scope, receive)
        if ep.auth_level != ANONYMOUS:
            key = request.headers.get("x-functions-key") or request.query_params.get("code")
            if not self.keys.allows(ep.auth_level, key):
                detail = "A valid key is required in the x-functions-key header or the code query parameter."
                return problem(401, "Unauthorized", detail)
        http_request = func.HttpRequest(
            method, str(request.url),
            headers=_joined(scope["headers"]),
            params=_query(request),
            route_params=match.params,
            body=await request.body(),
        )
        try:
            return to_response(await self.invoker.invoke(ep.function, http_request))
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", ep.function.name)
            return problem(500, "Internal Server Error", "The function failed. See the dev host log for details.")


def _joined(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers with repeated names joined by ', ' (as the Functions host does)."""
    headers: dict[str, str] = {}
    for name_b, value_b in raw:
        name, value = name_b.decode("latin-1").lower(), value_b.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _query(request: Request) -> dict[str, str]:
    """Query parameters with repeated names joined by ','."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        params[name] = f"{params[name]},{value}" if name in params else value
    return params
