"""Test and benchmark support for the contracts: build with solc-js, deploy and call on a real EVM.

Used by ``tests/integration/contracts/test_contracts.py`` and ``bench/gas.py`` (not by the fabric itself). The EVM is
``eth-tester`` over ``py-evm`` (Prague rules); artifacts are built from source by
``contracts/build.js`` into a directory the caller chooses, never read from a committed copy.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eth_abi
from eth.vm.spoof import SpoofTransaction
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import _execute_and_revert_transaction
from eth_utils import keccak, to_checksum_address

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GAS = 3_000_000


def build(out_dir: Path, evm_version: str = "prague", include: list[Path] = ()) -> dict[str, dict[str, Any]]:
    """Compile every contract (plus the *.sol of ``include`` folders) with the pinned solc-js;
    return ``{name: artifact}`` and ``"build-info"``. Compiler errors raise with solc's messages."""
    command = ["node", str(HERE / "build.js"), "--evm-version", evm_version, "--out", str(out_dir)]
    for folder in include:
        command += ["--include", str(folder)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"contracts/build.js failed:\n{done.stderr}")
    artifacts = {}
    for path in sorted(Path(out_dir).glob("*.json")):
        if path.name != "build-info.json":
            artifact = json.loads(path.read_text())
            artifacts[artifact["contractName"]] = artifact
    artifacts["build-info"] = json.loads((Path(out_dir) / "build-info.json").read_text())
    return artifacts


def abi_type(item: dict[str, Any]) -> str:
    """The canonical ABI type of an ABI input/output (tuples expanded)."""
    t = item["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(abi_type(c) for c in item["components"]) + ")" + t[len("tuple") :]
    return t


def signature(item: dict[str, Any]) -> str:
    return f"{item['name']}(" + ",".join(abi_type(i) for i in item["inputs"]) + ")"


def selector(item: dict[str, Any]) -> bytes:
    return keccak(text=signature(item))[:4]


class Reverted(Exception):
    """A call or transaction reverted; ``name``/``args`` decode a custom error from the ABI."""

    def __init__(self, data: bytes, name: str | None, args: tuple[Any, ...]):
        super().__init__(f"{name or 'revert'}{args if name else ' 0x' + data.hex()}")
        self.data, self.name, self.args = data, name, args

    @property
    def selector(self) -> bytes:
        return self.data[:4]


@dataclass
class Receipt:
    gas_used: int
    logs: list[dict[str, Any]]
    block_number: int


class Chain:
    """One eth-tester chain over py-evm, with its funded test accounts."""

    def __init__(self) -> None:
        self.backend = PyEVMBackend()
        self.tester = EthereumTester(self.backend)
        self.accounts = self.tester.get_accounts()
        self.chain_id = self.backend.chain.chain_id

    def deploy(self, artifact: dict[str, Any], *args: Any, sender: str | None = None) -> Contract:
        ctor = next((i for i in artifact["abi"] if i["type"] == "constructor"), {"inputs": []})
        data = bytes.fromhex(artifact["bytecode"][2:]) + eth_abi.encode(
            [abi_type(i) for i in ctor["inputs"]], list(args)
        )
        tx = {"from": sender or self.accounts[0], "gas": 10_000_000, "data": "0x" + data.hex()}
        self._check(tx, errors_of(artifact["abi"]))
        receipt = self.tester.get_transaction_receipt(self.tester.send_transaction(tx))
        if receipt["status"] != 1:
            raise RuntimeError(f"deployment of {artifact['contractName']} failed")
        return Contract(self, to_checksum_address(receipt["contract_address"]), artifact["abi"])

    def timestamp(self) -> int:
        return self.tester.get_block_by_number("latest")["timestamp"]

    def time_travel(self, seconds: int) -> None:
        self.tester.time_travel(self.timestamp() + seconds)

    def _raw_call(self, tx: dict[str, Any]):
        """Execute ``tx`` against the latest state and revert it; return the computation."""
        normalized = self.tester.normalizer.normalize_inbound_transaction(dict(tx))
        unsigned = self.backend._get_normalized_and_unsigned_evm_transaction(normalized, "latest")
        return _execute_and_revert_transaction(
            self.backend.chain, SpoofTransaction(unsigned, from_=normalized["from"]), "latest"
        )

    def _check(self, tx: dict[str, Any], errors: dict[bytes, dict[str, Any]]):
        computation = self._raw_call(tx)
        if computation.is_error:
            data = bytes(computation.output)
            item = errors.get(data[:4])
            if item is None:
                raise Reverted(data, None, ())
            decoded = eth_abi.decode([abi_type(i) for i in item["inputs"]], data[4:])
            raise Reverted(data, item["name"], tuple(decoded))
        return computation


