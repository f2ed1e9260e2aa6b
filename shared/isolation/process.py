"""The ``process`` isolation provider: each region is its own confined OS process (Linux).

Regions are forked from a zygote (:mod:`shared.isolation.zygote`) and confine themselves
(:mod:`shared.isolation.sandbox`): own uid (when the host is root), own network, mount and IPC
namespaces with private scratch folders (root), rlimits, scrubbed environment, own working
directory with a read-only snapshot of the package that the container measures before loading it.
The host side here:

- serialises calls per region and bounds each by a timeout; a region that hangs, crashes, breaks
  the protocol, runs out of memory, hits its process limit or leaves processes running after a
  call is killed (everything of its uid / process group) and reported as a
  :class:`~shared.errors.RegionError` with a ``region_code``; the pool replaces it;
- retires a region at half its CPU-time budget so the kernel limit never hits a warm region;
- answers call-outs with the region's :data:`~shared.isolation.callout.CallOutHandler`;
- reads each region's stderr pipe into the host log, escaped and rate-limited
  (:mod:`shared.isolation.region_output`); without private scratch folders, stops a region whose
  working directory outgrows ``RegionLimits.scratch_bytes`` (``disk_quota``);
- hands a region only the seal key of the digest it launched (never the platform secret);
- issues the region's *software* evidence, signed by the platform key (Ed25519 derived from the
  platform sealing secret with HKDF under its own label), see :mod:`shared.attestation.software`.
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import select
import signal
import threading
import time
import weakref
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.attestation.evidence import Evidence
from shared.attestation.software import KIND, SoftwarePolicy, platform_public_key, sign_software_report
from shared.encoding import from_hex, to_hex
from shared.envelope import Domain
from shared.errors import FabricError, RegionError, SealingError
from shared.isolation import protocol
from shared.isolation.callout import CallOutHandler
from shared.isolation.provider import IsolationProvider, Region
from shared.isolation.region_output import OutputStream, RegionOutput
from shared.isolation.sandbox import RegionLimits
from shared.isolation.zygote import Spawned, Zygote
from shared.keys import derive, sealing

log = logging.getLogger("fabric.region")
#: Faults after which a region is not trusted to keep serving: it is stopped after replying.
RETIRE_CODES = frozenset({"out_of_memory", "process_limit", "container_error", "cryptlet_exited", "cryptlet_protocol"})
MAX_CALLOUTS_PER_CALL = 10_000
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CPUS = os.cpu_count() or 1
_SIGNAL_NAMES = {
    signal.SIGKILL: "SIGKILL",
    signal.SIGXCPU: "SIGXCPU (CPU time limit)",
    signal.SIGSEGV: "SIGSEGV",
    signal.SIGABRT: "SIGABRT",
    signal.SIGXFSZ: "SIGXFSZ (file size limit)",
    signal.SIGBUS: "SIGBUS",
    signal.SIGTERM: "SIGTERM",
}


def platform_key(sealing_secret: bytes) -> Ed25519PrivateKey:
    """The process provider's platform (evidence signing) key, derived from the sealing secret.

    A distinct HKDF salt and info keep it independent of every seal key; hosts sharing a sealing
    secret share a platform identity, and rotating the secret rotates both.
    """
    if len(sealing_secret) < sealing.MIN_SECRET_BYTES:
        raise SealingError(f"the platform sealing secret must be at least {sealing.MIN_SECRET_BYTES} bytes")
    seed = derive.derive(sealing_secret, derive.PLATFORM_KEY)
    return Ed25519PrivateKey.from_private_bytes(seed)


_loadavg: int | None = None


def _last_pid() -> int:
    """The most recently allocated pid (``/proc/loadavg``): unchanged means nothing forked."""
    global _loadavg
    if _loadavg is None:
        _loadavg = os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
    return int(os.pread(_loadavg, 256, 0).rsplit(b"/", 1)[1].split()[1])


def _describe_exit(status: dict[str, Any]) -> str:
    if "signal" in status:
        number = status["signal"]
        return f"killed by {_SIGNAL_NAMES.get(number, f'signal {number}')}"
    if "code" in status:
        return f"exit code {status['code']}"
    return "exit status unknown"


class ProcessRegion(Region):
    """A region backed by a confined child process of the zygote, speaking the container protocol."""

    #: Until this ``time.monotonic()`` the region cannot have spent half its CPU budget: ``_after_call``
    #: reads its CPU time again only then (the same decision, without a /proc read per call).
    _cpu_quiet_until = 0.0

    def __init__(
        self,
        spawned: Spawned,
        zygote: Zygote,
        *,
        timeout: float,
        limits: RegionLimits,
        call_out: CallOutHandler | None,
        platform: Ed25519PrivateKey,
        output: tuple[RegionOutput, OutputStream] | None = None,
        scratch_quota: int | None = None,
    ) -> None:
        self.pid = spawned.pid
        self.uid = spawned.uid
        self.workdir = spawned.workdir
        self.timeout = timeout
        self.limits = limits
        self.digest = b""
        #: Processes the container started for the cryptlet (an ``exec`` program): not strays.
        self.companions: frozenset[int] = frozenset()
        self._pidfd = spawned.pidfd
        try:
            self._stat = os.open(f"/proc/{self.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)  # bound to this process
        except OSError:  # it already died; the first call reports why
            self._stat = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self._sock = spawned.sock
        self._sock.settimeout(timeout)
        self._zygote = zygote
        self._call_out = call_out
        self._platform = platform
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._buffer = b""
        self._closed = False
        self._retired = False
        self._output = output
        #: without private scratch folders: most bytes its working directory (less the package) may hold
        self._scratch_quota = scratch_quota

    # -- life ---------------------------------------------------------------------------------------
    def _exited(self) -> bool:
        try:
            return bool(select.select([self._pidfd], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    @property
    def alive(self) -> bool:
        return not self._closed and not self._retired and not self._exited()

    def _kill(self) -> None:
        """SIGKILL the region and wait until the zygote has killed what it left behind."""
        if self._closed:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._retired = True
        self._settle()

    def _settle(self) -> dict[str, Any]:
        """Wait for the region to exit, then have the zygote reap it (which kills every other process
        of the region's uid and process group and removes its directory); return its exit status."""
        select.select([self._pidfd], [], [], 5.0)
        return self._zygote.status(self.pid)

    def _exit_reason(self) -> str:
        return _describe_exit(self._settle())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if not self._exited() and not self._retired:
                try:
                    self._sock.sendall(protocol.encode({"id": 0, "op": "shutdown"}))
                except OSError:
                    pass
                if not select.select([self._pidfd], [], [], 2.0)[0]:
                    self._kill()
                else:
                    self._settle()
            elif not self._exited():
                self._kill()
            self._closed = True
            self._sock.close()
            os.close(self._pidfd)
            os.close(self._stat)
            if self._output is not None:
                self._output[0].release(self._output[1])

    # -- call-in ------------------------------------------------------------------------------------
    def call(self, op: str, **params: Any) -> dict[str, Any]:
        with self._lock:
            if self._closed or self._retired:
                raise RegionError("region was stopped", region_code="stopped")
            if self._exited():
                raise RegionError(f"region exited ({self._exit_reason()})", region_code="crashed")
            request_id = next(self._ids)
            deadline = time.monotonic() + self.timeout
            last_pid = _last_pid()
            self._send(protocol.encode({"id": request_id, "op": op, **params}), op)
            reply = self._await_reply(request_id, deadline, op)
            if op == "load" and reply.get("ok"):
                self.companions = frozenset(int(pid) for pid in (reply.get("result") or {}).get("companions") or [])
            self._after_call(op, last_pid, reply)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise RegionError(str(error.get("message", "region call failed")), region_code=error.get("code", "unknown"))
        return reply.get("result") or {}

    def _send(self, data: bytes, op: str) -> None:
        try:
            # The socket is non-blocking underneath its timeout: write what fits at once (a request
            # usually all of it) without the poll a timed ``sendall`` makes first, then wait for the rest.
            try:
                sent = os.write(self._sock.fileno(), data)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._sock.sendall(data[sent:])
        except TimeoutError:
            self._kill()
            raise RegionError(
                f"region did not read its {op} request within {self.timeout:.1f}s; it was stopped",
                region_code="timeout",
            ) from None
        except OSError:
            self._lost_stream(op)

    def _lost_stream(self, op: str) -> None:
        """The protocol stream ended: report how the region exited, or stop one that closed it and lives on."""
        if not select.select([self._pidfd], [], [], 1.0)[0]:
            self._kill()
            raise RegionError(f"region closed its protocol stream during {op}; it was stopped", region_code="protocol")
        self._retired = True
        raise RegionError(f"region exited during {op} ({self._exit_reason()})", region_code="crashed")

    def _await_reply(self, request_id: int, deadline: float, op: str) -> dict[str, Any]:
        callouts = 0
        while True:
            line = self._read_line(deadline, op)
            try:
                message = protocol.decode(line)
            except (ValueError, UnicodeDecodeError):
                self._kill()
                raise RegionError(
                    f"region broke the container protocol during {op}; it was stopped", region_code="protocol"
                ) from None
            if protocol.is_callout(message):
                callouts += 1
                if callouts > MAX_CALLOUTS_PER_CALL:
                    self._kill()
                    raise RegionError(
                        f"region made more than {MAX_CALLOUTS_PER_CALL} call-outs during {op}; it was stopped",
                        region_code="callout_flood",
                    )
                self._send(protocol.encode(self._answer_callout(message)), op)
                continue
            if message.get("id") != request_id:
                self._kill()
                raise RegionError(f"region answered out of order during {op}; it was stopped", region_code="protocol")
            return message

    def _answer_callout(self, message: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"callout": message.get("callout")}
        op = message.get("op")
        params = {k: v for k, v in message.items() if k not in ("callout", "op")}
        if self._call_out is None or not isinstance(op, str):
            return {**reply, "ok": False, "error": {"code": "no_callouts", "message": "the host answers no call-outs"}}
        try:
            return {**reply, "ok": True, "result": self._call_out(op, params)}
        except FabricError as exc:
            return {**reply, "ok": False, "error": {"code": exc.code, "message": exc.detail}}
        except Exception:  # the handler failed: the host logs it, the region learns only that
            log.exception("call-out %r failed", op)
            return {**reply, "ok": False, "error": {"code": "host_error", "message": "the host failed the call-out"}}

    def _read_line(self, deadline: float, op: str) -> bytes:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise RegionError(
                    f"region did not answer {op} within {self.timeout:.1f}s; it was stopped", region_code="timeout"
                )
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                continue
            try:  # readable: read at once (a timed ``recv`` would poll again first)
                chunk = os.read(self._sock.fileno(), 65536)
            except (BlockingIOError, TimeoutError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._lost_stream(op)
            self._buffer += chunk
            if len(self._buffer) > protocol.MAX_LINE:
                self._kill()
                raise RegionError("region wrote an over-long protocol line; it was stopped", region_code="protocol")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _after_call(self, op: str, last_pid: int, reply: dict[str, Any]) -> None:
        """Stop a region that faulted fatally, left processes behind or spent half its CPU budget."""
        if not reply.get("ok") and (reply.get("error") or {}).get("code") in RETIRE_CODES:
            self._kill()  # the zygote then kills whatever else runs under the region's uid
            return
        if self._scratch_quota is not None and _scratch_bytes(self.workdir, self._scratch_quota) > self._scratch_quota:
            self._kill()
            raise _over_quota(self._scratch_quota)
        if _last_pid() != last_pid:
            strays = _strays(self.pid, self.uid, self.companions)
            if strays:
                self._kill()
                raise RegionError(
                    f"region left {len(strays)} process(es) running after {op}; it was stopped",
                    region_code="stray_processes",
                )
        now = time.monotonic()
        if now < self._cpu_quiet_until:
            return
        used, half = _cpu_seconds(self._stat), self.limits.cpu_seconds / 2
        if used >= half:
            self._retired = True  # the pool closes it and starts a fresh one
        else:  # its threads gain at most _CPUS CPU-seconds a second; 1 s of slack for tick accounting
            self._cpu_quiet_until = now + max(0.0, half - used - 1.0) / _CPUS

    # -- evidence -----------------------------------------------------------------------------------
    def evidence(self, report_data: bytes) -> Evidence:
        """Software evidence over ``report_data``, after the live region confirms its measurement."""
        if len(report_data) != 32:
            raise ValueError("report_data must be 32 bytes")
        report = self.call("report")
        if from_hex(report["digest"], length=32) != self.digest:
            self._kill()
            raise RegionError(
                "region reports another measurement than it loaded; it was stopped", region_code="digest_mismatch"
            )
        return sign_software_report(self._platform, self.digest, report_data, now=datetime.now(UTC))


def _strays(pid: int, uid: int | None, companions: Collection[int]) -> list[int]:
    """Live processes of region ``pid`` other than it and its companions (by uid, else by session)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == pid or int(entry.name) in companions:
            continue
        try:
            if uid is not None:
                if entry.stat().st_uid != uid:
                    continue
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            else:
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
                if int(fields[3]) != pid:
                    continue
        except (OSError, IndexError, ValueError):
            continue
        if fields[0] != b"Z":
            found.append(int(entry.name))
    return found


def _over_quota(quota: int) -> RegionError:
    return RegionError(
        f"region wrote more than {quota >> 20} MiB in its folders; it was stopped", region_code="disk_quota"
    )


def _scratch_bytes(workdir: str, limit: int) -> int:
    """Bytes in ``workdir`` outside its ``package`` snapshot; past ``limit`` (counting stops), more
    than 10,000 entries or a folder the host cannot list count as over."""
    total, seen = 0, 0
    stack = [workdir]
    while stack and total <= limit:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        except OSError:  # hidden from the host (e.g. mode 000): cannot be measured
            return limit + 1
        seen += len(entries)
        if seen > 10_000:
            return limit + 1
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path != os.path.join(workdir, "package"):
                        stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


def _cpu_seconds(stat_fd: int) -> float:
    """CPU seconds (user + system) of the process whose ``/proc/<pid>/stat`` is open as ``stat_fd``."""
    try:
        fields = os.pread(stat_fd, 4096, 0).rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


class ProcessProvider(IsolationProvider):
    """Regions as confined child processes (development and software-only deployments)."""

    name = "process"
    evidence_kind = KIND
    #: Every region is a confined process of its own (software isolation, see docs/isolation.md).
    isolates = True

    def __init__(
        self,
        sealing_secret: bytes,
        *,
        timeout: float = 10.0,
        limits: RegionLimits | None = None,
        output_logger: logging.Logger | None = None,
    ) -> None:
        """``output_logger``: where what regions print goes (default ``fabric.region``)."""
        self._sealing_secret = sealing_secret
        self._platform = platform_key(sealing_secret)
        self.timeout = timeout
        self.limits = limits or RegionLimits()
        self._zygote = Zygote()
        self._output = RegionOutput(output_logger)
        weakref.finalize(self, _close, self._zygote, self._output)

    @property
    def platform_public_key(self) -> bytes:
        """The raw Ed25519 key that signs this provider's evidence (what verifiers pin)."""
        return platform_public_key(self._platform)

    def evidence_policy(self) -> SoftwarePolicy:
        """A policy that accepts this provider's (software, debug) evidence, and only that."""
        return SoftwarePolicy(allow_software=True, platform_keys=frozenset({self.platform_public_key}))

    def isolation(self) -> dict[str, Any]:
        """What confinement the running zygote applies (starts it if needed)."""
        caps = self._zygote.start()
        return {
            "uid_isolation": bool(caps.get("uid_isolation")),
            "own_netns": bool(caps.get("own_netns")),
            "private_tmp": bool(caps.get("private_tmp")),
            "limits": self.limits.to_dict(),
        }

    def create_region(
        self,
        package_dir: Path,
        expected_digest: bytes,
        *,
        domain: Domain,
        call_out: CallOutHandler | None = None,
        timeout: float | None = None,
    ) -> ProcessRegion:
        spawned = self._zygote.spawn(Path(package_dir).resolve(), self.limits)
        label = str(getattr(call_out, "name", "") or Path(package_dir).name)
        output = self._output.attach(spawned.log_fd, label, spawned.pid)
        region = ProcessRegion(
            spawned,
            self._zygote,
            timeout=timeout or self.timeout,
            limits=self.limits,
            call_out=self._output.limit_callouts(call_out, label),
            platform=self._platform,
            output=(self._output, output),
            scratch_quota=None if self._zygote.capabilities.get("private_tmp") else self.limits.scratch_bytes,
        )
        try:
            loaded = region.call(
                "load",
                expected_digest=to_hex(expected_digest),
                domain=domain.to_dict(),
                seal_key=base64.b64encode(sealing.seal_key(self._sealing_secret, expected_digest)).decode(),
            )
            region.digest = from_hex(loaded["digest"], length=32)
        except BaseException:
            region.close()
            raise
        return region

    def close(self) -> None:
        _close(self._zygote, self._output)


def _close(zygote: Zygote, output: RegionOutput) -> None:
    zygote.close()  # the regions end, so their pipes do: the reader logs what they left
    output.close()
