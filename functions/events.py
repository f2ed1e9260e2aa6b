"""Event engine triggers: the scheduler tick (timer), the fire worker (queue), webhooks, dead letters
and delivery history (HTTP). Parse -> shared.events.engine -> shape; docs/events.md.

``POST /api/webhooks/{subscription_id}`` is anonymous at the Functions level on purpose: the
external application calling it (a CRM, say) holds only the subscription's webhook secret, and the
HMAC over timestamp and body (checked before anything is parsed or stored) authenticates it.
"""

import logging

import azure.functions as func

from functions.host import get_host
from functions.http import MAX_SEQUENCE, Blueprint, handle_errors, int_param, json_response
from shared.limits import MAX_WEBHOOK_BYTES

bp = Blueprint()
log = logging.getLogger("fabric.events")


@bp.timer_trigger(schedule="%FABRIC_SCHEDULER_SCHEDULE%", arg_name="timer", run_on_startup=False)
def scheduler_tick(timer: func.TimerRequest) -> None:
    """Claim and enqueue the fires due within the next 2 s; observe; expire."""
    counts = get_host().events.tick()
    if counts.get("fires") or counts.get("expired"):
        log.debug("scheduler tick: %s", counts)


@bp.queue_trigger(arg_name="message", queue_name="%FABRIC_FIRE_QUEUE%", connection="AzureWebJobsStorage")
def run_fire(message: func.QueueMessage) -> None:
    """Invoke (once per subscription and sequence) and deliver one fire; raising makes the queue retry it."""
    get_host().events.run_fire(message.get_body(), message.dequeue_count or 1)


@bp.route(
    route="webhooks/{subscription_id}",
    methods=["POST"],
    auth_level=func.AuthLevel.ANONYMOUS,
    trigger_extra_fields={"max_body_bytes": MAX_WEBHOOK_BYTES},
)
@handle_errors
def webhook(req: func.HttpRequest) -> func.HttpResponse:
    """HMAC-authenticated webhook call -> 202 with the fire's sequence; 401 problem if the HMAC is bad."""
    accepted = get_host().events.webhook(
        req.route_params["subscription_id"], req.headers.get("X-Webhook-Signature"), req.get_body()
    )
    return json_response(accepted, 202)


@bp.route(route="deadletters", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def deadletters(req: func.HttpRequest) -> func.HttpResponse:
    """The fire queue's poison messages (peeked, at most 32) with their fire and history status."""
    return json_response(get_host().events.deadletters())


@bp.route(route="subscriptions/{id}/history", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def history(req: func.HttpRequest) -> func.HttpResponse:
    """Recorded deliveries of one subscription in sequence order (``from`` sequence, ``limit`` 1..1000)."""
    start = int_param(req, "from", 0, 0, MAX_SEQUENCE)
    limit = int_param(req, "limit", 100, 1, 1000)
    return json_response(get_host().events.list_history(req.route_params["id"], start, limit))
