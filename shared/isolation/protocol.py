"""The container protocol between host and region: one JSON object per line.

Call-in (the paper's ``IsolatedRegionCallIn``):

- host -> region: ``{"id": n, "op": "<operation>", ...parameters}``
- region -> host: ``{"id": n, "ok": true, "result": {...}}`` or
  ``{"id": n, "ok": false, "error": {"code": "...", "message": "..."}}``

Call-out (the paper's ``CALL_OUT_HANDLER``): while the host waits for the reply to call-in
``n``, the region may send any number of requests to the host, each answered before the region
continues:

- region -> host: ``{"callout": k, "op": "<call-out>", ...parameters}``
- host -> region: ``{"callout": k, "ok": true, "result": {...}}`` or ``{"callout": k, "ok": false,
  "error": {...}}``

Operations: ``load`` (measure and import the package), ``generate_key``, ``unseal``, ``bind``,
``report``, ``invoke``, ``shutdown``. Call-outs: see :mod:`shared.isolation.callout`. Lines are
UTF-8 and at most :data:`MAX_LINE` bytes; anything else on the stream (a reply out of order,
garbage, an over-long line) is a protocol violation and the host kills the region.
"""

from __future__ import annotations

import json
from typing import Any

from shared.encoding import parse_json

MAX_LINE = 4 * 1024 * 1024
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # built once, not per message


def encode(message: dict[str, Any]) -> bytes:
    return _ENCODER.encode(message).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one protocol line; raise ``ValueError`` when it is not a JSON object."""
    message = parse_json(line)
    if not isinstance(message, dict):
        raise ValueError("protocol message is not a JSON object")
    return message


def is_callout(message: dict[str, Any]) -> bool:
    """Whether a region -> host message is a call-out request (rather than a call-in reply)."""
    return "callout" in message and "id" not in message
