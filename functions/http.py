"""HTTP plumbing shared by the blueprints: bounded JSON bodies in, JSON or problem documents out, no
secrets in the log."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, overload

import azure.functions as func
import msgspec

from functions.host import get_host
from shared.encoding import parse_json_input
from shared.errors import FabricError, InvalidInput, PayloadTooLarge
from shared.redact import redact_url
from shared.settings import declared_int

log = logging.getLogger("fabric.http")
PROBLEM = "application/problem+json"
MAX_SEQUENCE = 2**62  #: the largest ledger sequence or tree size a query may name


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")), status_code=status, mimetype="application/json", headers=headers
    )


def document_response(document: Any, status: int = 200) -> func.HttpResponse:
    """:func:`json_response` for a document read from JSON (a signed envelope): the same JSON value,
    written by ``msgspec`` (~8x faster than ``json.dumps``; characters beyond ASCII are not escaped)."""
    return func.HttpResponse(msgspec.json.encode(document), status_code=status, mimetype="application/json")


def problem_response(error: FabricError) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(error.problem(), separators=(",", ":")), status_code=error.status, mimetype=PROBLEM
    )


class Blueprint(func.Blueprint):
    """``func.Blueprint`` whose HTTP routes declare the largest body they accept, as the trigger
    property ``maxBodyBytes``: ``FABRIC_MAX_BODY_BYTES`` unless a route passes
    ``trigger_extra_fields={"max_body_bytes": n}``. The dev host stops reading a body there and answers
    413 without buffering the rest (devhost/README.md); the Functions host in Azure ignores the
    property, buffers up to its own limit (docs/deploy.md) and the route's check (:func:`body_bytes`)
    answers the same 413."""

    def route(
        self,
        route: str | None = None,
        trigger_arg_name: str = "req",
        binding_arg_name: str = "$return",
        methods: Iterable[str] | Iterable[func.HttpMethod] | None = None,
        auth_level: func.AuthLevel | str | None = None,
        trigger_extra_fields: dict[str, Any] | None = None,
        binding_extra_fields: dict[str, Any] | None = None,
    ) -> Callable[..., Any]:
        fields = {"max_body_bytes": declared_int("FABRIC_MAX_BODY_BYTES"), **(trigger_extra_fields or {})}
        return super().route(
            route=route,
            trigger_arg_name=trigger_arg_name,
            binding_arg_name=binding_arg_name,
            methods=methods,
            auth_level=auth_level,
            trigger_extra_fields=fields,
            binding_extra_fields=binding_extra_fields,
        )


def body_bytes(req: func.HttpRequest, max_bytes: int | None = None) -> bytes:
    """The request's body, at most ``max_bytes`` (default ``FABRIC_MAX_BODY_BYTES``) long: 413 naming
    the body (``$``) otherwise."""
    raw = req.get_body()
    limit = get_host().settings.max_body_bytes if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}", field="$")
    return raw


def json_body(req: func.HttpRequest) -> Any:
    """The request's JSON body (:func:`body_bytes`), parsed within the limits of
    :func:`shared.encoding.parse_json_input`: anything else is a 400 naming its JSON path (``$`` for the
    body)."""
    raw = body_bytes(req)
    if not raw:
        raise InvalidInput("request body must be JSON", field="$")
    return parse_json_input(raw)


@overload
def int_param(req: func.HttpRequest, name: str, default: int, minimum: int, maximum: int) -> int: ...
@overload
def int_param(req: func.HttpRequest, name: str, default: None, minimum: int, maximum: int) -> int | None: ...
def int_param(req: func.HttpRequest, name: str, default: int | None, minimum: int, maximum: int) -> int | None:
    """A non-negative integer query parameter within ``[minimum, maximum]``; 400 naming it otherwise."""
    raw = req.params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidInput(f"{name} must be a non-negative integer", field=name)
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}", field=name)
    return value


def handle_errors(fn: Callable[..., func.HttpResponse]) -> Callable[..., func.HttpResponse]:
    """Turn fabric errors into problem documents and anything else into a generic 500.

    The wrapper keeps the function's signature (``functools.wraps``), so the Functions host
    still sees every binding parameter; it passes them through unchanged.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
        req = kwargs.get("req", args[0] if args else None)
        where = f"{req.method} {redact_url(req.url)}" if isinstance(req, func.HttpRequest) else fn.__name__
        try:
            return fn(*args, **kwargs)
        except FabricError as exc:
            if exc.status >= 500:
                log.error("%s failed: %s", where, exc.diagnostics())
            return problem_response(exc)
        except Exception:
            log.exception("%s failed unexpectedly", where)
            return problem_response(FabricError("internal error; see the host log"))

    return wrapper
