"""The ``exec`` runtime: a cryptlet written in any language, run as a child of the container.

The container (:mod:`shared.isolation.runtime`, trusted fabric code) starts the package's program
(``entry``, optionally through a host-provided ``interpreter`` such as ``node``) with its working
directory in the package snapshot, the region's scrubbed environment and three streams: the
program reads requests on stdin, writes replies and call-outs on stdout, and may log freely on
stderr. The program never holds a key: it returns results, events and state; the container
validates and signs them. Before starting it the container makes itself non-dumpable, so the
program (same uid, same limits) cannot read the container's memory.

The wire format is the cryptlet side of docs/container-protocol.md: one JSON object per line.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

from shared.isolation import protocol
from shared.isolation.callout import CallOutError, HostChannel

PR_SET_DUMPABLE = 4
#: Fault codes after which the program is gone: the container ends the region too.
FATAL_CODES = frozenset({"cryptlet_exited", "cryptlet_protocol"})
#: Interpreters a manifest may name; each is looked up on the region's PATH.
INTERPRETERS = ("node",)
#: Arguments the fabric adds per interpreter (node: fewer V8 worker threads, region thread limits are tight).
INTERPRETER_FLAGS: dict[str, list[str]] = {"node": ["--v8-pool-size=1", "--max-old-space-size=256"]}


class CryptletFault(Exception):
    """The program failed a request; ``code`` is the protocol error code, ``fatal`` ends the region."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal


def _non_dumpable() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def command(package_dir: Path, entry: str, interpreter: str | None) -> list[str]:
    """The argv that runs ``entry`` (a path inside the package) directly or through ``interpreter``."""
    root = package_dir.resolve()
    program = (root / entry).resolve()
    if root not in program.parents or not program.is_file():
        raise CryptletFault("entry_not_found", f"entry {entry!r} is not a file of the package")
    if interpreter is None:
        if not os.access(program, os.X_OK):
            raise CryptletFault("entry_not_found", f"entry {entry!r} is not executable and no interpreter is named")
        return [str(program)]
    if interpreter not in INTERPRETERS:
        raise CryptletFault("entry_not_found", f"interpreter {interpreter!r} is not one of {INTERPRETERS}")
    found = shutil.which(interpreter)
    if found is None:
        raise CryptletFault("entry_not_found", f"interpreter {interpreter!r} is not installed on this host")
    return [found, *INTERPRETER_FLAGS.get(interpreter, []), str(program)]


class ExecCryptlet:
    """The container's handle on one running program; requests are answered one at a time."""

    def __init__(self, argv: list[str], cwd: Path, channel: HostChannel | None) -> None:
        _non_dumpable()
        self.channel = channel
        self._ids = 0
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                env=dict(os.environ),
                close_fds=True,
            )
        except OSError as exc:
            raise CryptletFault("load_failed", f"could not start {Path(argv[-1]).name}: {exc.strerror}") from None

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(self, op: str, **params: Any) -> dict[str, Any]:
        """Send one request; forward the program's call-outs to the host until it replies."""
        self._ids += 1
        self._write({"id": self._ids, "op": op, **params})
        while True:
            message = self._read(op)
            if protocol.is_callout(message):
                self._write(self._forward(message))
                continue
            if message.get("id") != self._ids or not isinstance(message.get("ok"), bool):
                self._fail("cryptlet_protocol", f"the program answered {op} with an unexpected message")
            if not message["ok"]:
                error = message["error"] if isinstance(message.get("error"), dict) else {}
                code = str(error.get("code") or "cryptlet_error")
                raise CryptletFault(
                    code if code == "bad_arguments" else "cryptlet_error",
                    str(error.get("message") or f"the program failed {op}")[:2000],
                )
            return message

    def _forward(self, message: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"callout": message.get("callout")}
        op = message.get("op")
        if self.channel is None or not isinstance(op, str):
            return {**reply, "ok": False, "error": {"code": "no_callouts", "message": "no host call-outs here"}}
        params = {k: v for k, v in message.items() if k not in ("callout", "op")}
        try:
            return {**reply, "ok": True, "result": self.channel.call(op, **params)}
        except CallOutError as exc:
            return {**reply, "ok": False, "error": {"code": exc.code, "message": str(exc)}}

    def _write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None  # a pipe: Popen(stdin=PIPE)
        try:
            self.process.stdin.write(protocol.encode(message))
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._fail("cryptlet_exited", f"the program exited ({self._exit_status()})")

    def _read(self, op: str) -> dict[str, Any]:
        assert self.process.stdout is not None  # a pipe: Popen(stdout=PIPE)
        line = self.process.stdout.readline(protocol.MAX_LINE + 1)
        if not line:
            self._fail("cryptlet_exited", f"the program exited during {op} ({self._exit_status()})")
        if len(line) > protocol.MAX_LINE or not line.endswith(b"\n"):
            self._fail("cryptlet_protocol", "the program wrote an over-long line")
        try:
            return protocol.decode(line)
        except (ValueError, UnicodeDecodeError):
            self._fail("cryptlet_protocol", f"the program wrote something other than a JSON object during {op}")

    def _exit_status(self) -> str:
        try:
            code = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def _fail(self, code: str, message: str) -> NoReturn:
        self.close(kill=True)
        raise CryptletFault(code, message, fatal=True)

    def close(self, *, kill: bool = False) -> None:
        """Ask the program to stop (or kill it); wait for it."""
        assert self.process.stdin is not None and self.process.stdout is not None  # pipes: Popen(..., PIPE)
        if self.process.poll() is None and not kill:
            try:
                self.process.stdin.write(protocol.encode({"id": 0, "op": "shutdown"}))
                self.process.stdin.flush()
                self.process.wait(timeout=2.0)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def start(
    package_dir: Path, entry: str, interpreter: str | None, channel: HostChannel | None, init: dict[str, Any]
) -> ExecCryptlet:
    """Start the program and send it ``init`` (name, kind, methods, events, config)."""
    program = ExecCryptlet(command(package_dir, entry, interpreter), package_dir, channel)
    try:
        program.request("init", **init)
    except CryptletFault:
        program.close(kill=True)
        raise
    return program
