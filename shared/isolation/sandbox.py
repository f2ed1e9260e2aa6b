"""Confinement of a ``process`` region: what a freshly forked region does to itself before it runs.

:func:`confine` runs in the child the zygote forked, before any cryptlet code, in this order:

1. own session and process group; die with the zygote (``PR_SET_PDEATHSIG``);
2. as root: own, empty network namespace (no interfaces up: no network at all);
3. stdin/stdout become the region's protocol socket; every other descriptor is closed;
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
import sys
from dataclasses import asdict, dataclass
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNET = 0x40000000
SAFE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ")


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


def own_network_namespace() -> None:
    """Move into a new network namespace (only loopback, down): the region has no network."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")


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
    *, sock_fd: int, workdir: str, uid: int | None, own_netns: bool, limits: RegionLimits, zygote_pid: int
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
    env.update(HOME=workdir, TMPDIR=workdir)
    os.environ.clear()
    os.environ.update(env)
    random.seed()  # do not share the zygote's PRNG state between regions
