"""What regions print reaches the host log only through here: escaped, prefixed, rate- and size-limited.

A region never writes to the host's stderr. Each region's stderr (so also what its cryptlet prints,
and what an ``exec`` program writes to stderr) is its own pipe; :class:`RegionOutput` (one per
provider) reads every region's pipe on one thread and hands each line to :mod:`logging`:

- a line longer than :data:`MAX_LINE` bytes is cut there (``... (N more bytes)``);
- every byte that is not printable is escaped (``\\x1b``, ``\\x0d``, ``\\u2028``; a backslash becomes
  ``\\\\``), so a region cannot end a log line, start a forged one or send terminal escapes;
- each line is logged as ``cryptlet NAME[PID]: TEXT`` on the ``fabric.region`` logger, after the host's
  own prefix: a region's text never starts a line of the host log;
- output is metered per cryptlet (:data:`RATE` bytes a second, bursts of :data:`BURST`) and for all
  regions together (:data:`TOTAL_RATE`); each line costs its length plus :data:`LINE_COST`. What is
  over is read and dropped (a region never blocks on it); a warning counts what was dropped, at
  most every :data:`NOTICE_EVERY_S` per cryptlet and when its region ends.

``fabric_host.log`` call-outs spend the same budget (:meth:`RegionOutput.limit_callouts`).
Writing to a pipe is not bounded by ``RLIMIT_FSIZE``, so the size of the host's log file no longer
matters to regions.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: ``(op, params) -> result``: a call-out handler (:data:`shared.isolation.callout.CallOutHandler`).
CallOutHandler = Callable[[str, dict[str, Any]], dict[str, Any]]
RATE = 64 * 1024
BURST = 256 * 1024
TOTAL_RATE = 4 * RATE
MAX_LINE = 4096
#: What one line costs beyond its bytes (the host's prefix, the logging call): many tiny lines cost too.
LINE_COST = 96
#: Dropped output is counted in a notice at most this often per cryptlet (and when a region ends).
NOTICE_EVERY_S = 10.0
_READ = 65536
_MAX_BUDGETS = 1024

_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # all but printable ASCII other than the backslash


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (decoded with surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():  # printable non-ASCII: letters, symbols
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str | bytes) -> str:
    """``text`` with every non-printable character (and the backslash) escaped: one safe log line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    return _UNSAFE.sub(_escape_one, text)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def available(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens

    def spend(self, amount: float) -> None:
        self._tokens -= amount


@dataclass
class _Budget:
    """One cryptlet's output budget and what it dropped since the last notice."""

    bucket: TokenBucket
    dropped_lines: int = 0
    dropped_bytes: int = 0
    last_notice: float = 0.0


@dataclass(eq=False)
class OutputStream:
    """One region's stderr pipe as the reader sees it (the handle :meth:`RegionOutput.attach` returns)."""

    fd: int
    label: str
    pid: int
    line: bytearray = field(default_factory=bytearray)
    #: bytes of the current line past MAX_LINE (the line is cut); -1: the line's start was dropped
    extra: int = 0
    reader: _Reader | None = None


class RegionOutput:
    """Reads regions' stderr pipes on one thread and logs them safely (see the module docstring)."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        rate: float = RATE,
        burst: float = BURST,
        total_rate: float = TOTAL_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger or logging.getLogger("fabric.region")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._total = TokenBucket(total_rate, 4 * burst, clock)
        self._budgets: dict[str, _Budget] = {}
        self._lock = threading.Lock()  # budgets (call-out threads and the reader), the reader
        self._reader: _Reader | None = None

    # -- budgets ------------------------------------------------------------------------------------
    def _budget(self, label: str) -> _Budget:
        budget = self._budgets.get(label)
        if budget is None:
            if len(self._budgets) >= _MAX_BUDGETS:  # a full bucket is the same as a fresh one: forget those
                for name in [n for n, b in self._budgets.items() if b.bucket.available() >= b.bucket.burst]:
                    if not (self._budgets[name].dropped_lines or self._budgets[name].dropped_bytes):
                        del self._budgets[name]
            bucket = TokenBucket(self.rate, self.burst, self._clock)
            budget = self._budgets[label] = _Budget(bucket, last_notice=self._clock())
        return budget

    def _admit(self, label: str, cost: int) -> bool:
        """Spend ``cost`` of ``label``'s budget and the total, or refuse (nothing spent)."""
        with self._lock:
            budget = self._budget(label)
            if budget.bucket.available() < cost or self._total.available() < cost:
                return False
            budget.bucket.spend(cost)
            self._total.spend(cost)
            return True

    def _dropped(self, label: str, lines: int, size: int, *, final: bool = False) -> None:
        """Count dropped output; log the count if NOTICE_EVERY_S passed since the last notice, or ``final``."""
        with self._lock:
            budget = self._budget(label)
            budget.dropped_lines += lines
            budget.dropped_bytes += size
            now = self._clock()
            if not (budget.dropped_bytes or budget.dropped_lines) or (
                not final and now - budget.last_notice < NOTICE_EVERY_S
            ):
                return
            lines, size = budget.dropped_lines, budget.dropped_bytes
            budget.dropped_lines = budget.dropped_bytes = 0
            budget.last_notice = now
        self.logger.warning(
            "cryptlet %s: %d line(s), %d bytes of its output dropped (over %d bytes/s)",
            label,
            lines,
            size,
            int(self.rate),
        )

    def pending_notices(self) -> bool:
        """Whether some dropped output is not yet counted in a notice."""
        with self._lock:
            return any(b.dropped_lines or b.dropped_bytes for b in self._budgets.values())

    def flush_notices(self) -> None:
        """Log the counts that are due (NOTICE_EVERY_S after the last notice of that cryptlet)."""
        with self._lock:
            labels = [n for n, b in self._budgets.items() if b.dropped_lines or b.dropped_bytes]
        for label in labels:
            self._dropped(label, 0, 0)

    def limit_callouts(self, handler: CallOutHandler | None, label: str) -> CallOutHandler | None:
        """``handler`` with its ``log`` call-outs metered on ``label``'s budget (over: dropped, counted)."""
        if handler is None:
            return None
        label = escape(label)

        def limited(op: str, params: dict[str, Any]) -> dict[str, Any]:
            if op == "log":
                message = params.get("message")
                cost = min(len(message), MAX_LINE) if isinstance(message, str) else 0
                if not self._admit(label, cost + LINE_COST):
                    self._dropped(label, 1, cost)
                    return {"dropped": True}
                self._dropped(label, 0, 0)  # the count of earlier drops, if one is due
            return handler(op, params)

        return limited

    # -- lines --------------------------------------------------------------------------------------
    def _feed(self, stream: OutputStream, data: bytes) -> None:
        """Split ``data`` into lines; log those the budget admits, drop (and count) the rest."""
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            piece = data[start:end]
            if stream.extra < 0:  # the start of this line was dropped: drop the rest of it too
                self._dropped(stream.label, 0, len(piece) + (newline >= 0))
            else:
                room = MAX_LINE - len(stream.line)
                stream.line += piece[:room]
                stream.extra += max(0, len(piece) - room)
            if newline < 0:
                return
            start = newline + 1
            if stream.extra >= 0 and not self._emit(stream):  # out of budget: drop the rest of this read
                rest = data[start:]
                lines = rest.count(b"\n")
                self._dropped(stream.label, lines, len(rest))
                if not rest.endswith(b"\n") and rest:
                    stream.extra = -1
                    self._dropped(stream.label, 1, 0)
                else:
                    stream.extra = 0
                return
            stream.line.clear()
            stream.extra = 0

    def _emit(self, stream: OutputStream) -> bool:
        """Log the current line if the budget admits it (else count it dropped); False: out of budget."""
        line = bytes(stream.line[:-1] if stream.line.endswith(b"\r") else stream.line)
        if not self._admit(stream.label, len(line) + LINE_COST):
            self._dropped(stream.label, 1, len(line) + stream.extra + 1)
            stream.line.clear()
            return False
        self._dropped(stream.label, 0, 0)  # the count of earlier drops first, if one is due
        text = escape(line)
        if stream.extra:
            text += f"... ({stream.extra} more bytes)"
        self.logger.info("cryptlet %s[%d]: %s", stream.label, stream.pid, text)
        return True

    def _finish(self, stream: OutputStream) -> None:
        """The region is gone: log a last unterminated line, the drop count, and close its pipe."""
        for _ in range(16):  # whatever it wrote before it went (bounded: a stray may still be writing)
            try:
                data = os.read(stream.fd, _READ)
            except OSError:
                break
            if not data:
                break
            self._feed(stream, data)
        if stream.line and stream.extra >= 0:
            self._emit(stream)
        self._dropped(stream.label, 0, 0, final=True)
        os.close(stream.fd)

    # -- the reader thread --------------------------------------------------------------------------
    def attach(self, fd: int, label: str, pid: int) -> OutputStream:
        """Read region ``pid``'s stderr pipe ``fd`` (taken over: closed at EOF or :meth:`release`);
        returns the handle for :meth:`release`."""
        os.set_blocking(fd, False)
        stream = OutputStream(fd, escape(label), pid)
        with self._lock:
            if self._reader is None:
                self._reader = _Reader(self)
            stream.reader = self._reader
        if not stream.reader.send("attach", stream):
            os.close(fd)
        return stream

    def release(self, handle: OutputStream) -> None:
        """The region of ``handle`` was stopped: log what is left in its pipe and close it."""
        if handle.reader is not None:
            handle.reader.send("release", handle)

    def close(self) -> None:
        """Log what is left in every pipe, close them and stop the reader thread (a later
        :meth:`attach` starts a new one)."""
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.send("stop", None)
            reader.thread.join(timeout=10)


class _Reader:
    """One thread reading every attached pipe (a selector), told what to do through a wake pipe."""

    def __init__(self, output: RegionOutput) -> None:
        self.output = output
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._commands: collections.deque[tuple[str, OutputStream | None]] = collections.deque()
        self._lock = threading.Lock()
        self._stopped = False
        self._streams: dict[int, OutputStream] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake[0], selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, name="region-output", daemon=True)
        self.thread.start()

    def send(self, command: str, stream: OutputStream | None) -> bool:
        """Queue ``command`` for the thread; False once it has stopped."""
        with self._lock:
            if self._stopped:
                return False
            self._commands.append((command, stream))
            try:
                os.write(self._wake[1], b"x")
            except BlockingIOError:  # the pipe is full of wake-ups already
                pass
            return True

    def _run(self) -> None:
        while True:
            ready = self._selector.select(timeout=1.0 if self.output.pending_notices() else None)
            self._safely(self.output.flush_notices)
            for key, _ in ready:
                fd = int(key.fd)
                if fd == self._wake[0]:
                    try:
                        while os.read(fd, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                try:
                    data = os.read(fd, _READ)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self._safely(self.output._feed, self._streams[fd], data)
                else:
                    self._drop(fd)
            while self._commands:
                command, stream = self._commands.popleft()
                if command == "attach" and stream is not None:
                    self._streams[stream.fd] = stream
                    self._selector.register(stream.fd, selectors.EVENT_READ)
                elif command == "release" and stream is not None:
                    if self._streams.get(stream.fd) is stream:  # not already gone (its fd maybe reused)
                        self._drop(stream.fd)
                elif command == "stop":
                    self._stop()
                    return

    def _stop(self) -> None:
        with self._lock:
            self._stopped = True
        for fd in list(self._streams):
            self._drop(fd)
        for command, stream in self._commands:  # attached after the stop was queued: nobody reads them
            if command == "attach" and stream is not None:
                os.close(stream.fd)
        self._selector.close()
        for fd in self._wake:
            os.close(fd)

    def _drop(self, fd: int) -> None:
        self._selector.unregister(fd)
        self._safely(self.output._finish, self._streams.pop(fd))

    def _safely(self, action: Callable[..., None], *args: Any) -> None:
        try:
            action(*args)
        except Exception:  # never let one region's output stop the reader
            self.output.logger.exception("reading a region's output failed")
