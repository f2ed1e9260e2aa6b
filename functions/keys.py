"""Key lifecycle of registered cryptlets: /api/cryptlets/{name}/keys/... and retirement."""

import azure.functions as func

from functions import models
from functions.host import get_host
from functions.http import MAX_SEQUENCE, Blueprint, handle_errors, int_param, json_body, json_response

bp = Blueprint()


def _optional_body(req: func.HttpRequest) -> object:
    return json_body(req) if req.get_body() else {}


@bp.route(route="cryptlets/{name}/keys/rotate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def rotate_key(req: func.HttpRequest) -> func.HttpResponse:
    """New key generated inside a region; the old one is superseded (or revoked, with ``revoke``)."""
    return json_response(get_host().keys.rotate(req.route_params["name"], models.rotation(_optional_body(req))))


@bp.route(route="cryptlets/{name}/keys/revoke", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def revoke_key(req: func.HttpRequest) -> func.HttpResponse:
    """Revoke a key (``address``, default the current one, which is then rotated), ``reason``, ``invalid_after``."""
    return json_response(get_host().keys.revoke(req.route_params["name"], models.revoke_request(_optional_body(req))))


@bp.route(route="cryptlets/{name}/keys", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def list_keys(req: func.HttpRequest) -> func.HttpResponse:
    """Every key the cryptlet has had, or with ``?at=N`` the key that was valid at ledger entry N."""
    name = req.route_params["name"]
    keys = get_host().keys
    at = int_param(req, "at", None, 1, MAX_SEQUENCE)
    if at is None:
        return json_response({"name": name, "keys": [k.to_dict() for k in keys.keys_of(name)]})
    return json_response({"name": name, "at": at, "key": keys.key_at(name, at).to_dict()})


@bp.route(route="cryptlets/{name}/retire", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def retire_cryptlet(req: func.HttpRequest) -> func.HttpResponse:
    """Retire the cryptlet: every key ends, its regions stop, the name may be registered again."""
    return json_response(get_host().keys.retire(req.route_params["name"], models.retirement_note(_optional_body(req))))
