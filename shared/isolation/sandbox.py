"""Confinement of a ``process`` region: what a freshly forked region does to itself before it runs.

:func:`confine` runs in the child the zygote forked, before any cryptlet code, in this order:

1. own session and process group; die with the zygote (``PR_SET_PDEATHSIG``);
2. as root: own, empty network namespace (no interfaces up: no network at all); own mount and IPC
   namespaces with a fresh, size-limited tmpfs (``0700``, owned by the region uid) over ``/tmp``,
   ``/var/tmp``, ``/dev/shm`` and every other shared scratch folder (:func:`private_scratch`): what
   a region writes there dies with it, and it sees nothing others wrote; its working directory is
   rebuilt inside its ``/tmp`` with the package snapshot bind-mounted read-only. Elsewhere
   ``TMPDIR`` is a ``0700`` folder in its working directory, removed when it exits;
3. stdin/stdout become the region's protocol socket (stderr is already its own log pipe, read by
   the host: :mod:`shared.isolation.region_output`); every other descriptor is closed;
4. resource limits: CPU seconds, address space, open files, file size, processes/threads
   (``RLIMIT_NPROC``) and no core dumps;
5. its own working directory (the package snapshot lives in it), ``umask 077``;
6. as root: drop to the region's own unprivileged uid/gid with no supplementary groups, so
   ``RLIMIT_NPROC`` is enforced per region and host files and ``/proc/<host>/environ`` are out of
   reach, and kill anything a previous holder of that uid left running; as non-root: mark itself
   non-dumpable so other regions of the same uid cannot read its memory or environment;
7. ``PR_SET_NO_NEW_PRIVS`` (no set-uid escalation) and a scrubbed environment.

What holds and what does not is summarised in docs/isolation.md.
"""

from __future__ import annotations

import ctypes
import os
import random
import resource
import signal
import stat
import sys
from dataclasses import asdict, dataclass
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
SAFE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")
#: Folders every user may write to (where present and world-writable): a region gets its own of each.
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue", "/var/crash")


@dataclass(frozen=True)
class RegionLimits:
    """Resource limits of one region process (and, for ``processes``, of everything it starts).

    ``cpu_seconds`` is a lifetime budget (the host retires a region at half of it, so a warm
    region is replaced before the kernel kills it); ``processes`` counts processes *and* threads
    of the region's uid; ``address_space`` bounds virtual memory per process.
    """

    cpu_seconds: int = 60
    address_space: int = 2 << 30
    open_files: int = 64
    file_size: int = 64 << 20
    processes: int = 16
    #: the region's private ``/tmp`` (with its working directory; the other scratch folders get a
    #: quarter each), or without a mount namespace its working directory without the package
    scratch_bytes: int = 64 << 20

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionLimits:
        return cls(**{k: int(v) for k, v in data.items()})


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, value: int) -> None:
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}) failed: {os.strerror(err)}")


def _unshare(libc: ctypes.CDLL, flags: int, what: str) -> None:
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare({what}) failed: {os.strerror(err)}")


