"""The region zygote: a pre-imported template process that forks ``process`` regions.

Starting Python and importing the container's libraries (cryptography, coincurve, pycryptodome,
RFC 8785) costs 200+ ms; forking a process that already holds them costs a few. So each
:class:`~shared.isolation.process.ProcessProvider` starts one zygote,
``python -I -B zygote.py CONTROL_FD``, with a scrubbed environment. The zygote imports the
container, **holds no secrets** (seal keys travel later, host -> region, over the region's own
socket) and never runs cryptlet code. Per spawn request it:

1. (as root) takes a region uid from a dedicated range, locked with ``flock`` so concurrent
   zygotes on one machine never share one;
2. makes the region's working directory (``0700``, owned by that uid) and a read-only snapshot
   of the package in it: what the region measures is what it loads, and nothing can swap the
   files in between;
3. forks; the child makes the log pipe the host passed its stderr, confines itself
   (:func:`shared.isolation.sandbox.confine`) and becomes the container
   (:func:`shared.isolation.runtime.serve`); the zygote answers with the region's pid and a pidfd
   (Linux >= 5.3), so the host can watch and kill exactly that process.

When a region exits, the zygote reaps it, kills everything it left behind (every process of its
uid, its process group), removes its working directory (and, as root without private scratch
folders, every file its uid left in the shared ones) and frees its uid. When the host goes away
(EOF on the control socket) it kills every region and exits.

Control protocol: a ``SOCK_SEQPACKET`` socket pair, one JSON object per message, descriptors
passed with ``SCM_RIGHTS``. After start the zygote sends ``{"ready": true, "uid_isolation": b,
"own_netns": b, "private_tmp": b}``; then ``spawn`` (+ the region's socket and the write end of its
log pipe) -> ``{"ok", "pid", "uid", "workdir"}`` (+ pidfd) and ``status {"pid"}`` ->
``{"ok", "state": "running" | "exited", "code" | "signal"}``. :class:`Zygote` is the host's end.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import gc
import json
import logging
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # started as a script in isolated mode: make `shared` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.errors import RegionError
from shared.isolation.sandbox import SAFE_ENV_KEYS, RegionLimits, scratch_dirs

ZYGOTE = Path(__file__).resolve()
#: Region uids (root only): a range no distribution allocates (systemd's dynamic users stop at
#: 65519, subordinate-uid ranges at a few million); one uid per live region.
REGION_UID_BASE = 0x6C000000
REGION_UID_SLOTS = 4096
UID_LOCK_DIR = Path(tempfile.gettempdir()) / "cryptlet-fabric-uids"
MAX_MESSAGE = 64 * 1024
START_TIMEOUT_S = 60.0
EXIT_STATUSES_KEPT = 256
#: At most this many entries are looked at when removing a region uid's files from scratch folders.
MAX_SCRATCH_ENTRIES = 100_000


# ============================================================================ the zygote process
class _UidPool:
    """Region uids locked with ``flock`` on ``UID_LOCK_DIR/<uid>`` (released when we close it)."""

    def __init__(self) -> None:
        UID_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        info = UID_LOCK_DIR.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
            raise RuntimeError(f"{UID_LOCK_DIR} must be a directory owned by root with mode 0700")
        self._next = os.getpid() % REGION_UID_SLOTS
        self._held: dict[int, int] = {}

    def take(self) -> int:
        for step in range(REGION_UID_SLOTS):
            uid = REGION_UID_BASE + (self._next + step) % REGION_UID_SLOTS
            if uid in self._held:
                continue
            fd = os.open(UID_LOCK_DIR / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held[uid] = fd
            self._next = (self._next + step + 1) % REGION_UID_SLOTS
            return uid
        raise RuntimeError("no free region uid")

    def release(self, uid: int) -> None:
        fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)


@dataclass
class _Region:
    pid: int
    uid: int | None
    workdir: str


def kill_uid(uid: int, *, remove_from: list[str] | None = None) -> None:
    """Kill every process running as ``uid``: a child drops to it and calls ``kill(-1)``; then it
    removes what ``uid`` left under ``remove_from`` (the shared scratch folders)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except ourselves
            except ProcessLookupError:
                pass
            if remove_from:
                remove_files_of(uid, remove_from)
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)


