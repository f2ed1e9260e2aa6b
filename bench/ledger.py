"""Ledger benchmark against a private Azurite: appends (single and group commit), verify and receipts.

    .venv/bin/python bench/ledger.py [--entries 100000] [--runs 3]

Prints progress lines, then as its LAST line one JSON object:

* ``appends_per_s_single``  one caller appending one entry at a time (median of runs)
* ``appends_per_s_group``   128 concurrent callers in one process, group-committed (median of runs)
* ``verify_entries_per_s``  the audit's CPU work at ``--entries``: rebuild each entry's bytes,
  check hash and link, compute every Merkle leaf and the root (rows already read; median of runs)
* ``verify_from_storage_entries_per_s``  the whole audit including reading the rows from Azurite
* ``receipt_ms``            median time of a receipt (storage read of the entry and of the newest
  checkpoint + inclusion proof) at ``--entries``, on a warm index; ``receipt_p99_ms`` too
* ``index_cold_s``          building the host's index from storage once (a cold instance)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost.azurite import Azurite
from shared.ledger.audit import audit, roots_at
from shared.ledger.chain import Ledger, walk_chain
from shared.ledger.checkpoint_store import CheckpointStore
from shared.ledger.checkpoints import CheckpointSigner, origin_of
from shared.ledger.index import LedgerIndex
from shared.storage import table_client


def payload(n: int) -> dict:
    return {"scope": "fabric", "policy": {"n": n, "maxRegions": 4, "note": "benchmark entry"}}


def single(conn: str, table: str, count: int) -> float:
    ledger = Ledger(table_client(conn, table))
    start = time.perf_counter()
    for n in range(count):
        ledger.append("policy.set", payload(n))
    return count / (time.perf_counter() - start)


def group(conn: str, table: str, callers: int, per_caller: int) -> tuple[float, dict]:
    ledger = Ledger(table_client(conn, table))
    barrier = threading.Barrier(callers + 1)

    def work() -> None:
        barrier.wait()
        for n in range(per_caller):
            ledger.append("policy.set", payload(n))

    threads = [threading.Thread(target=work) for _ in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    rate = callers * per_caller / (time.perf_counter() - start)
    return rate, {"transactions": ledger.stats.transactions, "largest_batch": ledger.stats.largest_batch}


def fill(ledger: Ledger, entries: int) -> None:
    done = ledger.head().size
    lock = threading.Lock()

    def work() -> None:
        nonlocal done
        while True:
            with lock:
                if done >= entries:
                    return
                count = min(99, entries - done)
                done += count
            ledger.append_all([("policy.set", payload(n)) for n in range(count)])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result: dict = {"entries": args.entries}
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as data, Azurite(Path(data)) as azurite:
        conn = azurite.connection_string
        singles = [single(conn, f"single{r}", 300) for r in range(args.runs)]
        result["appends_per_s_single"] = round(statistics.median(singles))
        print(f"single appends/s: {[round(x) for x in singles]}", flush=True)
        groups = [group(conn, f"group{r}", 128, 40) for r in range(args.runs)]
        result["appends_per_s_group"] = round(statistics.median(g for g, _ in groups))
        print(f"group-commit appends/s (128 callers): {[round(g) for g, _ in groups]}; {groups[-1][1]}", flush=True)

        table = table_client(conn, "bigledger")
        ledger = Ledger(table)
        start = time.perf_counter()
        fill(ledger, args.entries)
        print(f"filled {args.entries} entries in {time.perf_counter() - start:.1f}s", flush=True)

        start = time.perf_counter()
        rows = list(ledger.rows())
        read_s = time.perf_counter() - start
        result["read_entries_per_s"] = round(len(rows) / read_s)
        rates = []
        for _ in range(max(args.runs, 5)):
            start = time.perf_counter()
            leaves: list[bytes] = []
            size, _ = walk_chain(rows, ledger.stream, leaf_hashes=leaves)
            roots_at(leaves, {size})
            rates.append(size / (time.perf_counter() - start))
        result["verify_entries_per_s"] = round(statistics.median(rates))
        print(
            f"verify (CPU) entries/s: {[round(r) for r in rates]}; reading rows: {result['read_entries_per_s']}/s",
            flush=True,
        )

        signer = CheckpointSigner.from_secret(b"\x07" * 32, origin_of(ledger.stream))
        index = LedgerIndex(ledger, CheckpointStore(table, ledger.stream), signer)
        start = time.perf_counter()
        index.sync()
        result["index_cold_s"] = round(time.perf_counter() - start, 2)
        index.checkpoint()
        start = time.perf_counter()
        report = audit(ledger, index.store, signer.verifier)
        result["verify_from_storage_entries_per_s"] = round(report.head.size / (time.perf_counter() - start))
        timings = []
        for sequence in random.Random(7).sample(range(1, args.entries + 1), 200):
            start = time.perf_counter()
            receipt = index.receipt(sequence)
            timings.append((time.perf_counter() - start) * 1000)
            receipt.verify(signer.verifier)
        timings.sort()
        result["receipt_ms"] = round(statistics.median(timings), 2)
        result["receipt_p99_ms"] = round(timings[int(len(timings) * 0.99) - 1], 2)
        print(
            f"receipts: median {result['receipt_ms']} ms, p99 {result['receipt_p99_ms']} ms; "
            f"cold index {result['index_cold_s']} s; audit from storage "
            f"{result['verify_from_storage_entries_per_s']} entries/s",
            flush=True,
        )
    result["targets_met"] = {
        "appends_per_s_group>=1500": result["appends_per_s_group"] >= 1500,
        "verify_entries_per_s>=200000": result["verify_entries_per_s"] >= 200_000,
        "receipt_ms<=20": result["receipt_ms"] <= 20,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
