"""A queue function: writes a marker per good message, fails on 'bad...', forwards to OUT_QUEUE."""

import json
import os
from pathlib import Path

import azure.functions as func

bp = func.Blueprint()


@bp.queue_trigger(arg_name="message", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
@bp.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
def work(message: func.QueueMessage, out: func.Out[str]) -> None:
    body = message.get_body().decode()
    if body.startswith("bad"):
        raise ValueError(f"cannot process {body}")
    marker = Path(os.environ["MARKER_DIR"]) / f"{body}.json"
    marker.write_text(
        json.dumps(
            {"id": message.id, "dequeue_count": message.dequeue_count, "inserted": message.insertion_time.isoformat()}
        )
    )
    out.set(f"done:{body}")
