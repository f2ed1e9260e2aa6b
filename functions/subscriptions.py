"""Subscribers and subscriptions: /api/subscribers (register: admin key), /api/subscriptions (signed
subscriber requests, header ``X-Subscriber-Signature``; docs/events.md)."""

import azure.functions as func

from functions import models
from functions.host import get_host
from functions.http import Blueprint, body_bytes, handle_errors, json_body, json_response
from shared.clock import now_ms
from shared.events.subscribers import HEADER

bp = Blueprint()


@bp.route(route="subscribers", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
@handle_errors
def register_subscriber(req: func.HttpRequest) -> func.HttpResponse:
    """Register a subscriber with its secp256k1 public key -> 201 with its address."""
    subscriber = get_host().subscriptions.register_subscriber(*models.new_subscriber(json_body(req)), now_ms=now_ms())
    return json_response(subscriber, status=201)


@bp.route(route="subscribers", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def list_subscribers(req: func.HttpRequest) -> func.HttpResponse:
    """Registered subscribers: name, address, public key."""
    return json_response(get_host().subscriptions.list_subscribers())


@bp.route(route="subscriptions", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def create_subscription(req: func.HttpRequest) -> func.HttpResponse:
    """A signed ``subscribe`` request -> 201 with the subscription (and a webhook secret, shown once)."""
    created = get_host().subscriptions.subscribe(body_bytes(req), req.headers.get(HEADER), now_ms=now_ms())
    return json_response(
        created, status=201, headers={"Location": f"/api/subscriptions/{created['subscription']['id']}"}
    )


@bp.route(route="subscriptions", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def list_subscriptions(req: func.HttpRequest) -> func.HttpResponse:
    """Subscriptions, optionally of one ``subscriber`` and/or in one ``status``."""
    return json_response(
        get_host().subscriptions.list(subscriber=req.params.get("subscriber"), status=req.params.get("status"))
    )


@bp.route(route="subscriptions/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_subscription(req: func.HttpRequest) -> func.HttpResponse:
    """One subscription (never its sealed webhook secret)."""
    return json_response(get_host().subscriptions.get(req.route_params["id"]))


@bp.route(route="subscriptions/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def cancel_subscription(req: func.HttpRequest) -> func.HttpResponse:
    """A signed ``cancel`` request by the subscription's own subscriber -> the cancelled subscription."""
    return json_response(
        get_host().subscriptions.cancel(
            req.route_params["id"], body_bytes(req), req.headers.get(HEADER), now_ms=now_ms()
        )
    )
