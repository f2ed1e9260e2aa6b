"""Ledger queries and proofs (/api/ledger/...), and the ledger's audit and checkpoint timers."""

import logging

import azure.functions as func

from functions.host import get_host
from functions.http import MAX_SEQUENCE, Blueprint, handle_errors, int_param, json_response
from shared.errors import FabricError, InvalidInput, NotFound

bp = Blueprint()
log = logging.getLogger("host.ledger")
MAX_PAGE = 1000


@bp.route(route="ledger", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def ledger_head(req: func.HttpRequest) -> func.HttpResponse:
    """Head of the chain, the newest checkpoint and the key that signs checkpoints."""
    host = get_host()
    head = host.ledger.head()
    latest = host.ledger_index.latest()
    return json_response(
        {
            "stream": host.ledger.stream,
            "size": head.size,
            "head_hash": "0x" + head.entry_hash,
            "checkpoint": latest.to_dict() if latest else None,
            "public_key": host.ledger_index.public_key,
        }
    )


@bp.route(route="ledger/entries", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def ledger_entries(req: func.HttpRequest) -> func.HttpResponse:
    """A page of raw entries (``from``, ``limit``); clients verify the chain themselves."""
    start = int_param(req, "from", 1, 1, MAX_SEQUENCE)
    limit = int_param(req, "limit", 100, 1, MAX_PAGE)
    ledger = get_host().ledger
    return json_response({"stream": ledger.stream, "entries": [e.to_dict() for e in ledger.read(start, limit)]})


@bp.route(route="ledger/entries/{sequence:int}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def ledger_entry(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_host().ledger.get(int(req.route_params["sequence"])).to_dict())


@bp.route(route="ledger/entries/{sequence:int}/receipt", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def ledger_receipt(req: func.HttpRequest) -> func.HttpResponse:
    """The entry, its inclusion proof and the signed checkpoint the proof leads to."""
    return json_response(get_host().ledger_index.receipt(int(req.route_params["sequence"])).to_dict())


@bp.route(route="ledger/checkpoint", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def latest_checkpoint(req: func.HttpRequest) -> func.HttpResponse:
    index = get_host().ledger_index
    latest = index.latest()
    if latest is None:
        raise NotFound("no checkpoint was issued yet: POST /api/ledger/checkpoints makes one", field="checkpoint")
    return json_response(latest.to_dict())


@bp.route(route="ledger/checkpoints", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def make_checkpoint(req: func.HttpRequest) -> func.HttpResponse:
    """Sign and store a checkpoint of the current head (200 with the existing one if it is current)."""
    stored, created = get_host().ledger_index.checkpoint()
    return json_response(stored.to_dict(), 201 if created else 200)


@bp.route(route="ledger/checkpoints/{size:int}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def checkpoint_at(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_host().ledger_index.at(int(req.route_params["size"])).to_dict())


@bp.route(route="ledger/consistency", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def consistency(req: func.HttpRequest) -> func.HttpResponse:
    """Consistency proof from size ``from`` to size ``to`` (default: the newest checkpoint)."""
    size1 = int_param(req, "from", None, 0, MAX_SEQUENCE)
    if size1 is None:
        raise InvalidInput("from (the older tree size) is required", field="from")
    size2 = int_param(req, "to", None, 0, MAX_SEQUENCE)
    return json_response(get_host().ledger_index.consistency(size1, size2).to_dict())


@bp.route(route="ledger/keys/{address}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def key_status(req: func.HttpRequest) -> func.HttpResponse:
    """A key's life (established, superseded, revoked, retired) with the entries that say so."""
    return json_response(get_host().keys.key_entries(req.route_params["address"]))


@bp.timer_trigger(schedule="%FABRIC_AUDIT_SCHEDULE%", arg_name="timer", run_on_startup=False)
def ledger_audit(timer: func.TimerRequest) -> None:
    """Walk the whole chain and every stored checkpoint on a schedule; log the first problem."""
    from shared.ledger.audit import audit

    host = get_host()
    try:
        report = audit(host.ledger, host.ledger_index.store, host.ledger_index.signer.verifier)
        log.info("ledger audit: %s", report.summary(host.ledger.stream))
    except FabricError as exc:
        log.error("ledger audit FAILED: %s", exc.diagnostics())


@bp.timer_trigger(schedule="%FABRIC_CHECKPOINT_SCHEDULE%", arg_name="timer", run_on_startup=False)
def ledger_checkpoint(timer: func.TimerRequest) -> None:
    """Sign and store a checkpoint when the ledger grew since the last one."""
    try:
        stored, created = get_host().ledger_index.checkpoint()
        if created:
            log.info("ledger checkpoint: %d entries, root %s", stored.checkpoint.size, stored.checkpoint.root.hex())
    except FabricError as exc:
        log.error("ledger checkpoint FAILED: %s", exc.diagnostics())
