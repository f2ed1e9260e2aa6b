"""The parts of ``host.json`` the dev host honours.

Keys are matched case-insensitively, as the Functions host (.NET configuration) does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.errors import DevHostError
from devhost.settings import parse_timespan


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` (Storage queues extension v5 defaults)."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0  # seconds before a failed message is visible again
    max_polling_interval: float = 60.0  # seconds; upper bound of the idle back-off
    message_encoding: str = "base64"  # "base64" or "none"


@dataclass(frozen=True)
class HostConfig:
    """``host.json``: HTTP route prefix, queue options and the optional ``functions`` allow-list."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    functions: tuple[str, ...] | None = None

    @classmethod
    def load(cls, app_dir: Path) -> HostConfig:
        """Read ``app_dir/host.json`` (defaults if the file is missing)."""
        path = app_dir / "host.json"
        if not path.is_file():
            return cls()
        try:
            data = _lower_keys(json.loads(path.read_text(encoding="utf-8-sig")))
        except ValueError as exc:
            raise DevHostError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostConfig:
        """Build from an already parsed ``host.json`` whose keys are lower case."""
        extensions = data.get("extensions") or {}
        http = extensions.get("http") or {}
        prefix = http.get("routeprefix", "api")
        functions = data.get("functions")
        return cls(
            route_prefix=str(prefix if prefix is not None else "api").strip("/"),
            queues=_queue_options(extensions.get("queues") or {}),
            functions=tuple(functions) if functions is not None else None,
        )


def _queue_options(raw: dict[str, Any]) -> QueueOptions:
    defaults = QueueOptions()
    encoding = str(raw.get("messageencoding", defaults.message_encoding)).lower()
    if encoding not in ("base64", "none"):
        raise DevHostError(f"host.json extensions.queues.messageEncoding must be base64 or none, not {encoding!r}")
    batch_size = int(raw.get("batchsize", defaults.batch_size))
    if not 1 <= batch_size <= 32:
        raise DevHostError(f"host.json extensions.queues.batchSize must be 1..32, not {batch_size}")
    max_dequeue = int(raw.get("maxdequeuecount", defaults.max_dequeue_count))
    if max_dequeue < 1:
        raise DevHostError("host.json extensions.queues.maxDequeueCount must be at least 1")
    return QueueOptions(
        batch_size=batch_size,
        max_dequeue_count=max_dequeue,
        visibility_timeout=parse_timespan(raw.get("visibilitytimeout", "00:00:00")),
        # Numbers are milliseconds, as in the v1 host.json schema.
        max_polling_interval=parse_timespan(raw.get("maxpollinginterval", "00:01:00"), default_unit=0.001),
        message_encoding=encoding,
    )


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value
