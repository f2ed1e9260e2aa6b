"""Typed request models, parsed at the edge: HTTP bodies become the core's request objects here, and a
malformed body is a 400 problem naming the field (``$`` for the body itself)."""

from __future__ import annotations

from typing import Any

from shared.encoding import from_hex
from shared.errors import InvalidInput
from shared.host.models import Call, Revocation, RevokeRequest
from shared.host.policy import validate_policy
from shared.ledger.kinds import REVOCATION_REASONS


def _object(body: Any, message: str = "request body must be a JSON object") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(message, field="$")
    return body


def registration_package(body: Any) -> str:
    """``{"package": NAME}`` -> the package name."""
    body = _object(body)
    if "package" not in body:
        raise InvalidInput("package is required", field="package")
    package = body["package"]
    if not isinstance(package, str):
        raise InvalidInput(
            "package must be a package folder name (lowercase letters, digits, underscores)", field="package"
        )
    return package


def call(body: Any) -> Call:
    """``{"method", "args"?, "request_id"?}`` -> a :class:`Call` (the method is checked against the
    cryptlet's interface by the core, which knows it)."""
    body = _object(body)
    method = body.get("method")
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise InvalidInput("args must be a JSON object of named arguments", field="args")
    request_id = body.get("request_id")
    return Call(
        method if isinstance(method, str) else "",
        args,
        from_hex(request_id, length=32, field="request_id") if request_id is not None else None,
    )


def deadline(body: Any) -> int | None:
    """The optional ``deadline_ms`` of an asynchronous call (unix milliseconds; its range is the core's)."""
    value = _object(body).get("deadline_ms")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidInput("deadline_ms must be unix milliseconds between 1 s and 7 days ahead", field="deadline_ms")
    return value


def revocation(body: dict[str, Any]) -> Revocation:
    """``reason`` (default ``compromised``), ``invalid_after`` (ISO 8601) and ``note`` of a revocation."""
    reason = body.get("reason", "compromised")
    if not isinstance(reason, str):
        raise InvalidInput(f"reason must be one of {', '.join(REVOCATION_REASONS)}", field="reason")
    invalid_after, note = body.get("invalid_after"), body.get("note")
    if invalid_after is not None and not isinstance(invalid_after, str):
        raise InvalidInput("invalid_after must be an ISO 8601 UTC time", field="invalid_after")
    if note is not None and not isinstance(note, str):
        raise InvalidInput("note must be a string", field="note")
    return Revocation(reason, invalid_after or None, note or None)


def rotation(body: Any) -> Revocation | None:
    """``{"revoke"?: {reason, invalid_after, note}}`` -> the revocation of the old key, if asked for."""
    revoke = _object(body).get("revoke")
    if revoke is None:
        return None
    if not isinstance(revoke, dict):
        raise InvalidInput("revoke must be an object with reason, invalid_after and note", field="revoke")
    return revocation(revoke)


def revoke_request(body: Any) -> RevokeRequest:
    """``{"address"?, "reason"?, "invalid_after"?, "note"?}`` -> a :class:`RevokeRequest`."""
    body = _object(body)
    address = body.get("address")
    if address is not None and not isinstance(address, str):
        raise InvalidInput("address must be one of the keys the cryptlet has had", field="address")
    return RevokeRequest(address or None, revocation(body))


def retirement_note(body: Any) -> str | None:
    """The optional ``note`` of a retirement."""
    note = body.get("note") if isinstance(body, dict) else None
    if note is not None and not isinstance(note, str):
        raise InvalidInput("note must be a string", field="note")
    return note or None


def policy(body: Any) -> dict[str, Any]:
    """A policy document, validated against ``policy.schema.json`` (errors name the JSON path)."""
    return validate_policy(body)


def new_subscriber(body: Any) -> tuple[Any, Any]:
    """``{"name", "public_key"}`` -> (name, public key), checked by the subscriber registry."""
    body = _object(body, "request body must be a JSON object {name, public_key}")
    extra = sorted(set(body) - {"name", "public_key"})
    if extra:
        raise InvalidInput(f"unknown member {extra[0]!r}", field=f"$.{extra[0]}")
    return body.get("name"), body.get("public_key")
