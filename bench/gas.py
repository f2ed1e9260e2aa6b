"""Gas of storing a verified cryptlet report in MessageQueue (issue #7), on eth-tester + py-evm.

Builds the contracts from source with the pinned solc-js (evmVersion prague), deploys a
single-signer queue, a 3-of-5 quorum queue and the naive baseline (contracts/bench/
NaiveMessageQueue.sol), signs envelopes with the fabric's own code (shared.envelope) and submits
them. ``first`` is the transaction storing the first report a queue ever gets (its storage slots
go from zero to non-zero), ``warm`` the median of later reports (a new value each time). Gas is the
receipt's gasUsed: the whole transaction, 21,000 base and calldata included.

Prints a few lines, then one JSON object as its last line. Needs no storage or host.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import coincurve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "contracts"))
import contracts_harness as harness  # noqa: E402  (contracts/contracts_harness.py: build, deploy, call, decode errors)

from shared.encoding import keccak256  # noqa: E402
from shared.envelope import Domain, Envelope, address_of, sign_envelope, topic_hash  # noqa: E402

WARM_REPORTS = 9
TOPIC = "market_watcher.gold"
DIGEST = bytes.fromhex("07" * 32)
KEYS = [keccak256(f"cryptlet-fabric gas bench key {i}".encode()) for i in range(5)]
ADDRESSES = [address_of(coincurve.PrivateKey(k).public_key.format()) for k in KEYS]
POOL = "0x" + "5a" * 20
ZERO_ADDRESS = "0x" + "00" * 20


class Reports:
    """Fabric-format envelopes for one contract, each with a new sequence and value."""

    def __init__(self, contract: harness.Contract, cryptlet: str):
        self.contract, self.cryptlet, self.n = contract, cryptlet, 0
        self.domain = Domain(contract.chain.chain_id, contract.address)

    def next(self) -> Envelope:
        self.n += 1
        return Envelope(
            cryptlet=self.cryptlet,
            name="market_watcher",
            digest=DIGEST,
            topic=TOPIC,
            request_id=keccak256(b"bench request %d" % self.n),
            sequence=1_764_000_000_000_000 + self.n,
            timestamp_ms=int(time.time() * 1000),
            payload={"gold": f"{2650 + self.n}.10"},
            domain=self.domain,
            registration={"stream": "ledger", "sequence": 3, "entry_hash": "0x" + "3c" * 32},
            evidence={"kind": "process", "hash": "0x" + "ee" * 32},
        )


def fields(e: Envelope) -> tuple:
    return (
        e.cryptlet,
        e.digest,
        topic_hash(e.topic),
        e.request_id,
        e.sequence,
        e.timestamp_ms,
        e.payload_hash,
        e.evidence_hash,
        e.registration_hash,
    )


def vrs(signature: bytes) -> tuple:
    return (signature[64], signature[:32], signature[32:64])


def calldata_gas(data: bytes) -> int:
    """What the calldata adds to the 21,000 intrinsic gas: 4 per zero byte, 16 per other byte."""
    return sum(4 if b == 0 else 16 for b in data)


def measure(submit, count: int) -> tuple[int, int, bytes]:
    """(first, median warm, calldata of a warm report)."""
    first, _ = submit()
    warm, data = zip(*(submit() for _ in range(count)), strict=False)
    return first, int(statistics.median(warm)), data[-1]


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        artifacts = harness.build(Path(out), evm_version="prague")
    info = artifacts["build-info"]
    chain = harness.Chain()
    owner = chain.accounts[0]

    single = chain.deploy(artifacts["MessageQueue"], owner, topic_hash(TOPIC), DIGEST, 3600, 1, ZERO_ADDRESS, 0)
    single.transact("addSigner", ADDRESSES[0], bytes(32))
    reports = Reports(single, ADDRESSES[0])

    def submit_single():
        e = sign_envelope(reports.next(), KEYS[0])
        args = (fields(e), chain.chain_id, vrs(e.signature))
        return single.transact("submit", *args).gas_used, single.calldata("submit", *args)

    quorum = chain.deploy(artifacts["MessageQueue"], owner, topic_hash(TOPIC), DIGEST, 3600, 3, POOL, 5)
    for address in ADDRESSES:
        quorum.transact("addSigner", address, bytes(32))
    pool_reports = Reports(quorum, POOL)
    signers = sorted(range(5), key=lambda i: int(ADDRESSES[i], 16))[:3]

    def submit_quorum():
        e = pool_reports.next()
        sigs = [vrs(sign_envelope(e, KEYS[i]).signature) for i in signers]
        args = (fields(e), chain.chain_id, sigs)
        return quorum.transact("submitQuorum", *args).gas_used, quorum.calldata("submitQuorum", *args)

    naive = chain.deploy(artifacts["NaiveMessageQueue"])
    naive.transact("addSigner", ADDRESSES[0])
    naive_reports = Reports(naive, ADDRESSES[0])

    def submit_naive():
        e = sign_envelope(naive_reports.next(), KEYS[0])
        args = (fields(e), e.signature)
        return naive.transact("submit", *args).gas_used, naive.calldata("submit", *args)

    single_first, single_warm, single_data = measure(submit_single, WARM_REPORTS)
    quorum_first, quorum_warm, quorum_data = measure(submit_quorum, WARM_REPORTS)
    naive_first, naive_warm, naive_data = measure(submit_naive, WARM_REPORTS)
    single_bytes, quorum_bytes, naive_bytes = len(single_data), len(quorum_data), len(naive_data)

    figures = {
        "gas_single_first": single_first,
        "gas_single_warm": single_warm,
        "gas_quorum_3of5_first": quorum_first,
        "gas_quorum_3of5_warm": quorum_warm,
        "gas_naive_first": naive_first,
        "gas_naive_warm": naive_warm,
        "calldata_bytes_single": single_bytes,
        "calldata_bytes_quorum_3of5": quorum_bytes,
        "calldata_bytes_naive": naive_bytes,
        "calldata_gas_single": calldata_gas(single_data),
        "calldata_gas_quorum_3of5": calldata_gas(quorum_data),
        "execution_gas_single_warm": single_warm - 21_000 - calldata_gas(single_data),
        "execution_gas_quorum_3of5_warm": quorum_warm - 21_000 - calldata_gas(quorum_data),
        "warm_saving_vs_naive": round(1 - single_warm / naive_warm, 3),
        "target_single_warm_met": single_warm <= 50_000,
        "target_quorum_3of5_warm_met": quorum_warm <= 75_000,
        "solc": info["solcVersion"].split("+")[0],
        "evm_version": info["settings"]["evmVersion"],
        "optimizer_runs": info["settings"]["optimizer"]["runs"],
        "evm": f"py-evm {_version('py-evm')} ({type(chain.backend.chain.get_vm()).__name__})",
        "eth_tester": _version("eth-tester"),
        "warm_reports": WARM_REPORTS,
    }
    print(f"single  : first {single_first:,}  warm {single_warm:,}  (target <= 50,000)  calldata {single_bytes} B")
    print(f"3-of-5  : first {quorum_first:,}  warm {quorum_warm:,}  (target <= 75,000)  calldata {quorum_bytes} B")
    print(f"naive   : first {naive_first:,}  warm {naive_warm:,}  calldata {naive_bytes} B")
    print(json.dumps(figures))


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