def errors_of(abi: list[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    return {selector(i): i for i in abi if i["type"] == "error"}


class Contract:
    def __init__(self, chain: Chain, address: str, abi: list[dict[str, Any]]):
        self.chain, self.address, self.abi = chain, address, abi
        self.functions = {}
        for item in abi:
            if item["type"] == "function":
                self.functions.setdefault(item["name"], []).append(item)
        self.errors = errors_of(abi)
        self.events = {keccak(text=signature(i)): i for i in abi if i["type"] == "event"}

    def _function(self, name: str, args: tuple[Any, ...]) -> dict[str, Any]:
        candidates = [f for f in self.functions[name] if len(f["inputs"]) == len(args)]
        if len(candidates) != 1:
            raise TypeError(f"{name} with {len(args)} arguments is ambiguous or unknown")
        return candidates[0]

    def calldata(self, name: str, *args: Any) -> bytes:
        item = self._function(name, args)
        return selector(item) + eth_abi.encode([abi_type(i) for i in item["inputs"]], list(args))

    def call(self, name: str, *args: Any, sender: str | None = None) -> Any:
        """A read (eth_call); returns the single output or a tuple; raises :class:`Reverted`."""
        item = self._function(name, args)
        tx = {
            "from": sender or self.chain.accounts[0],
            "to": self.address,
            "gas": GAS,
            "data": "0x" + self.calldata(name, *args).hex(),
        }
        computation = self.chain._check(tx, self.errors)
        out = eth_abi.decode([abi_type(i) for i in item["outputs"]], bytes(computation.output))
        return out[0] if len(out) == 1 else out

    def transact(self, name: str, *args: Any, sender: str | None = None, gas: int = GAS) -> Receipt:
        """Send a transaction; raises :class:`Reverted` (decoded) if it would revert."""
        tx = {
            "from": sender or self.chain.accounts[0],
            "to": self.address,
            "gas": gas,
            "data": "0x" + self.calldata(name, *args).hex(),
        }
        self.chain._check(tx, self.errors)
        receipt = self.chain.tester.get_transaction_receipt(self.chain.tester.send_transaction(tx))
        if receipt["status"] != 1:
            raise RuntimeError(f"{name} failed after its dry run passed")
        return Receipt(receipt["gas_used"], [self._decode_log(log) for log in receipt["logs"]], receipt["block_number"])

    def _decode_log(self, log: dict[str, Any]) -> dict[str, Any]:
        topics = [bytes(t) if not isinstance(t, str) else bytes.fromhex(t[2:]) for t in log["topics"]]
        item = self.events.get(topics[0]) if topics else None
        if item is None:
            return {"event": None, "raw": log}
        indexed = [i for i in item["inputs"] if i["indexed"]]
        plain = [i for i in item["inputs"] if not i["indexed"]]
        data = log["data"] if isinstance(log["data"], bytes) else bytes.fromhex(log["data"][2:])
        values = dict(zip([i["name"] for i in plain], eth_abi.decode([abi_type(i) for i in plain], data), strict=False))
        for i, topic in zip(indexed, topics[1:], strict=False):
            values[i["name"]] = eth_abi.decode([abi_type(i)], topic)[0]
        return {"event": item["name"], "args": values}
