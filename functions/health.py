"""GET /api/health: storage reachability and versions (anonymous)."""

import azure.functions as func

from functions.http import Blueprint, json_response
from shared.errors import FabricError

bp = Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    from functions.host import get_host
    from shared.host.operations import versions

    try:
        report = get_host().operations.health()
    except FabricError as exc:  # storage down at start-up: still answer, degraded
        report = {"status": "degraded", "storage": {"reachable": False, "error": exc.code}, "versions": versions()}
    return json_response(report, 200 if report["status"] == "ok" else 503)
