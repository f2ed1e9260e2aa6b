"""Asynchronous invocations: POST /api/cryptlets/{name}/requests enqueues, a queue trigger runs it,
GET /api/requests/{request_id} reports the status and the signed envelope,
GET /api/requests/{request_id}/progress how far the call has come (the cryptlet's progress reports)."""

import logging

import azure.functions as func

from functions import models
from functions.host import get_host
from functions.http import Blueprint, handle_errors, json_body, json_response

bp = Blueprint()
log = logging.getLogger("fabric.requests")


@bp.route(route="cryptlets/{name}/requests", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.queue_output(arg_name="queue", queue_name="%FABRIC_INVOKE_QUEUE%", connection="AzureWebJobsStorage")
@handle_errors
def request_invocation(req: func.HttpRequest, queue: func.Out[str]) -> func.HttpResponse:
    body = json_body(req)
    request = get_host().queued.accept(req.route_params["name"], models.call(body), models.deadline(body))
    queue.set(request.to_message())
    location = f"/api/requests/{request.request_id}"
    return json_response(
        {"request_id": request.request_id, "status": "pending", "location": location}, 202, {"Location": location}
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
