"""Per-cryptlet policy: /api/cryptlets/{name}/policy (set: admin key; read: function key)."""

import azure.functions as func

from functions import models
from functions.host import get_host
from functions.http import Blueprint, handle_errors, json_body, json_response

bp = Blueprint()


@bp.route(route="cryptlets/{name}/policy", methods=["PUT"], auth_level=func.AuthLevel.ADMIN)
@handle_errors
def set_policy(req: func.HttpRequest) -> func.HttpResponse:
    """Replace the cryptlet's policy (overrides its manifest); recorded as a ``policy.set`` ledger entry."""
    return json_response(get_host().policies.set(req.route_params["name"], models.policy(json_body(req))))


@bp.route(route="cryptlets/{name}/policy", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_policy(req: func.HttpRequest) -> func.HttpResponse:
    """Manifest settings, the policy and the effective settings."""
    return json_response(get_host().policies.get(req.route_params["name"]))
