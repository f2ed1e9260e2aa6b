"""Several writer processes append to one ledger stream at once: no forks, no gaps, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from shared.ledger.chain import Ledger
from shared.storage import table_client
from tests.conftest import PROJECT_ROOT

PROCESSES, APPENDS, THREADS = 8, 500, 25


def writer(storage: str, table: str, process: int, appends: int, threads: int) -> None:
    """Runs in a child process: ``threads`` threads append ``appends`` entries in all; prints every
    acknowledged entry as ``[process, i, sequence, entry_hash]`` lines."""
    store = Ledger(table_client(storage, table), "registry")
    lock = threading.Lock()

    def work(offset: int) -> None:
        for i in range(offset, appends, threads):
            entry = store.append("policy.set", {"scope": "fabric", "policy": {"process": process, "i": i}})
            with lock:
                print(json.dumps([process, i, entry.sequence, entry.entry_hash]), flush=True)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_eight_processes_append_500_each_into_one_contiguous_valid_chain(storage, unique_name):
    table = table_client(storage, unique_name)
    code = (
        "import sys; from tests.integration.ledger.test_ledger_processes import writer; "
        "writer(*sys.argv[1:3], *map(int, sys.argv[3:]))"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, storage, unique_name, str(p), str(APPENDS), str(THREADS)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(PROCESSES)
    ]
    acknowledged = []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-2000:]
        acknowledged += [json.loads(line) for line in out.splitlines()]

    total = PROCESSES * APPENDS
    assert len(acknowledged) == total
    assert sorted(seq for _, _, seq, _ in acknowledged) == list(range(1, total + 1))  # no gap, no fork
    store = Ledger(table, "registry")
    assert store.verify().size == total
    stored = {e.sequence: e for e in store.read(1, total)}
    for process, i, sequence, entry_hash in acknowledged:  # each acknowledged entry is exactly where it was told
        entry = stored[sequence]
        assert entry.entry_hash == entry_hash
        assert entry.payload["policy"] == {"process": process, "i": i}
    assert len({(e.payload["policy"]["process"], e.payload["policy"]["i"]) for e in stored.values()}) == total
    table.delete_table()
