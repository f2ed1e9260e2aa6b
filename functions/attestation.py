"""The host's attestation identity: which evidence its regions carry and which key signs it."""

import azure.functions as func

from functions.host import get_host
from functions.http import Blueprint, handle_errors, json_response

bp = Blueprint()


@bp.route(route="attestation", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def attestation(req: func.HttpRequest) -> func.HttpResponse:
    """``{"provider", "evidence_kind", "software", "debug", "platform_key"}``."""
    return json_response(get_host().operations.attestation())
