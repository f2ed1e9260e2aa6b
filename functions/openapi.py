"""The OpenAPI 3.1 description of the fabric's HTTP API, served at ``GET /api/openapi.json``.

Maintained by hand next to the routes: ``tests/unit/test_openapi.py`` checks that every route+method
the function app declares is described here and that nothing here is stale.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import shared
from functions.http import MAX_SEQUENCE
from shared.host.queued_calls import DEFAULT_DEADLINE_S, MAX_DEADLINE_S, MAX_MESSAGE_BYTES
from shared.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_PACKAGE_BYTES,
    MAX_JSON_DEPTH,
    MAX_JSON_INT_DIGITS,
    MAX_WEBHOOK_BYTES,
)

PROBLEM = "application/problem+json"
#: What every JSON body must respect (shared/limits.py; docs/http-api.md#limits), stated once for all routes.
_LIMITS = (
    f"Every JSON body: nesting at most {MAX_JSON_DEPTH} deep, integers of at most {MAX_JSON_INT_DIGITS} "
    "digits, no lone surrogates, no duplicate member names, no NaN or Infinity (400 naming the JSON path); "
    f"at most FABRIC_MAX_BODY_BYTES (default {DEFAULT_MAX_BODY_BYTES} bytes) per JSON body and "
    f"FABRIC_MAX_PACKAGE_BYTES (default {DEFAULT_MAX_PACKAGE_BYTES}) per package zip, refused with 413 "
    "while the body is read."
)
JSON = "application/json"
HEX32 = {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}
OBJECT = {"type": "object"}
INT32_MAX = 2**31 - 1  #: route constraint ``{x:int}``: a larger number matches no route (404)
MAX_PAGE = 1000  #: functions/ledger.py and functions/events.py: most entries or deliveries per page
CRYPTLET_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,62}$"}  # shared/schemas/cryptlet.schema.json
ADDRESS = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
SUBSCRIPTION_ID_SCHEMA = {"type": "string", "pattern": "^sub_[0-9a-f]{24}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _ok(
    description: str, schema: dict[str, Any] | None = None, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema or OBJECT}}}
    if headers:
        response["headers"] = headers
    return response


def _path_param(
    name: str, description: str, integer: bool = False, schema: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    if schema is None:
        schema = {"type": "integer", "minimum": 0, "maximum": INT32_MAX} if integer else {"type": "string"}
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema, **extra}


def _query(
    name: str, description: str, integer: bool = True, minimum: int = 0, maximum: int = MAX_SEQUENCE
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": maximum} if integer else {"type": "string"},
    }


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


NAME = _path_param("name", "registered cryptlet name", schema=CRYPTLET_NAME, example="customer_validator")
SEQUENCE = _path_param("sequence", "ledger entry sequence (1-based)", integer=True)
REQUEST_ID = _path_param("request_id", "0x-prefixed 32-byte request id", schema=HEX32)
LOCATION = {"Location": {"description": "where the resource can be read", "schema": {"type": "string"}}}


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    anonymous: bool = False,
    admin: bool = False,
    errors: tuple[str, ...] = ("400", "404"),
) -> dict[str, Any]:
    """One operation; every keyed operation may answer 401 and every operation 500/503 as problems.
    An operation with parameters may answer 400 (a name, id or number outside its pattern or bounds)."""
    all_responses = dict(responses)
    if params and "400" not in errors:
        errors = ("400", *errors)
    for status in errors:
        all_responses[status] = _problem(
            {
                "400": "invalid input; `field` names the offending input",
                "404": "not found",
                "409": "conflict",
                "413": "too large (`reason` or `field` says which limit)",
                "422": "verification failed",
                "502": "the region failed (`region_code` says how)",
            }[status]
        )
    if not anonymous:
        all_responses["401"] = _problem("missing or wrong function key")
    all_responses.setdefault("500", _problem("internal error"))
    all_responses.setdefault("503", _problem("storage unavailable"))
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag], "responses": all_responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if anonymous:
        op["security"] = []
    if admin:
        op["security"] = [{"adminKeyHeader": []}, {"adminKeyQuery": []}]
        all_responses["401"] = _problem("missing or wrong admin (master) key")
    return op


INVOKE_BODY = {
    "type": "object",
    "required": ["method"],
    "properties": {
        "method": {"type": "string", "description": "a method of the cryptlet's interface"},
        "args": {"type": "object", "description": "named arguments", "default": {}},
        "request_id": {
            **HEX32,
            "description": "32-byte request id (random if absent); a queued request's id is accepted once",
        },
        "deadline_ms": {
            "type": "integer",
            "minimum": 0,
            "description": f"queued requests: unix ms (1 s .. {MAX_DEADLINE_S // 86400} days ahead; default "
            f"{DEFAULT_DEADLINE_S // 60} minutes); a request still pending then is never run and "
            "ends `expired` with a failure signed by the delivery key",
        },
    },
}
REQUEST_STATUS = {
    "type": "object",
    "description": "an asynchronous request (docs/requests.md)",
    "required": ["request_id", "status", "updated_at"],
    "properties": {
        "request_id": {"type": "string", "pattern": "^0x[0-9a-f]{64}$"},
        "status": {"enum": ["pending", "running", "done", "failed", "expired"]},
        "updated_at": {"type": "string"},
        "attempts": {"type": "integer", "minimum": 0, "description": "leases taken by workers"},
        "request": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "method": {"type": "string"}},
        },
        "deadline_ms": {"type": ["integer", "null"]},
        "envelope": {"$ref": "#/components/schemas/Envelope"},
        "error": {
            "type": "object",
            "description": "the problem of a failed request, or the signed failure of an expired one",
        },
        "location": {"type": "string"},
    },
}
REVOKE: dict[str, Any] = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "reason": {"type": "string"},
        "invalid_after": {"type": "integer", "minimum": 0},
        "note": {"type": "string"},
    },
}


# -- subscribers and subscriptions (docs/events.md) ---------------------------------------------------
SIGNATURE_HEADER = {
    "name": "X-Subscriber-Signature",
    "in": "header",
    "required": True,
    "description": "0x + 65 bytes (r || s || v): EIP-191 personal_sign of the RFC 8785 canonical JSON "
    "of the body, by the subscriber's registered key",
    "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{130}$"},
}
SIGNED_REQUEST = {
    "type": "object",
    "required": ["subscriber", "nonce", "expires_ms", "action", "body"],
    "additionalProperties": False,
    "properties": {
        "subscriber": {"type": "string"},
        "nonce": {"type": "string", "pattern": "^0x[0-9a-fA-F]{32,64}$"},
        "expires_ms": {"type": "integer", "description": "unix ms; in the future, at most 10 minutes ahead"},
        "action": {"enum": ["subscribe", "cancel", "list", "job"]},
        "body": {},
    },
}
SUBSCRIBER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "address": {"type": "string"},
        "public_key": {"type": "string"},
        "created_ms": {"type": "integer"},
    },
}
SUBSCRIPTION = {
    "type": "object",
    "description": "a subscription (docs/events.md); never its webhook secret",
    "properties": {
        "id": {"type": "string", "pattern": "^sub_[0-9a-f]{24}$"},
        "subscriber": {"type": "string"},
        "cryptlet": {"type": "string"},
        "method": {"type": "string"},
        "args": OBJECT,
        "trigger": OBJECT,
        "target": OBJECT,
        "deadline_ms": {"type": "integer"},
        "created_ms": {"type": "integer"},
        "status": {"enum": ["active", "cancelled", "expired", "done"]},
        "observe": {"type": ["object", "null"]},
        "missed": OBJECT,
        "last_fired_ms": {"type": ["integer", "null"]},
    },
}
SUBSCRIPTION_ID = _path_param("id", "subscription id (sub_ + 24 hex digits)", schema=SUBSCRIPTION_ID_SCHEMA)


def _signed(op: dict[str, Any]) -> dict[str, Any]:
    """A signed subscriber request: 401 also for a bad signature, 403 and 409 (replayed nonce)."""
    op["parameters"] = [*op.get("parameters", []), SIGNATURE_HEADER]
    op["responses"]["401"] = _problem(
        "missing function key, or the request signature is missing, malformed, "
        "expired or not by a registered subscriber (`reason` says which)"
    )
    op["responses"]["409"] = _problem("conflict; `reason: replayed_nonce` for a nonce used before")
    return op


def _paths() -> dict[str, Any]:
    envelope = _ref("Envelope")
    registration = _ref("Registration")
    key_change = {
        "type": "object",
        "properties": {"registration": registration, "entries": {"type": "array", "items": _ref("LedgerEntry")}},
    }
    return {
        "/api/health": {
            "get": _operation(
                "health",
                "Storage reachability, ledger size and versions",
                "operations",
                {"200": _ok("healthy"), "503": _ok("degraded: storage unreachable")},
                anonymous=True,
                errors=(),
            )
        },
        "/api/ping": {
            "get": _operation(
                "ping",
                "Liveness probe: a constant answer that touches nothing",
                "operations",
                {"200": _ok("alive", {"type": "object", "properties": {"status": {"const": "ok"}}})},
                anonymous=True,
                errors=(),
            )
        },
        "/api/openapi.json": {
            "get": _operation(
                "openapi",
                "This OpenAPI document",
                "operations",
                {"200": _ok("the OpenAPI 3.1 document")},
                anonymous=True,
                errors=(),
            )
        },
        "/api/attestation": {
            "get": _operation(
                "attestation",
                "The host's isolation provider, evidence kind and platform key",
                "operations",
                {"200": _ok("attestation identity")},
                errors=(),
            )
        },
        "/api/cryptlets": {
            "post": _operation(
                "register_cryptlet",
                "Register a package: a folder of the host's packages directory "
                "(JSON) or an uploaded zip (`application/zip`, `cryptlet.json` at its root, at most "
                "FABRIC_MAX_PACKAGE_BYTES, default 5 MiB: 413; refused with a problem whose `reason` names the check)",
                "cryptlets",
                {"201": _ok("registered", registration, LOCATION)},
                body={
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["package"],
                                "properties": {"package": {"type": "string"}},
                            }
                        },
                        "application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}},
                    },
                },
                errors=("400", "404", "409", "413", "502"),
            ),
            "get": _operation(
                "list_cryptlets",
                "Registered cryptlets",
                "cryptlets",
                {
                    "200": _ok(
                        "catalog",
                        {"type": "object", "properties": {"cryptlets": {"type": "array", "items": registration}}},
                    )
                },
                errors=(),
            ),
        },
        "/api/cryptlets/{name}": {
            "get": _operation(
                "get_cryptlet",
                "One registration with the ledger receipt of its registration entry",
                "cryptlets",
                {
                    "200": _ok(
                        "registration and receipt",
                        {
                            "allOf": [
                                registration,
                                {
                                    "type": "object",
                                    "required": ["receipt"],
                                    "properties": {"receipt": _ref("Receipt"), "effective": _ref("EffectiveSettings")},
                                },
                            ]
                        },
                    )
                },
                params=[NAME],
                errors=("404",),
            )
        },
        "/api/cryptlets/{name}/policy": {
            "get": _operation(
                "get_policy",
                "Manifest settings, the admin's policy and the effective settings",
                "policy",
                {"200": _ok("policy view", _ref("PolicyView"))},
                params=[NAME],
                errors=("404",),
            ),
            "put": _operation(
                "set_policy",
                "Replace the cryptlet's policy (overrides its manifest; ledger: policy.set). Admin (master) key",
                "policy",
                {
                    "200": _ok(
                        "policy view and the policy.set entry",
                        {
                            "allOf": [
                                _ref("PolicyView"),
                                {"type": "object", "properties": {"entry": _ref("LedgerEntry")}},
                            ]
                        },
                    )
                },
                params=[NAME],
                body=_body(_ref("Policy")),
                admin=True,
                errors=("400", "404", "409", "502"),
            ),
        },
        "/api/cryptlets/{name}/invoke": {
            "post": _operation(
                "invoke_cryptlet",
                "Run a method in the cryptlet's region; the signed envelope (plus `events`, one "
                "signed envelope per event the call emitted). Contract kind: the payload is `{result, state: {version, "
                "hash, previous}}` and the new state is stored",
                "invocations",
                {
                    "200": _ok(
                        "signed EIP-712 envelope",
                        {
                            "allOf": [
                                envelope,
                                {"type": "object", "properties": {"events": {"type": "array", "items": envelope}}},
                            ]
                        },
                    )
                },
                params=[NAME],
                body=_body(INVOKE_BODY),
                errors=("400", "404", "409", "502"),
            )
        },
        "/api/cryptlets/{name}/state": {
            "get": _operation(
                "get_cryptlet_state",
                "A contract cryptlet's stored state snapshot, its version and keccak256 hash "
                "(as its last envelope signed them)",
                "invocations",
                {
                    "200": _ok(
                        "state",
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "state": OBJECT,
                                "version": {"type": "integer"},
                                "hash": {"type": ["string", "null"]},
                            },
                        },
                    )
                },
                params=[NAME],
                errors=("400", "404"),
            )
        },
        "/api/cryptlets/{name}/requests": {
            "post": _operation(
                "request_invocation",
                "Queue an invocation; poll its Location. A request id is accepted once: posting it "
                "again answers that request (200; never run again), or 409 if the cryptlet, method or "
                f"args differ. At most {MAX_MESSAGE_BYTES} bytes of request JSON (413)",
                "invocations",
                {
                    "202": _ok(
                        "accepted",
                        {
                            "type": "object",
                            "required": ["request_id", "status", "location"],
                            "properties": {
                                "request_id": {"type": "string", "pattern": "^0x[0-9a-f]{64}$"},
                                "status": {"const": "pending"},
                                "location": {"type": "string"},
                            },
                        },
                        LOCATION,
                    ),
                    "200": _ok("this request id was accepted before: its status", REQUEST_STATUS, LOCATION),
                },
                params=[NAME],
                body=_body(INVOKE_BODY),
                errors=("400", "404", "409", "413"),
            )
        },
        "/api/requests/{request_id}": {
            "get": _operation(
                "get_request",
                "Status of a queued invocation: pending, running, done (envelope), failed (problem) or "
                "expired (never ran; signed failure)",
                "invocations",
                {"200": _ok("request status", REQUEST_STATUS)},
                params=[REQUEST_ID],
            )
        },
        "/api/requests/{request_id}/progress": {
            "get": _operation(
                "get_request_progress",
                "How far a call has come: the fraction (0..1, never decreasing) and message its "
                "cryptlet last reported with the progress call-out; 0 for a queued request that has not reported yet",
                "invocations",
                {
                    "200": _ok(
                        "progress",
                        {
                            "type": "object",
                            "properties": {
                                "request_id": HEX32,
                                "cryptlet": {"type": ["string", "null"]},
                                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                                "message": {"type": "string"},
                                "started_at": {"type": ["string", "null"]},
                                "updated_at": {"type": ["string", "null"]},
                                "reported": {"type": "boolean"},
                            },
                        },
                    )
                },
                params=[REQUEST_ID],
            )
        },
        "/api/cryptlets/{name}/keys/rotate": {
            "post": _operation(
                "rotate_key",
                "Generate a new key in a region (ledger: cryptlet.key_rotated)",
                "keys",
                {"200": _ok("new registration and ledger entries", key_change)},
                params=[NAME],
                body=_body({"type": "object", "properties": {"revoke": REVOKE}}, required=False),
                errors=("400", "404", "409", "502"),
            )
        },
        "/api/cryptlets/{name}/keys/revoke": {
            "post": _operation(
                "revoke_key",
                "Revoke a key (default the current one, which is then rotated)",
                "keys",
                {"200": _ok("registration and ledger entries", key_change)},
                params=[NAME],
                body=_body(
                    {"type": "object", "properties": {"address": {"type": "string"}, **REVOKE["properties"]}},
                    required=False,
                ),
                errors=("400", "404", "409", "502"),
            )
        },
        "/api/cryptlets/{name}/keys": {
            "get": _operation(
                "list_keys",
                "Every key of the cryptlet, or the one valid at ledger entry `at`",
                "keys",
                {"200": _ok("keys")},
                params=[NAME, _query("at", "ledger sequence (positive)", minimum=1)],
            )
        },
        "/api/cryptlets/{name}/retire": {
            "post": _operation(
                "retire_cryptlet",
                "Retire the cryptlet: its keys end, its regions stop",
                "keys",
                {"200": _ok("the retirement entry", {"type": "object", "properties": {"entry": _ref("LedgerEntry")}})},
                params=[NAME],
                body=_body({"type": "object", "properties": {"note": {"type": "string"}}}, required=False),
                errors=("400", "404", "409"),
            )
        },
        "/api/ledger": {
            "get": _operation(
                "ledger_head",
                "Ledger head, newest checkpoint and the checkpoint public key",
                "ledger",
                {"200": _ok("ledger head")},
                errors=(),
            )
        },
        "/api/ledger/entries": {
            "get": _operation(
                "ledger_entries",
                "A page of raw entries",
                "ledger",
                {
                    "200": _ok(
                        "entries",
                        {
                            "type": "object",
                            "properties": {
                                "stream": {"type": "string"},
                                "entries": {"type": "array", "items": _ref("LedgerEntry")},
                            },
                        },
                    )
                },
                params=[
                    _query("from", "first sequence (default 1)", minimum=1),
                    _query("limit", "page size (1-1000, default 100)", minimum=1, maximum=MAX_PAGE),
                ],
                errors=("400",),
            )
        },
        "/api/ledger/entries/{sequence}": {
            "get": _operation(
                "ledger_entry", "One raw entry", "ledger", {"200": _ok("entry", _ref("LedgerEntry"))}, params=[SEQUENCE]
            )
        },
        "/api/ledger/entries/{sequence}/receipt": {
            "get": _operation(
                "ledger_receipt",
                "The entry, its RFC 9162 inclusion proof and signed checkpoint",
                "ledger",
                {"200": _ok("receipt", _ref("Receipt"))},
                params=[SEQUENCE],
            )
        },
        "/api/ledger/checkpoint": {
            "get": _operation(
                "latest_checkpoint", "Newest signed checkpoint", "ledger", {"200": _ok("checkpoint")}, errors=("404",)
            )
        },
        "/api/ledger/checkpoints": {
            "post": _operation(
                "make_checkpoint",
                "Sign a checkpoint of the current head",
                "ledger",
                {"201": _ok("new checkpoint"), "200": _ok("the existing checkpoint is current")},
                errors=(),
            )
        },
        "/api/ledger/checkpoints/{size}": {
            "get": _operation(
                "checkpoint_at",
                "The signed checkpoint of a tree size",
                "ledger",
                {"200": _ok("checkpoint")},
                params=[_path_param("size", "tree size", integer=True)],
            )
        },
        "/api/ledger/consistency": {
            "get": _operation(
                "consistency",
                "Consistency proof between two tree sizes",
                "ledger",
                {"200": _ok("proof")},
                params=[
                    {**_query("from", "older tree size"), "required": True},
                    _query("to", "newer tree size (default: newest checkpoint)"),
                ],
            )
        },
        "/api/ledger/keys/{address}": {
            "get": _operation(
                "key_status",
                "A key's life and the ledger entries that say so",
                "ledger",
                {"200": _ok("key record and entries")},
                params=[_path_param("address", "0x-prefixed Ethereum address of the key", schema=ADDRESS)],
            )
        },
        # -- event engine: webhooks, dead letters, delivery history (docs/events.md) --
        "/api/webhooks/{subscription_id}": {
            "post": {
                **_operation(
                    "webhook",
                    f"Fire a webhook subscription: the JSON body (at most {MAX_WEBHOOK_BYTES} bytes, 413 "
                    "otherwise) becomes `args.event`; authenticated by "
                    '`X-Webhook-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>." + body>` with the subscription\'s '
                    "secret (no function key)",
                    "events",
                    {
                        "202": _ok(
                            "accepted: the fire's sequence",
                            {
                                "type": "object",
                                "properties": {
                                    "subscription": {"type": "string"},
                                    "sequence": {"type": "integer"},
                                    "status": {"const": "accepted"},
                                },
                            },
                        ),
                        "401": _problem(
                            "webhook signature missing, stale or wrong (`reason` says which); nothing was enqueued"
                        ),
                    },
                    params=[
                        _path_param(
                            "subscription_id", "subscription id (sub_ + 24 hex digits)", schema=SUBSCRIPTION_ID_SCHEMA
                        ),
                        {
                            "name": "X-Webhook-Signature",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
                        },
                    ],
                    body=_body(OBJECT),
                    anonymous=True,
                    errors=("400", "404", "409", "413"),
                )
            }
        },
        "/api/deadletters": {
            "get": _operation(
                "deadletters",
                "Fires that exhausted their delivery attempts (the fire queue's poison queue, peeked, "
                "at most 32), each with its fire and history status",
                "events",
                {
                    "200": _ok(
                        "dead letters",
                        {
                            "type": "object",
                            "properties": {"queue": {"type": "string"}, "messages": {"type": "array", "items": OBJECT}},
                        },
                    )
                },
                errors=(),
            )
        },
        "/api/subscriptions/{id}/history": {
            "get": _operation(
                "subscription_history",
                "Recorded deliveries of a subscription in sequence order: fire, status, "
                "envelope or error, payload hash, signatures, attempts, times",
                "events",
                {
                    "200": _ok(
                        "deliveries",
                        {
                            "type": "object",
                            "properties": {
                                "subscription": {"type": "string"},
                                "deliveries": {"type": "array", "items": OBJECT},
                                "next": {
                                    "type": "integer",
                                    "description": "`from` of the next page, if there may be one",
                                },
                            },
                        },
                    )
                },
                params=[
                    _path_param("id", "subscription id (sub_ + 24 hex digits)", schema=SUBSCRIPTION_ID_SCHEMA),
                    _query("from", "first sequence (default 0)"),
                    _query("limit", "1..1000 (default 100)", minimum=1, maximum=MAX_PAGE),
                ],
                errors=("400", "404"),
            )
        },
        # -- subscribers and subscriptions (docs/events.md) --
        "/api/subscribers": {
            "post": _operation(
                "register_subscriber",
                "Register a subscriber with its secp256k1 public key. Admin (master) key",
                "subscriptions",
                {"201": _ok("registered", SUBSCRIBER)},
                body=_body(
                    {
                        "type": "object",
                        "required": ["name", "public_key"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,62}$"},
                            "public_key": {"type": "string", "description": "SEC1 hex, 65 or 33 bytes"},
                        },
                    }
                ),
                admin=True,
                errors=("400", "409"),
            ),
            "get": _operation(
                "list_subscribers",
                "Registered subscribers",
                "subscriptions",
                {
                    "200": _ok(
                        "subscribers",
                        {"type": "object", "properties": {"subscribers": {"type": "array", "items": SUBSCRIBER}}},
                    )
                },
                errors=(),
            ),
        },
        "/api/subscriptions": {
            "post": _signed(
                _operation(
                    "create_subscription",
                    "Signed `subscribe` request: run a cryptlet method on a trigger and deliver "
                    "each signed result until a deadline; a webhook trigger's secret is in this answer only",
                    "subscriptions",
                    {
                        "201": _ok(
                            "created",
                            {
                                "type": "object",
                                "properties": {
                                    "subscription": SUBSCRIPTION,
                                    "webhook_secret": {"type": "string"},
                                    "webhook_url": {"type": "string"},
                                },
                            },
                            LOCATION,
                        )
                    },
                    body=_body(SIGNED_REQUEST),
                    errors=("400", "404"),
                )
            ),
            "get": _operation(
                "list_subscriptions",
                "Subscriptions, optionally of one subscriber / in one status",
                "subscriptions",
                {
                    "200": _ok(
                        "subscriptions",
                        {"type": "object", "properties": {"subscriptions": {"type": "array", "items": SUBSCRIPTION}}},
                    )
                },
                params=[
                    _query("subscriber", "subscriber name", integer=False),
                    _query("status", "active, cancelled, expired or done", integer=False),
                ],
                errors=("400",),
            ),
        },
        "/api/subscriptions/{id}": {
            "get": _operation(
                "get_subscription",
                "One subscription",
                "subscriptions",
                {"200": _ok("subscription", SUBSCRIPTION)},
                params=[SUBSCRIPTION_ID],
                errors=("404",),
            )
        },
        "/api/subscriptions/{id}/cancel": {
            "post": _signed(
                _operation(
                    "cancel_subscription",
                    'Signed `cancel` request (body `{"subscription": id}`) by the subscription\'s own subscriber',
                    "subscriptions",
                    {
                        "200": _ok("cancelled", {"type": "object", "properties": {"subscription": SUBSCRIPTION}}),
                        "403": _problem("the subscription belongs to another subscriber"),
                    },
                    params=[SUBSCRIPTION_ID],
                    body=_body(SIGNED_REQUEST),
                    errors=("400", "404"),
                )
            )
        },
    }


def _policy_schema() -> dict[str, Any]:
    """``shared/schemas/policy.schema.json`` without its JSON Schema identifiers."""
    from shared.host.policy import SCHEMA_PATH

    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def _components() -> dict[str, Any]:
    return {
        "securitySchemes": {
            "functionKeyHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "x-functions-key",
                "description": "function key (or the master key)",
            },
            "functionKeyQuery": {
                "type": "apiKey",
                "in": "query",
                "name": "code",
                "description": "function key as a query parameter",
            },
            "adminKeyHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "x-functions-key",
                "description": "the master (admin) key",
            },
            "adminKeyQuery": {
                "type": "apiKey",
                "in": "query",
                "name": "code",
                "description": "the master (admin) key as a query parameter",
            },
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem document",
                "required": ["title", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string", "description": "stable machine code"},
                    "field": {"type": "string", "description": "the offending input (JSON path or name)"},
                },
            },
            "Registration": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "address": {"type": "string"},
                    "public_key": {"type": "string"},
                    "digest": {"type": "string"},
                    "digest_alg": {
                        "enum": ["cfpkg-v1", "cfpkg-v2"],
                        "description": "how digest was measured (docs/container-protocol.md)",
                    },
                    "ledger": {"type": "object"},
                    "evidence": {"type": "object"},
                    "kind": {"enum": ["utility", "contract"]},
                    "methods": {"type": "object"},
                    "events": {"type": "object"},
                },
            },
            "Envelope": {
                "type": "object",
                "description": "EIP-712 signed envelope (docs/envelope.md)",
                "properties": {
                    "payload": {},
                    "sequence": {"type": "integer"},
                    "signature": {"type": "string"},
                    "registration": {"type": "object"},
                },
            },
            "LedgerEntry": {"type": "object", "description": "raw hash-chained ledger entry (docs/ledger.md)"},
            "Policy": _policy_schema(),
            "EffectiveSettings": {
                "type": "object",
                "description": "host defaults < manifest < policy",
                "properties": {
                    "isolation": {"type": "boolean"},
                    "egress": {"type": "array", "items": {"type": "string"}},
                    "min_instances": {"type": "integer"},
                    "max_instances": {"type": "integer"},
                    "timeout_s": {"type": "number", "description": "per-call time limit of the cryptlet's regions"},
                    "egress_enforced": {
                        "type": "boolean",
                        "description": "true: the fetch call-out reaches only egress hosts",
                    },
                },
            },
            "PolicyView": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "provider": {"type": "string"},
                    "manifest": OBJECT,
                    "policy": _ref("Policy"),
                    "ledger": {"type": ["object", "null"], "description": "reference of the policy.set entry"},
                    "effective": _ref("EffectiveSettings"),
                    "running_regions": {
                        "type": "integer",
                        "description": "regions of this cryptlet on the answering host",
                    },
                },
            },
            "Receipt": {
                "type": "object",
                "description": "entry, RFC 9162 inclusion proof and signed checkpoint (docs/ledger.md)",
                "properties": {
                    "version": {"type": "integer"},
                    "entry": _ref("LedgerEntry"),
                    "inclusion_proof": OBJECT,
                    "checkpoint": {"type": "string"},
                },
            },
        },
    }


@functools.lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (built once per process)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Cryptlet Fabric",
            "version": shared.__version__,
            "description": "Trusted off-chain compute: register cryptlets, invoke them for signed "
            "envelopes, audit the registration ledger. Errors are application/problem+json "
            "with the offending `field`. " + _LIMITS,
            "x-limits": {
                "maxJsonDepth": MAX_JSON_DEPTH,
                "maxJsonIntegerDigits": MAX_JSON_INT_DIGITS,
                "maxBodyBytes": DEFAULT_MAX_BODY_BYTES,
                "maxPackageBytes": DEFAULT_MAX_PACKAGE_BYTES,
                "maxWebhookBytes": MAX_WEBHOOK_BYTES,
            },
        },
        "servers": [{"url": "/"}],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "paths": _paths(),
        "components": _components(),
    }


@functools.lru_cache(maxsize=1)
def document_json() -> str:
    """:func:`document` serialised once."""
    return json.dumps(document(), separators=(",", ":"))
