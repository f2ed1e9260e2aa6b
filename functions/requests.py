"""Asynchronous invocations: POST /api/cryptlets/{name}/requests enqueues, a queue trigger runs it,
GET /api/requests/{request_id} reports the status and the signed envelope,
GET /api/requests/{request_id}/progress how far the call has come (the cryptlet's progress reports).

A request id is accepted once: a second POST of it answers the existing request (200) or 409, and
is never enqueued again. A timer (``FABRIC_REQUEST_SWEEP_SCHEDULE``) re-enqueues requests whose
worker died (docs/requests.md)."""

import logging
import typing

import azure.functions as func

from functions import models
from functions.host import get_host
from functions.http import Blueprint, handle_errors, json_body, json_response
from shared.errors import FabricError

bp = Blueprint()
log = logging.getLogger("fabric.requests")


@bp.route(route="cryptlets/{name}/requests", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.queue_output(arg_name="queue", queue_name="%FABRIC_INVOKE_QUEUE%", connection="AzureWebJobsStorage")
@handle_errors
def request_invocation(req: func.HttpRequest, queue: func.Out[str]) -> func.HttpResponse:
    body = json_body(req)
    accepted = get_host().queued.accept(req.route_params["name"], models.call(body), models.deadline(body))
    location = f"/api/requests/{accepted.request.request_id}"
    if accepted.existing is not None:  # a request id seen before: its status, never a second run
        return json_response({**accepted.existing, "location": location}, 200, {"Location": location})
    queue.set(accepted.request.to_message())
    return json_response(
        {"request_id": accepted.request.request_id, "status": "pending", "location": location},
        202,
        {"Location": location},
    )


@bp.route(route="requests/{request_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_request(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_host().queued.status(req.route_params["request_id"]))


@bp.route(route="requests/{request_id}/progress", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_request_progress(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_host().queued.progress(req.route_params["request_id"]))


@bp.queue_trigger(arg_name="message", queue_name="%FABRIC_INVOKE_QUEUE%", connection="AzureWebJobsStorage")
def run_queued_invocation(message: func.QueueMessage) -> None:
    get_host().queued.run(message.get_body())


@bp.timer_trigger(schedule="%FABRIC_REQUEST_SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False)
@bp.queue_output(arg_name="queue", queue_name="%FABRIC_INVOKE_QUEUE%", connection="AzureWebJobsStorage")
def sweep_requests(timer: func.TimerRequest, queue: func.Out[typing.List[str]]) -> None:  # noqa: UP006
    """Re-enqueue requests whose worker's lease ran out (its host died) or whose message was lost;
    expire or fail those that must not run again. (The Functions library accepts ``typing.List``
    here, not ``list``.)"""
    try:
        messages = get_host().queued.sweep()
    except FabricError as exc:  # storage down: the next sweep tries again
        log.warning("request sweep failed: %s", exc.diagnostics())
        return
    except Exception:
        log.exception("request sweep failed")
        return
    if messages:
        queue.set(messages)
