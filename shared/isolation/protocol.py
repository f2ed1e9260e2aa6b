"""The container protocol between host and region: one JSON object per line.

Host -> region: ``{"id": n, "op": "<operation>", ...parameters}``.
Region -> host: ``{"id": n, "ok": true, "result": {...}}`` or
``{"id": n, "ok": false, "error": {"code": "...", "message": "..."}}``.

Operations: ``load`` (measure and import the package), ``generate_key``, ``unseal``,
``invoke``, ``shutdown``. Lines are UTF-8 and at most :data:`MAX_LINE` bytes; anything else
on the stream is a protocol violation and the host kills the region.
"""
from __future__ import annotations

import json
from typing import Any

MAX_LINE = 4 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one protocol line; raise ``ValueError`` when it is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("protocol message is not a JSON object")
    return message
