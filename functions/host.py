"""The one :class:`~shared.host.composition.Host` of this worker process, built from the app settings on
first use and closed at exit. Blueprints call :func:`get_host`; the core never does."""

from __future__ import annotations

import atexit
import threading

from shared.host.composition import Host, build_host
from shared.settings import Settings

_host: Host | None = None
_lock = threading.Lock()


def get_host() -> Host:
    """The process-wide host, created from the environment on first use."""
    global _host
    with _lock:
        if _host is None:
            _host = build_host(Settings.from_env())
            atexit.register(_host.close)
        return _host
