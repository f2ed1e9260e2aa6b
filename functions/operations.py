"""Anonymous operational routes: GET /api/ping (liveness, touches nothing) and GET /api/openapi.json."""

import azure.functions as func

from functions.http import Blueprint
from functions.openapi import document_json

bp = Blueprint()
_PONG = b'{"status":"ok"}'


@bp.route(route="ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ping(req: func.HttpRequest) -> func.HttpResponse:
    """A constant answer: the host and the worker are alive (no storage, no regions)."""
    return func.HttpResponse(_PONG, status_code=200, mimetype="application/json")


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 document of the whole HTTP API."""
    return func.HttpResponse(document_json(), status_code=200, mimetype="application/json")