def _mount(
    libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def arg(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    if libc.mount(arg(source), arg(target), arg(fstype), ctypes.c_ulong(flags), arg(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({source}, {target}) failed: {os.strerror(err)}")


def own_network_namespace() -> None:
    """Move into a new network namespace (only loopback, down): the region has no network."""
    _unshare(_libc(), CLONE_NEWNET, "CLONE_NEWNET")


def scratch_dirs() -> list[str]:
    """Those of :data:`SCRATCH_DIRS` that are real (not symlinked), world-writable directories here."""
    found = []
    for path in SCRATCH_DIRS:
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o002:
            found.append(path)
    return found


def private_scratch(workdir: str, uid: int, size: int, keep: tuple[str, ...] = ()) -> None:
    """(root, in the region before it drops privileges) Own mount and IPC namespaces, with a fresh
    tmpfs (``0700``, owned by ``uid``, ``nosuid,nodev``; ``size`` bytes for ``/tmp``, a quarter for
    the others) over every shared scratch folder. Nothing propagates back to the host (``/`` is made
    private first), and everything is freed when the region's last process exits: SysV IPC and POSIX
    message queues too (own IPC namespace).

    If ``workdir`` was under one of them (the zygote keeps regions under ``$TMPDIR``), it is rebuilt in
    the new tmpfs at the same path, with only ``workdir/package`` (the snapshot) bind-mounted from the
    original, read-only: what the region writes in its working directory counts against ``size``.
    Folders of ``keep`` (import paths: a checkout under ``/tmp``) that a tmpfs hides are bind-mounted
    back at their paths, read-only, and nothing else of the host's scratch folders.
    """
    libc = _libc()
    _unshare(libc, CLONE_NEWNS | CLONE_NEWIPC, "CLONE_NEWNS | CLONE_NEWIPC")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    targets = scratch_dirs()

    def hidden(path: str) -> bool:
        return any(path.startswith(target + "/") for target in targets)

    kept: list[str] = []
    for path in sorted(p.rstrip("/") for p in keep if p and hidden(p.rstrip("/")) and os.path.isdir(p)):
        if not any(path.startswith(parent + "/") for parent in kept):  # a parent brings it back already
            kept.append(path)
    package = os.path.join(workdir, "package")
    rebuild = hidden(workdir)
    back = {path: os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for path in kept}
    if rebuild:
        back[package] = os.open(package, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for target in targets:
            share = size if target == "/tmp" else max(size // 4, 1 << 20)
            options = f"size={share},mode=0700,uid={uid},gid={uid}"
            _mount(libc, "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)
        os.umask(0o022)
        if rebuild:
            os.makedirs(os.path.dirname(workdir), mode=0o711, exist_ok=True)
            os.mkdir(workdir, 0o700)
            os.chown(workdir, uid, uid)
        for path, fd in back.items():  # read-only, at the same path; ``..`` stays in the tmpfs
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            _mount(libc, None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    finally:
        for fd in back.values():
            os.close(fd)


def set_limits(limits: RegionLimits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def _close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _reach_unreadable_paths(dir_fds: dict[str, int]) -> None:
    """After dropping privileges, reach import paths the region uid cannot traverse (e.g. an
    interpreter under a ``0700`` home) through directory descriptors opened while privileged.

    ``/proc/self/fd/N`` resolves to the directory itself, so only that read-only subtree becomes
    reachable, not its parents.
    """
    remap = {}
    for path, fd in dir_fds.items():
        if os.access(path, os.R_OK | os.X_OK):
            os.close(fd)
        else:
            remap[path] = f"/proc/self/fd/{fd}"
    if not remap:
        return

    def rewrite(entry: str) -> str:
        for prefix, target in remap.items():
            if entry == prefix or entry.startswith(prefix + os.sep):
                return target + entry[len(prefix) :]
        return entry

    sys.path[:] = [rewrite(p) for p in sys.path]
    for module in list(sys.modules.values()):
        module_path = getattr(module, "__path__", None)
        if isinstance(module_path, list):
            module_path[:] = [rewrite(p) for p in module_path]
    sys.path_importer_cache.clear()


def confine(
    *,
    sock_fd: int,
    workdir: str,
    uid: int | None,
    own_netns: bool,
    private_tmp: bool,
    limits: RegionLimits,
    zygote_pid: int,
) -> None:
    """Confine the current (freshly forked) process; see the module docstring for the steps."""
    os.setsid()
    libc = _libc()
    _prctl(libc, PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote_pid:  # the zygote died between fork and prctl
        os._exit(70)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    if own_netns:
        own_network_namespace()
    if private_tmp and uid is not None:
        private_scratch(workdir, uid, limits.scratch_bytes, keep=tuple(sys.path))
        tmpdir = "/tmp"
    else:
        tmpdir = os.path.join(workdir, "tmp")  # made by the zygote, removed with the working directory
    os.dup2(sock_fd, 0)
    os.dup2(sock_fd, 1)
    _close_fds({0, 1, 2})
    dir_fds: dict[str, int] = {}
    if uid is not None:
        for path in dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)):
            dir_fds[path] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    set_limits(limits)
    os.chdir(workdir)
    os.umask(0o077)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        os.kill(-1, signal.SIGKILL)  # anything still running under this uid (not us) is a leftover
        _prctl(libc, PR_SET_DUMPABLE, 1)  # /proc/<pid> stays owned by the uid: the host finds strays by it
        _reach_unreadable_paths(dir_fds)
    else:
        _prctl(libc, PR_SET_DUMPABLE, 0)
    _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
    env = {k: os.environ[k] for k in SAFE_ENV_KEYS if k in os.environ}
    env.update(HOME=workdir, TMPDIR=tmpdir)
    os.environ.clear()
    os.environ.update(env)
    random.seed()  # do not share the zygote's PRNG state between regions
