"""A queued request whose host is killed mid-call (kill -9) is run again by another host within a
bounded time, and completes exactly once: the contract's state advances once.

Three hosts share one Azurite: the module's host accepts requests and sweeps but runs no queued
request (``AzureWebJobs.run_queued_invocation.Disabled``); two workers run them. The worker that
took the request (the request row names it) is killed with its regions; the other takes over once
the lease (``FABRIC_REQUEST_LEASE_S``, default 30 s) ran out and a sweep (every 10 s) re-enqueued it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from devhost.ports import free_port, wait_for_port
from shared.envelope import Envelope, verify_envelope
from shared.host.queued_calls import RequestStore
from shared.storage import table_client
from tests.e2e.conftest import children_of, pid_alive, register, start_host
from tests.helpers import wait_for

FABRIC_HOST_SETTINGS = {"AzureWebJobs.run_queued_invocation.Disabled": "true"}
LEASE_S = 30  # the default FABRIC_REQUEST_LEASE_S
SWEEP_S = 10  # the default FABRIC_REQUEST_SWEEP_SCHEDULE
SLEEP_S = 6  # how long the call takes


def descendants(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *descendants(child)]
    return found


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_killed_hosts_request_completes_once_on_another_host(fabric_host, tmp_path: Path):
    registration = register(fabric_host, "slow_counter")
    env = {**fabric_host.env, "AzureWebJobs.run_queued_invocation.Disabled": "false"}
    workers: dict[int, subprocess.Popen] = {}
    leftovers: list[int] = []
    try:
        for n in range(2):
            port = free_port()
            process = start_host(env, port, tmp_path / f"worker{n}.log")
            wait_for_port(port, 60, process)
            workers[process.pid] = process
        store = RequestStore(table_client(fabric_host.storage, f"{fabric_host.table_prefix}requests"))
        request_id = "0x" + secrets.token_hex(32)
        with fabric_host.client() as http:
            accepted = http.post(
                "/api/cryptlets/slow_counter/requests",
                json={"method": "count", "args": {"sleep_s": SLEEP_S}, "request_id": request_id},
            )
            assert accepted.status_code == 202, accepted.text
            row = wait_for(
                lambda: (r := store.read(request_id)) is not None and r.status == "running" and r, timeout=60
            )
            victim = int(row.entity["worker"].rsplit(":", 1)[1])
            assert victim in workers
            time.sleep(1)  # mid-call: the region is sleeping
            leftovers = descendants(victim)
            os.killpg(victim, signal.SIGKILL)
            workers.pop(victim).wait()
            for pid in leftovers:  # regions in their own sessions
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            bound = LEASE_S + SWEEP_S + SLEEP_S + 10
            result = wait_for(
                lambda: (
                    (r := http.get(accepted.headers["location"]).json())["status"] not in ("pending", "running") and r
                ),
                timeout=bound,
                interval=0.5,
            )
            recovered_in = time.monotonic() - killed
            state = http.get("/api/cryptlets/slow_counter/state").json()
        assert result["status"] == "done", result
        assert result["attempts"] == 2
        assert recovered_in < 60
        envelope = Envelope.from_dict(result["envelope"])
        assert verify_envelope(envelope, registration["address"])
        assert result["envelope"]["payload"]["result"] == {"count": 1}
        assert state["version"] == 1 and state["state"] == {"count": 1}, state
        (survivor,) = workers
        assert store.read(request_id).entity["worker"].endswith(f":{survivor}")
    finally:
        for process in workers.values():
            stop(process)
        for pid in leftovers:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
