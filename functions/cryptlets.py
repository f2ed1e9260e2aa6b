"""Registration and invocation: /api/cryptlets."""

import logging

import azure.functions as func

from functions import models
from functions.host import get_host
from functions.http import Blueprint, document_response, handle_errors, json_body, json_response
from shared.settings import declared_int

bp = Blueprint()


@bp.route(
    route="cryptlets",
    methods=["POST"],
    auth_level=func.AuthLevel.FUNCTION,
    trigger_extra_fields={
        "max_body_bytes": max(declared_int("FABRIC_MAX_PACKAGE_BYTES"), declared_int("FABRIC_MAX_BODY_BYTES"))
    },
)
@handle_errors
def register_cryptlet(req: func.HttpRequest) -> func.HttpResponse:
    """JSON ``{"package": NAME}`` registers a folder of the host; an ``application/zip`` body uploads one
    (at most ``FABRIC_MAX_PACKAGE_BYTES``; JSON at most ``FABRIC_MAX_BODY_BYTES``)."""
    if req.headers.get("content-type", "").split(";")[0].strip().lower() == "application/zip":
        registration = get_host().registrations.register_upload(req.get_body())  # checks its size itself
    else:
        registration = get_host().registrations.register(models.registration_package(json_body(req)))
    return json_response(registration.to_dict(), 201, {"Location": f"/api/cryptlets/{registration.name}"})


@bp.route(route="cryptlets", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def list_cryptlets(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"cryptlets": [r.to_dict() for r in get_host().registrations.list()]})


@bp.route(route="cryptlets/{name}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_cryptlet(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_host().registrations.describe(req.route_params["name"]))


@bp.route(route="cryptlets/{name}/state", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_cryptlet_state(req: func.HttpRequest) -> func.HttpResponse:
    """A contract cryptlet's stored state snapshot, version and hash."""
    return json_response(get_host().invocations.state(req.route_params["name"]))


@bp.timer_trigger(schedule="%FABRIC_WARM_SCHEDULE%", arg_name="timer", run_on_startup=True)
def keep_warm(timer: func.TimerRequest) -> None:
    """Start the warm regions each cryptlet's effective min_instances asks for (regions retire and hosts restart)."""
    host = get_host()
    started = host.pools.warm(host.registry.list())
    if any(started.values()):
        logging.getLogger("fabric").info("warm regions started: %s", started)


@bp.route(route="cryptlets/{name}/invoke", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def invoke_cryptlet(req: func.HttpRequest) -> func.HttpResponse:
    return document_response(get_host().invocations.invoke(req.route_params["name"], models.call(json_body(req))))
