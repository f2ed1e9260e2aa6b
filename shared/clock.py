"""The host's clock: unix milliseconds and ISO-8601 UTC timestamps, defined once."""

from __future__ import annotations

import datetime as dt
import time


def now_ms() -> int:
    """Unix time in whole milliseconds."""
    return time.time_ns() // 1_000_000


def now_us() -> int:
    """Unix time in whole microseconds (where envelope sequence numbers start)."""
    return time.time_ns() // 1_000


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds and ``Z`` (the ledger's time format)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
