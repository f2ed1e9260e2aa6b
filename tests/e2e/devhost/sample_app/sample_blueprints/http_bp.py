"""HTTP functions: routes with parameters and constraints, auth levels, errors, outputs."""

import asyncio
import json
import time

import azure.functions as func

bp = func.Blueprint()


def _json(value: object, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(value), status_code=status, headers=headers, mimetype="application/json")


@bp.route(route="hello/{name?}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name") or req.params.get("name") or "world"
    return func.HttpResponse(f"Hello, {name}!")


@bp.route(route="items/{id:int}", methods=["GET"])
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"by": "id", "id": int(req.route_params["id"])})


@bp.route(route="items/{name:alpha}", methods=["GET"])
def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"by": "name", "name": req.route_params["name"]})


@bp.route(route="items", methods=["POST"], trigger_extra_fields={"max_body_bytes": 256})  # maxBodyBytes
def create_item(req: func.HttpRequest) -> func.HttpResponse:
    item = req.get_json()
    return _json({"created": item}, status=201, headers={"Location": f"/api/items/{item['id']}"})


@bp.route(route="echo/{*rest}", methods=["GET", "POST", "PUT"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return _json(
        {
            "method": req.method,
            "url": req.url,
            "params": dict(req.params),
            "route_params": dict(req.route_params),
            "x_custom": req.headers.get("X-Custom"),
            "body": req.get_body().decode(),
        }
    )


@bp.route(route="text", methods=["GET"])
def text(req: func.HttpRequest) -> str:
    return "plain string result"


@bp.route(route="secret", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def secret(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("function ok")


@bp.route(route="adminonly", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@bp.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom-internal-detail")


@bp.route(route="sleep/sync/{ms:int}", methods=["GET"])
def sleep_sync(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(int(req.route_params["ms"]) / 1000)
    return func.HttpResponse("slept")


@bp.route(route="sleep/async/{ms:int}", methods=["GET"])
async def sleep_async(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(int(req.route_params["ms"]) / 1000)
    return func.HttpResponse("slept")


@bp.route(route="context", methods=["GET"])
def context_info(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _json({"function_name": context.function_name, "invocation_id": context.invocation_id})


@bp.route(route="enqueue", methods=["POST"])
@bp.queue_output(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, msg: func.Out[str]) -> func.HttpResponse:
    msg.set(req.get_body().decode())
    return func.HttpResponse("queued", status_code=202)
