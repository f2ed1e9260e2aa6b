"""Storage dies during appends: what was acknowledged survives, and no batch is half-written.

Azurite keeps tables in memory (LokiJS) and writes the whole database to disk every 5 s and on a
clean shutdown, atomically (temp file + rename). So:

* stopped cleanly (SIGTERM) during appends, every acknowledged append is there afterwards;
* killed (SIGKILL), the appends acknowledged since its last save are lost, as a *suffix* of the
  ledger: what is left is a consistent earlier state (never part of a transaction), every
  acknowledged entry Azurite had saved is intact, and writers carry on from there. Azure Table
  storage itself acknowledges a transaction only once it is durable; this loss is the
  emulator's (see docs/ledger.md, "Durability").
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from devhost.azurite import Azurite
from shared.ledger.chain import Ledger, LedgerEntry
from shared.storage import table_client

WRITERS = 12
DB_FILE = "__azurite_db_table__.json"


class Writers:
    """Threads appending until stopped; every acknowledged entry is kept with the time it was acknowledged."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.acknowledged: list[tuple[float, LedgerEntry]] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,)) for w in range(WRITERS)]

    def _run(self, writer: int) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                entry = self.ledger.append("policy.set", {"scope": "fabric", "policy": {"w": writer, "i": i}})
                self.acknowledged.append((time.monotonic(), entry))
            except BaseException as exc:  # surfaced by the test
                self.errors.append(exc)
                return
            i += 1

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and time.monotonic() < deadline and not self.errors:
            time.sleep(0.01)


def _check(ledger: Ledger, acknowledged: list[tuple[float, LedgerEntry]]) -> tuple[list[LedgerEntry], set[tuple]]:
    """Verify the chain (so no half-written batch) and return the acknowledged entries not stored."""
    head = ledger.verify()  # every row links, and the head names the last one: transactions are whole
    stored = {e.sequence: e for e in ledger.read(1, head.size)}
    payloads = [(e.payload["policy"]["w"], e.payload["policy"]["i"]) for e in stored.values()]
    assert len(payloads) == len(set(payloads)), "an append was stored twice"
    lost = [
        e for _, e in acknowledged if stored.get(e.sequence) is None or stored[e.sequence].entry_hash != e.entry_hash
    ]
    return lost, set(payloads)


def test_clean_stop_during_appends_keeps_every_acknowledged_append(tmp_path):
    with Azurite(tmp_path / "azurite") as azurite:
        ledger = Ledger(table_client(azurite.connection_string, "crashledger"), deadline=60)
        with Writers(ledger) as writers:
            writers.wait_for(150)
            azurite.stop()  # SIGTERM: Azurite saves its database on the way out
            time.sleep(0.3)
            azurite.start()
            before = len(writers.acknowledged)
            writers.wait_for(before + 150)
        assert not writers.errors, writers.errors[:3]
        lost, _ = _check(Ledger(table_client(azurite.connection_string, "crashledger")), writers.acknowledged)
        assert lost == []


def test_kill_during_appends_loses_at_most_an_unsaved_suffix_and_never_half_a_batch(tmp_path):
    with Azurite(tmp_path / "azurite") as azurite:
        ledger = Ledger(table_client(azurite.connection_string, "crashledger"), deadline=60)
        db_file = Path(azurite.data_dir) / DB_FILE
        with Writers(ledger) as writers:
            writers.wait_for(200)
            _, marker = writers.acknowledged[-1]
            deadline = time.monotonic() + 20  # wait until Azurite has saved an acknowledged entry to disk
            while marker.entry_hash not in db_file.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert marker.entry_hash in db_file.read_text(errors="replace")
            writers.wait_for(len(writers.acknowledged) + 100)
            azurite.stop(kill=True)  # SIGKILL mid-append: whatever is unsaved is gone
            killed_at = time.monotonic()
            time.sleep(0.3)
            azurite.start()
            writers.wait_for(len(writers.acknowledged) + 150)
        assert not writers.errors, writers.errors[:3]
        lost, payloads = _check(Ledger(table_client(azurite.connection_string, "crashledger")), writers.acknowledged)
        acknowledged_at = {id(e): t for t, e in writers.acknowledged}
        assert all(e.sequence > marker.sequence for e in lost), "an entry saved before the kill was lost"
        assert all(acknowledged_at[id(e)] < killed_at for e in lost), "an entry acknowledged after the restart was lost"
        assert all((e.payload["policy"]["w"], e.payload["policy"]["i"]) not in payloads for e in lost)
        print(f"SIGKILL lost {len(lost)} of {len(writers.acknowledged)} acknowledged appends (Azurite's unsaved tail)")
