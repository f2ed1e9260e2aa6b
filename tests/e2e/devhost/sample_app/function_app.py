"""Sample function app for the dev host tests: HTTP, timer and queue triggers via blueprints."""

import atexit
import os
from pathlib import Path

import azure.functions as func
from sample_blueprints.http_bp import bp as http_bp
from sample_blueprints.queue_bp import bp as queue_bp
from sample_blueprints.timer_bp import bp as timer_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_bp)
app.register_functions(timer_bp)
app.register_functions(queue_bp)


@app.route(methods=["GET"])
def ping(req: func.HttpRequest) -> func.HttpResponse:
    """No route given: served at /api/ping."""
    return func.HttpResponse("pong")


def _at_exit() -> None:
    marker = os.environ.get("ATEXIT_MARKER")
    if marker:
        Path(marker).write_text("atexit ran")


atexit.register(_at_exit)
