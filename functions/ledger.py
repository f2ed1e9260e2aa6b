"""Ledger queries (/api/ledger/...) and the periodic ledger audit timer."""

import logging

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.errors import FabricError, InvalidInput
from shared.fabric import get_fabric

bp = func.Blueprint()
log = logging.getLogger("fabric.ledger")
MAX_PAGE = 1000


def _int_param(req: func.HttpRequest, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = req.params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", field=name) from None
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}", field=name)
    return value


@bp.route(route="ledger", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def ledger_head(req: func.HttpRequest) -> func.HttpResponse:
    ledger = get_fabric().ledger
    head = ledger.head()
    return json_response({"stream": ledger.stream, "size": head.size, "head_hash": "0x" + head.entry_hash})


@bp.route(route="ledger/entries", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def ledger_entries(req: func.HttpRequest) -> func.HttpResponse:
    """A page of raw entries (``from``, ``limit``); clients verify the chain themselves."""
    start = _int_param(req, "from", 1, 1, 2**62)
    limit = _int_param(req, "limit", 100, 1, MAX_PAGE)
    ledger = get_fabric().ledger
    return json_response({"stream": ledger.stream, "entries": [e.to_dict() for e in ledger.read(start, limit)]})


@bp.route(route="ledger/entries/{sequence:int}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def ledger_entry(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_fabric().ledger.get(int(req.route_params["sequence"])).to_dict())


@bp.timer_trigger(schedule="%FABRIC_AUDIT_SCHEDULE%", arg_name="timer", run_on_startup=False)
def ledger_audit(timer: func.TimerRequest) -> None:
    """Walk the whole chain on a schedule and log the first broken entry, if any."""
    try:
        head = get_fabric().ledger.verify()
        log.info("ledger audit: %d entries verified, head %s", head.size, head.entry_hash)
    except FabricError as exc:
        log.error("ledger audit FAILED: %s", exc.diagnostics())
