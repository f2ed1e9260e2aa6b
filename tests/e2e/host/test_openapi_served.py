"""The OpenAPI document served by the dev host (the document itself: tests/unit/test_openapi.py)."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from functions.openapi import document


def test_served_by_the_dev_host_without_a_key(fabric_host) -> None:
    with fabric_host.client(key=None) as client:
        response = client.get("/api/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == json.loads(json.dumps(document()))
        validate(response.json())
        ping = client.get("/api/ping")
        assert ping.status_code == 200 and ping.json() == {"status": "ok"}
        assert client.get("/api/cryptlets").status_code == 401
