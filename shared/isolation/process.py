"""The ``process`` isolation provider: each region is its own OS process.

A region process runs :mod:`shared.isolation.runtime` in Python's isolated mode with a scrubbed
environment (no storage connection strings, keys or host settings), its own working directory,
no core dumps and resource limits. Calls are serialised per region and bounded by a timeout; a
region that hangs, crashes or breaks the protocol is killed and reported as a
:class:`~shared.errors.RegionError`.
"""
from __future__ import annotations

import base64
import itertools
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from shared.encoding import to_hex
from shared.envelope import Domain
from shared.errors import RegionError
from shared.isolation import protocol
from shared.isolation.provider import IsolationProvider, Region

RUNTIME = Path(__file__).with_name("runtime.py")
SAFE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")


def _limit_resources(address_space: int, open_files: int) -> None:
    """Runs in the child before exec: rlimits and no core dumps."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))


class ProcessRegion(Region):
    """A region backed by a child process speaking the container protocol."""

    def __init__(self, package_dir: Path, *, timeout: float, address_space: int, open_files: int) -> None:
        self.timeout = timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="region-"))
        env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
        env["HOME"] = str(self.workdir)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._buffer = b""
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-B", "-X", f"pycache_prefix={self.workdir / 'pycache'}", str(RUNTIME)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, cwd=self.workdir, env=env,
            close_fds=True, start_new_session=True,
            preexec_fn=lambda: _limit_resources(address_space, open_files))
        self.package_dir = package_dir

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        with self._lock:
            if not self.alive:
                raise RegionError(f"region exited (code {self.process.returncode})")
            request_id = next(self._ids)
            try:
                self.process.stdin.write(protocol.encode({"id": request_id, "op": op, **params}))
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                raise RegionError(f"region exited during {op} (code {self.process.returncode})") from None
            line = self._read_line(time.monotonic() + self.timeout, op)
            try:
                reply = protocol.decode(line)
            except ValueError:
                self._kill()
                raise RegionError(f"region broke the container protocol during {op}; it was stopped") from None
            if reply.get("id") != request_id:
                self._kill()
                raise RegionError(f"region answered out of order during {op}; it was stopped")
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise RegionError(str(error.get("message", "region call failed")), region_code=error.get("code", "unknown"))
        return reply.get("result") or {}

    def _read_line(self, deadline: float, op: str) -> bytes:
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise RegionError(f"region did not answer {op} within {self.timeout:.1f}s; it was stopped",
                                  region_code="timeout")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                code = self.process.wait()
                raise RegionError(f"region exited during {op} (code {code})", region_code="crashed")
            self._buffer += chunk
            if len(self._buffer) > protocol.MAX_LINE:
                self._kill()
                raise RegionError("region wrote an over-long protocol line; it was stopped", region_code="protocol")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(protocol.encode({"id": 0, "op": "shutdown"}))
                self.process.stdin.flush()
                self.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


class ProcessProvider(IsolationProvider):
    """Regions as sandboxed child processes (development and software-only deployments)."""

    name = "process"

    def __init__(self, sealing_secret: bytes, *, timeout: float = 10.0, address_space: int = 2 << 30,
                 open_files: int = 64) -> None:
        self._sealing_secret = sealing_secret
        self.timeout = timeout
        self.address_space = address_space
        self.open_files = open_files

    def create_region(self, package_dir: Path, expected_digest: bytes, *, domain: Domain) -> ProcessRegion:
        region = ProcessRegion(Path(package_dir), timeout=self.timeout, address_space=self.address_space,
                               open_files=self.open_files)
        try:
            region.call("load", package_dir=str(Path(package_dir).resolve()), expected_digest=to_hex(expected_digest),
                        platform_secret=base64.b64encode(self._sealing_secret).decode(), domain=domain.to_dict())
        except Exception:
            region.close()
            raise
        return region
