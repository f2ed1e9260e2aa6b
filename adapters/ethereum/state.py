"""The adapter's persistent state: one small JSON file, replaced atomically on every change.

It holds where the scan of the chain stands (the next block to read, the last handled log inside a
partially handled block, the hash of the last fully handled block), the requests and subscriptions
in progress, and the failures that were given up on (reported). See docs/adapters.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from shared.ledger.chain import GENESIS_HASH

VERSION = 1
#: Finished requests remembered (so a rescan after a deep reorg does not even ask the chain again).
DONE_KEPT = 1000


def new_ledger_cursor() -> dict[str, Any]:
    """Where following the fabric's ledger stands: the next sequence to read, the hash of the last
    verified entry (the genesis hash before entry 1) and its stream, retries, and why it halted."""
    return {"next": 1, "prev_hash": GENESIS_HASH, "stream": None, "attempts": 0, "next_try": 0.0, "halted": None}


class State:
    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: Path, *, chain_id: int, proxy: str, start_block: int) -> State:
        path = Path(path)
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("version") != VERSION:
                raise SystemExit(f"state file {path}: unsupported version {data.get('version')!r}")
            if data.get("chain_id") != chain_id or data.get("proxy", "").lower() != proxy.lower():
                raise SystemExit(
                    f"state file {path} belongs to chain {data.get('chain_id')} proxy "
                    f"{data.get('proxy')}, not chain {chain_id} proxy {proxy}"
                )
            data.setdefault("ledger", new_ledger_cursor())
            return cls(path, data)
        data = {
            "version": VERSION,
            "chain_id": chain_id,
            "proxy": proxy,
            "next_block": start_block,
            "cursor": None,
            "last_block_hash": None,
            "requests": {},
            "subscriptions": {},
            "done": [],
            "failed": [],
            "ledger": new_ledger_cursor(),
        }
        state = cls(path, data)
        state.save()
        return state

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        with os.fdopen(fd, "w") as file:
            json.dump(self.data, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)

    # -- convenience -------------------------------------------------------------------------------
    @property
    def requests(self) -> dict[str, dict[str, Any]]:
        return self.data["requests"]

    @property
    def ledger(self) -> dict[str, Any]:
        return self.data["ledger"]

    @property
    def subscriptions(self) -> dict[str, dict[str, Any]]:
        return self.data["subscriptions"]

    def finish_request(self, request_id: str, outcome: str) -> None:
        self.requests.pop(request_id, None)
        done = self.data["done"]
        done.append([request_id, outcome])
        del done[:-DONE_KEPT]

    def is_done(self, request_id: str) -> bool:
        return any(entry[0] == request_id for entry in self.data["done"])

    def report_failure(self, record: dict[str, Any]) -> None:
        self.data["failed"].append(record)
