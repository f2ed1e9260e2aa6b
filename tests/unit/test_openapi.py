"""The OpenAPI document describes exactly the routes the function app declares, and is valid OpenAPI 3.1."""

from __future__ import annotations

import json
import re
from pathlib import Path

from openapi_spec_validator import validate

import function_app
from devhost.catalog import HTTP_TRIGGER, index
from functions.openapi import document

HOST_JSON = json.loads((Path(function_app.__file__).parent / "host.json").read_text())
ROUTE_PREFIX = HOST_JSON["extensions"]["http"]["routePrefix"]
SETTINGS = {
    "FABRIC_INVOKE_QUEUE": "q",
    "FABRIC_AUDIT_SCHEDULE": "0 0 * * * *",
    "FABRIC_CHECKPOINT_SCHEDULE": "0 0 * * * *",
    "FABRIC_WARM_SCHEDULE": "0 0 * * * *",
    "FABRIC_FIRE_QUEUE": "f",
    "FABRIC_SCHEDULER_SCHEDULE": "* * * * * *",
    "FABRIC_REQUEST_SWEEP_SCHEDULE": "*/10 * * * * *",
}  # binding expressions of the non-HTTP triggers
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def declared_routes() -> set[tuple[str, str]]:
    """(path, method) of every HTTP trigger, route constraints stripped (``{sequence:int}`` -> ``{sequence}``)."""
    functions, errors = index(function_app.app, environ=SETTINGS)
    assert not errors
    routes = set()
    for fn in functions:
        if fn.kind != HTTP_TRIGGER:
            continue
        route = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", fn.trigger.get("route") or fn.name)
        for method in fn.trigger.get("methods") or METHODS:
            routes.add((f"/{ROUTE_PREFIX}/{route}", method.lower()))
    return routes


def documented_routes() -> set[tuple[str, str]]:
    return {(path, method) for path, item in document()["paths"].items() for method in item if method in METHODS}


def test_every_declared_route_is_documented_and_none_is_stale() -> None:
    declared, documented = declared_routes(), documented_routes()
    assert len(declared) >= 20
    assert declared - documented == set(), "routes missing from functions/openapi.py"
    assert documented - declared == set(), "stale paths in functions/openapi.py"


def test_document_is_valid_openapi_31() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_path_parameters_match_templates_and_errors_are_problems() -> None:
    for path, item in document()["paths"].items():
        templated = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert in_path == templated, f"{method.upper()} {path}: path parameters {in_path} != {templated}"
            for status, response in op["responses"].items():
                if int(status) >= 400 and not (path == "/api/health" and status == "503"):
                    assert set(response["content"]) == {"application/problem+json"}, f"{method} {path} {status}"


def test_anonymous_routes_match_auth_levels() -> None:
    functions, _ = index(function_app.app, environ=SETTINGS)
    anonymous = {
        f"/{ROUTE_PREFIX}/{fn.trigger.get('route')}"
        for fn in functions
        if fn.kind == HTTP_TRIGGER and str(fn.trigger.get("authLevel")).lower() == "anonymous"
    }
    documented = {
        path for path, item in document()["paths"].items() if all(op.get("security") == [] for op in item.values())
    }
    # webhooks are authenticated by their HMAC, not by a function key (docs/events.md)
    assert (
        anonymous == documented == {"/api/health", "/api/ping", "/api/openapi.json", "/api/webhooks/{subscription_id}"}
    )
