"""Call-outs: code inside a region asking its host for something (the paper's ``CALL_OUT_HANDLER``).

A region has no other way out: in the ``process`` provider it has no network (own network
namespace when the host runs as root), no host environment and no host files; what it may ask
for is what the host's call-out handler answers. Messages ride the container protocol
(:mod:`shared.isolation.protocol`), interleaved with call-in replies.

Host side: a :data:`CallOutHandler` is ``handler(op, params) -> result`` and is given to
``IsolationProvider.create_region``; :class:`HostCallOuts` is the default (``log`` and ``time``).
Raising a :class:`~shared.errors.FabricError` refuses the call-out with its ``code``; any other
exception is logged on the host and reported to the region as ``host_error``.

Region side: the container installs a module named ``fabric_host`` for cryptlet code::

    import fabric_host
    fabric_host.log("fetched 3 quotes")            # host log, tagged with the cryptlet name
    fabric_host.now_ms()                           # the host's clock (unix ms)
    fabric_host.call("time")                       # any call-out by name -> result dict
"""
from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Callable
from typing import Any, BinaryIO

from shared.errors import InvalidInput
from shared.isolation import protocol

CallOutHandler = Callable[[str, dict[str, Any]], dict[str, Any]]

MAX_LOG_CHARS = 4000
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class HostCallOuts:
    """The default call-out handler: ``log`` (to the host log) and ``time`` (the host clock)."""

    def __init__(self, name: str, logger: logging.Logger | None = None) -> None:
        self.name = name
        self.logger = logger or logging.getLogger("fabric.region")

    def __call__(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        if op == "log":
            level = LOG_LEVELS.get(str(params.get("level", "info")))
            message = params.get("message")
            if level is None or not isinstance(message, str):
                raise InvalidInput("log takes a message string and a level of debug/info/warning/error",
                                   field="message")
            if len(message) > MAX_LOG_CHARS:
                message = message[:MAX_LOG_CHARS] + f"... ({len(message) - MAX_LOG_CHARS} more characters)"
            self.logger.log(level, "cryptlet %s: %s", self.name, message)
            return {}
        if op == "time":
            return {"unix_ms": time.time_ns() // 1_000_000}
        raise InvalidInput(f"unknown call-out {op!r}", field="op")


# -- region side -------------------------------------------------------------------------------
class CallOutError(Exception):
    """The host refused or failed a call-out (raised inside the region)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class HostChannel:
    """The region's end of the call-out channel: writes a request, reads the host's answer."""

    def __init__(self, reader: BinaryIO, writer: Callable[[bytes], None]) -> None:
        self._reader = reader
        self._write = writer
        self._ids = 0
        self._lock = threading.Lock()

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        with self._lock:
            self._ids += 1
            self._write(protocol.encode({"callout": self._ids, "op": op, **params}))
            line = self._reader.readline(protocol.MAX_LINE + 1)
            if not line:
                raise CallOutError("closed", "the host closed the channel")
            reply = protocol.decode(line)
            if reply.get("callout") != self._ids:
                raise CallOutError("protocol", "the host answered another call-out")
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise CallOutError(str(error.get("code", "refused")), str(error.get("message", "call-out refused")))
        return reply.get("result") or {}


def host_module(channel: HostChannel) -> types.ModuleType:
    """The ``fabric_host`` module cryptlet code imports inside a region."""
    module = types.ModuleType("fabric_host", "Call-outs from a cryptlet to its host (log, time, ...).")

    def log(message: str, level: str = "info") -> None:
        """Write ``message`` to the host log (levels: debug, info, warning, error)."""
        channel.call("log", message=str(message), level=level)

    def now_ms() -> int:
        """The host's clock, in unix milliseconds."""
        return int(channel.call("time")["unix_ms"])

    module.call = channel.call
    module.log = log
    module.now_ms = now_ms
    module.CallOutError = CallOutError
    return module
