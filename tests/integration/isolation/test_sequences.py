"""Envelope sequence numbers leased in ranges from Azurite: several processes (hosts) reserving blocks
for the same signing keys at once never get overlapping blocks, and each one's blocks increase."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from shared.clock import now_us
from shared.isolation.sequences import PARTITION, SequenceLeases
from shared.storage import table_client
from tests.conftest import PROJECT_ROOT

PROCESSES, THREADS, BLOCKS, BLOCK = 3, 4, 150, 17
SIGNERS = ("0x" + "aa" * 20, "0x" + "BB" * 20)


def reserver(storage: str, table: str, process: int, blocks: int, threads: int, range_size: int) -> None:
    """Runs in a child process: ``threads`` threads reserve ``blocks`` blocks each, alternating between
    the signers; prints ``[process, thread, signer, first]`` lines and finally the lease count."""
    leases = SequenceLeases(table_client(storage, table), range_size=range_size)
    lock = threading.Lock()

    def work(thread: int) -> None:
        for i in range(blocks):
            signer = SIGNERS[i % 2]
            first = leases.next(signer, BLOCK)
            with lock:
                print(json.dumps([process, thread, signer.lower(), first]), flush=True)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps({"leases": leases.leases, "races": leases.races}), flush=True)


def run_reservers(storage: str, table: str, range_size: int) -> tuple[list[list], list[dict]]:
    code = (
        "import sys; from tests.integration.isolation.test_sequences import reserver; "
        "reserver(*sys.argv[1:3], *map(int, sys.argv[3:]))"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, storage, table, str(p), str(BLOCKS), str(THREADS), str(range_size)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(PROCESSES)
    ]
    blocks, stats = [], []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-2000:]
        for line in out.splitlines():
            item = json.loads(line)
            (stats if isinstance(item, dict) else blocks).append(item)
    return blocks, stats


def assert_disjoint(blocks: list[list]) -> None:
    """No two blocks of one signer share a number; every thread's blocks per signer increase."""
    for signer in {s.lower() for s in SIGNERS}:
        firsts = sorted(first for _, _, s, first in blocks if s == signer)
        assert len(firsts) == PROCESSES * THREADS * BLOCKS // 2
        assert all(b - a >= BLOCK for a, b in zip(firsts, firsts[1:], strict=False)), "overlapping blocks"
    seen: dict[tuple, int] = {}
    for process, thread, signer, first in blocks:
        key = (process, thread, signer)
        assert first > seen.get(key, -1)
        seen[key] = first


def test_three_processes_reserving_blocks_for_two_keys_never_overlap(storage, unique_name):
    started = now_us()
    blocks, stats = run_reservers(storage, unique_name, range_size=8 * BLOCK)  # small ranges: many leases and races
    assert_disjoint(blocks)
    assert min(first for *_, first in blocks) >= started  # numbers start at the time in microseconds
    assert sum(s["leases"] for s in stats) >= PROCESSES * THREADS * BLOCKS // 8  # really leased over and over
    assert sum(s["races"] for s in stats) > 0  # and the hosts really raced for the rows

    table = table_client(storage, unique_name)
    for signer in SIGNERS:  # the stored row is above every number handed out for its key
        highest = max(first for _, _, s, first in blocks if s == signer.lower()) + BLOCK
        assert int(table.get_entity(PARTITION, signer.lower())["next"]) >= highest
    table.delete_table()


def test_a_new_host_continues_above_every_range_and_an_idle_range_expires(storage, unique_name):
    table = table_client(storage, unique_name)
    first_host = SequenceLeases(table, range_size=1_000_000_000, max_age_s=0.2)  # far ahead of the clock
    a = first_host.next(SIGNERS[0], BLOCK)
    b = first_host.next(SIGNERS[0], BLOCK)
    assert b == a + BLOCK and first_host.leases == 1  # handed out from memory
    restarted = SequenceLeases(table)
    c = restarted.next(SIGNERS[0], BLOCK)
    assert c >= a + 1_000_000_000  # above the whole range the first host still holds
    time.sleep(0.3)
    d = first_host.next(SIGNERS[0], BLOCK)
    assert first_host.leases == 2 and d >= c + restarted.range_size  # the old range was abandoned
    assert first_host.next(SIGNERS[1], 1) >= now_us() - 5_000_000  # another key: its own row, from the clock
    table.delete_table()