def _remove_tree(path: str) -> None:
    """Remove a folder we own, even one whose mode was taken away (permissions restored first)."""
    try:
        os.chmod(path, 0o700, follow_symlinks=False)
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def remove_files_of(uid: int, roots: list[str]) -> None:
    """(run as ``uid``) Remove everything ``uid`` owns under ``roots``, looking into the folders
    there that anyone may write to (where others' files could hold ``uid``'s): a later region with
    the same uid finds nothing. Running as ``uid`` it can remove only what that uid could."""
    seen = 0
    stack = list(roots)
    while stack and seen < MAX_SCRATCH_ENTRIES:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid == uid:
                if stat.S_ISDIR(info.st_mode):
                    _remove_tree(entry.path)
                else:
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
            elif stat.S_ISDIR(info.st_mode) and info.st_mode & 0o002:
                stack.append(entry.path)


def _snapshot(package_dir: str, target: Path) -> None:
    """Copy the package (regular files only) read-only into the region's working directory
    (executable files stay executable, for the ``exec`` runtime)."""
    shutil.copytree(package_dir, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for current, _dirs, files in os.walk(target):
        os.chmod(current, 0o755)
        for name in files:
            path = os.path.join(current, name)
            executable = os.stat(path).st_mode & 0o111  # an exec runtime's program keeps its x bit
            os.chmod(path, 0o755 if executable else 0o644)


class _Server:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.pid = os.getpid()
        self.root = os.geteuid() == 0
        self.uids = _UidPool() if self.root else None
        self.own_netns = self.root and self._probe(self._try_netns)
        self.base = Path(tempfile.mkdtemp(prefix="cryptlet-regions-"))
        self.private_tmp = self.root and self._probe_private_tmp()
        # Regions reach their working directory here only as root without their own mount namespace.
        os.chmod(self.base, 0o711 if self.root and not self.private_tmp else 0o700)
        self.regions: dict[int, _Region] = {}
        self.exited: collections.OrderedDict[int, dict[str, Any]] = collections.OrderedDict()

    @staticmethod
    def _probe(attempt: Any) -> bool:
        """Whether ``attempt()`` works here (tried in a throwaway child)."""
        pid = os.fork()
        if pid == 0:
            try:
                attempt()
            except BaseException:
                os._exit(1)
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    @staticmethod
    def _try_netns() -> None:
        from shared.isolation.sandbox import own_network_namespace

        own_network_namespace()

    def _probe_private_tmp(self) -> bool:
        """Whether regions can have their own mount namespace and scratch folders (a trial run)."""
        workdir = tempfile.mkdtemp(prefix="probe-", dir=self.base)
        marker = os.path.join(workdir, "package", "marker")
        os.mkdir(os.path.dirname(marker))
        Path(marker).touch()

        def attempt() -> None:
            from shared.isolation.sandbox import private_scratch

            private_scratch(workdir, 0, 1 << 20)
            if not os.path.isfile(marker):
                raise RuntimeError("the package snapshot is not reachable")

        try:
            return self._probe(attempt)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def serve(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)  # the host ends us by closing the socket
        self._send(
            {
                "ready": True,
                "pid": os.getpid(),
                "uid_isolation": self.root,
                "own_netns": self.own_netns,
                "private_tmp": self.private_tmp,
            }
        )
        try:
            while True:
                watched: list[socket.socket | int] = [self.control, wake_r]
                ready, _, _ = select.select(watched, [], [])
                if wake_r in ready:
                    while True:
                        try:
                            if not os.read(wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                    self._reap()
                if self.control in ready:
                    try:
                        data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 4)
                    except ConnectionResetError:
                        data, fds = b"", []
                    if not data:
                        return
                    self._handle(json.loads(data), fds)
        finally:
            self._shutdown()

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.control, [data], fds)
        else:
            self.control.send(data)

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        try:
            if op == "spawn":
                if len(fds) != 2:
                    raise ValueError("spawn needs the region's socket and log pipe")
                self._spawn(message, fds[0], fds[1])
            elif op == "status":
                self._send(self._status(int(message["pid"])))
            else:
                raise ValueError(f"unknown zygote operation {op!r}")
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self._send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            for fd in fds:
                os.close(fd)

    def _spawn(self, message: dict[str, Any], sock_fd: int, log_fd: int) -> None:
        limits = RegionLimits.from_dict(message["limits"])
        uid = self.uids.take() if self.uids else None
        workdir = Path(tempfile.mkdtemp(prefix="region-", dir=self.base))
        try:
            package = workdir / "package"
            _snapshot(message["package_dir"], package)
            if not self.private_tmp:  # the region's TMPDIR (else its own /tmp)
                (workdir / "tmp").mkdir(mode=0o700)
            if uid is not None:
                os.chown(workdir, uid, uid)
                if not self.private_tmp:
                    os.chown(workdir / "tmp", uid, uid)
            pid = os.fork()
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            if uid is not None:
                assert self.uids is not None  # uid came from the pool
                self.uids.release(uid)
            raise
        if pid == 0:
            self._become_region(sock_fd, log_fd, str(workdir), str(package), uid, limits)
        self.regions[pid] = _Region(pid, uid, str(workdir))
        pidfd = os.pidfd_open(pid)
        try:
            self._send({"ok": True, "pid": pid, "uid": uid, "workdir": str(workdir)}, [pidfd])
        finally:
            os.close(pidfd)

    def _become_region(
        self, sock_fd: int, log_fd: int, workdir: str, package: str, uid: int | None, limits: RegionLimits
    ) -> None:
        code = 0
        try:
            os.dup2(log_fd, 2)  # the region's own log pipe, never the host's stderr
            from shared.isolation import runtime, sandbox

            sandbox.confine(
                sock_fd=sock_fd,
                workdir=workdir,
                uid=uid,
                own_netns=self.own_netns,
                private_tmp=self.private_tmp,
                limits=limits,
                zygote_pid=self.pid,
            )
            runtime.main(Path(package))
        except BaseException:
            code = 71
            try:
                traceback.print_exc(file=sys.stderr)
            except BaseException:
                pass
        finally:
            os._exit(code)

    def _status(self, pid: int) -> dict[str, Any]:
        if pid in self.regions:
            self._reap()
        if pid in self.exited:
            return {"ok": True, "state": "exited", **self.exited[pid]}
        if pid in self.regions:
            return {"ok": True, "state": "running"}
        return {"ok": False, "error": f"no region with pid {pid}"}

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            region = self.regions.pop(pid, None)
            if region is None:
                continue
            self.exited[pid] = (
                {"signal": os.WTERMSIG(status)}
                if os.WIFSIGNALED(status)
                else {"code": os.waitstatus_to_exitcode(status)}
            )
            while len(self.exited) > EXIT_STATUSES_KEPT:
                self.exited.popitem(last=False)
            self._clean(region)

    def _clean(self, region: _Region) -> None:
        try:
            os.killpg(region.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if region.uid is not None:
            kill_uid(region.uid, remove_from=None if self.private_tmp else scratch_dirs())
            assert self.uids is not None  # a region's uid came from the pool
            self.uids.release(region.uid)
        shutil.rmtree(region.workdir, ignore_errors=True)

    def _shutdown(self) -> None:
        for region in list(self.regions.values()):
            try:
                os.kill(region.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for region in list(self.regions.values()):
            try:
                os.waitpid(region.pid, 0)
            except ChildProcessError:
                pass
            self._clean(region)
        self.regions.clear()
        shutil.rmtree(self.base, ignore_errors=True)


def _preload() -> None:
    """Import what every region needs (and what cryptlets commonly use) once, in the template, and
    run each crypto primitive once on throwaway keys so lazy initialisation happens here, not in
    every region. Nothing the template touches is secret."""
    import importlib

    import coincurve

    from shared.envelope import Domain, Envelope, address_of, sign_envelope
    from shared.isolation import runtime  # noqa: F401  (the container and its crypto libraries)
    from shared.keys import sealing

    for name in (
        "datetime",
        "decimal",
        "hashlib",
        "hmac",
        "json",
        "math",
        "random",
        "re",
        "statistics",
        "string",
        "struct",
        "uuid",
        "zoneinfo",
    ):
        importlib.import_module(name)
    throwaway = coincurve.PrivateKey()
    address = address_of(throwaway.public_key.format(compressed=False))
    key, digest = os.urandom(32), os.urandom(32)
    sealing.unseal_with_key(key, digest, address, sealing.seal_with_key(key, digest, address, throwaway.secret))
    sign_envelope(
        Envelope(
            cryptlet=address,
            name="warmup",
            digest=digest,
            topic="warmup.run",
            request_id=digest,
            sequence=1,
            timestamp_ms=1,
            payload={"warm": True},
            domain=Domain(),
            registration={"entry_hash": "0x" + digest.hex()},
            evidence={},
        ),
        throwaway.secret,
    ).to_dict()


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    gc.collect()
    gc.freeze()  # keep the template's objects out of every region's collections: fewer copy-on-write faults
    _Server(control).serve()


# ============================================================================ the host's end
@dataclass(frozen=True)
class Spawned:
    """A region process the zygote started: its pid, a pidfd for it, and the host's socket end."""

    pid: int
    pidfd: int
    uid: int | None
    workdir: str
    sock: socket.socket
    #: the read end of the region's stderr pipe (:class:`~shared.isolation.region_output.RegionOutput`)
    log_fd: int


class Zygote:
    """The host's handle on one zygote process: starts it lazily, restarts it if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self.capabilities: dict[str, Any] = {}

    def _start(self) -> None:
        if not hasattr(os, "pidfd_open") or not Path("/proc/self/fd").is_dir():
            raise RegionError("the process provider needs Linux 5.3 or later (pidfd, /proc)", region_code="zygote")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-B", str(ZYGOTE), str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None,
                env=env,
                cwd="/",
                start_new_session=True,
            )
        finally:
            child.close()
        parent.settimeout(START_TIMEOUT_S)
        try:
            hello = json.loads(parent.recv(MAX_MESSAGE) or b"{}")
        except (OSError, ValueError):
            hello = {}
        if not hello.get("ready"):
            parent.close()
            self._stop_process()
            raise RegionError("the region zygote did not start", region_code="zygote")
        self._control = parent
        self.capabilities = hello
        if not hello.get("uid_isolation"):
            logging.getLogger("fabric.isolation").warning(
                "process regions run as the host's user (the host is not root): they get rlimits, a scrubbed "
                "environment and their own directory, but can read what that user can read; run only trusted "
                "cryptlets this way (see docs/isolation.md)"
            )

    def _ensure(self) -> socket.socket:
        if self._process is None or self._process.poll() is not None or self._control is None:
            if self._control is not None:
                self._control.close()
                self._control = None
            self._start()
        assert self._control is not None  # _start sets it or raises
        return self._control

    def _request(self, message: dict[str, Any], fds: list[int] | None = None) -> tuple[dict[str, Any], list[int]]:
        control = self._ensure()
        try:
            data = json.dumps(message).encode()
            if fds:
                socket.send_fds(control, [data], fds)
            else:
                control.send(data)
            raw, got, _, _ = socket.recv_fds(control, MAX_MESSAGE, 2)
        except OSError as exc:
            control.close()  # is self._control: callers hold self._lock
            self._control = None
            raise RegionError(f"the region zygote failed ({type(exc).__name__})", region_code="zygote") from None
        if not raw:
            control.close()
            self._control = None
            raise RegionError("the region zygote exited", region_code="zygote")
        return json.loads(raw), got

    def start(self) -> dict[str, Any]:
        """Start the zygote if it is not running; return what confinement it applies."""
        with self._lock:
            self._ensure()
            return dict(self.capabilities)

    def spawn(self, package_dir: Path, limits: RegionLimits) -> Spawned:
        """Fork a confined region for ``package_dir`` (snapshotted by the zygote); its stderr is a new
        pipe whose read end the caller gets (``log_fd``)."""
        host_end, region_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_read, log_write = os.pipe2(os.O_CLOEXEC)
        try:
            with self._lock:
                for attempt in (1, 2):  # one restart if the zygote had died
                    try:
                        reply, fds = self._request(
                            {"op": "spawn", "package_dir": str(package_dir), "limits": limits.to_dict()},
                            [region_end.fileno(), log_write],
                        )
                        break
                    except RegionError:
                        if attempt == 2:
                            raise
        except BaseException:
            host_end.close()
            os.close(log_read)
            raise
        finally:
            region_end.close()
            os.close(log_write)
        if not reply.get("ok") or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            host_end.close()
            os.close(log_read)
            raise RegionError(
                f"the zygote could not start a region: {reply.get('error', 'no pidfd')}", region_code="spawn_failed"
            )
        return Spawned(reply["pid"], fds[0], reply.get("uid"), reply["workdir"], host_end, log_read)

    def status(self, pid: int) -> dict[str, Any]:
        """``{"state": "running"}`` or ``{"state": "exited", "code" | "signal": n}`` ({} if unknown)."""
        with self._lock:
            try:
                reply, fds = self._request({"op": "status", "pid": pid})
            except RegionError:
                return {}
        for fd in fds:
            os.close(fd)
        return reply if reply.get("ok") else {}

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        """Close the control socket: the zygote kills its regions and exits; wait for it."""
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            self._stop_process()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
