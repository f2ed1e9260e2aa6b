"""Warm pools of regions per cryptlet (the sequence numbers their envelopes carry: ``sequences.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.errors import RegionError
from shared.isolation.provider import Region


class RegionPool:
    """Up to ``max_size`` warm regions for one cryptlet; a caller leases one for a call.

    Dead or retired regions (crashed, killed after a timeout or a fault, at the end of their CPU
    budget) are dropped, both when a lease returns one and when an idle one is found dead, and
    are replaced by a fresh region on the next lease.
    """

    def __init__(self, factory: Callable[[], Region], max_size: int, *, wait_timeout: float = 30.0) -> None:
        self._factory = factory
        self._max = max_size
        self._wait_timeout = wait_timeout
        self._idle: list[Region] = []
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    def add(self, region: Region) -> None:
        """Adopt an already running region (e.g. the one that generated the key at registration)."""
        with self._cond:
            if self._closed or self._count >= self._max:
                region.close()
                return
            self._count += 1
            self._idle.append(region)
            self._cond.notify()

    @property
    def max_size(self) -> int:
        return self._max

    @property
    def size(self) -> int:
        """Regions this pool holds right now, leased or idle."""
        with self._cond:
            return self._count

    def resize(self, max_size: int) -> None:
        """Change the most regions (a policy changed); idle regions above it stop at once, leased
        ones when they come back."""
        with self._cond:
            self._max = max_size
            extra: list[Region] = []
            while self._count > self._max and self._idle:
                extra.append(self._idle.pop(0))
                self._count -= 1
            self._cond.notify_all()
        for region in extra:
            region.close()

    def warm(self, count: int) -> int:
        """Start idle regions until the pool holds ``count`` (at most its maximum); return how many started."""
        started = 0
        while True:
            with self._cond:
                if self._closed or self._count >= min(count, self._max):
                    return started
                self._count += 1
            try:
                region = self._factory()
            except BaseException:
                with self._cond:
                    self._count -= 1
                    self._cond.notify()
                raise
            self._release(region)
            started += 1

    def lease(self) -> Lease:
        """``with pool.lease() as region:`` a region for one call, returned to the pool afterwards."""
        return Lease(self)

    def _acquire(self) -> Region:
        deadline = time.monotonic() + self._wait_timeout
        dead: list[Region] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise RegionError("region pool is closed")
                    while self._idle:
                        region = self._idle.pop()
                        if region.alive:
                            return region
                        self._count -= 1  # died while idle (e.g. CPU limit): replace it
                        dead.append(region)
                    if self._count < self._max:
                        self._count += 1
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._cond.wait(remaining):
                        raise RegionError("no region became free in time", region_code="busy")
        finally:
            for region in dead:
                region.close()
        try:
            return self._factory()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, region: Region) -> None:
        with self._cond:
            keep = region.alive and not self._closed and self._count <= self._max
            if keep:
                self._idle.append(region)
            else:
                self._count -= 1
            self._cond.notify()
        if not keep:
            region.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for region in idle:
            region.close()

    def drain(self, timeout: float) -> bool:
        """Close the pool and wait until every leased region came back; False if ``timeout`` ran out."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for region in idle:
            region.close()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))  # short slices: a release may notify another waiter
        return True


class Lease:
    """The context manager :meth:`RegionPool.lease` returns (a class: cheaper than a generator-based one)."""

    __slots__ = ("_pool", "_region")

    def __init__(self, pool: RegionPool) -> None:
        self._pool = pool
        self._region: Region | None = None

    def __enter__(self) -> Region:
        self._region = self._pool._acquire()
        return self._region

    def __exit__(self, *exc: object) -> None:
        if self._region is not None:
            self._pool._release(self._region)
            self._region = None
