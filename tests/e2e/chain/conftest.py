"""The chain for the end-to-end chain tests: ganache on a free loopback port (``ganache``) and the
contracts built for its EVM (``artifacts``), one of each per test module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from eth_utils import keccak
from web3 import Web3

from devhost.ports import free_port, wait_for_port
from tests.conftest import PROJECT_ROOT as ROOT

sys.path.insert(0, str(ROOT / "contracts"))
import contracts_harness as harness

GANACHE = ROOT / "node_modules" / "ganache" / "dist" / "node" / "cli.js"
CHAIN_ID = 1337
DEPLOYER = keccak(b"cryptlet-fabric e2e deployer")  # test-only keys, funded in ganache
RELAYER = keccak(b"cryptlet-fabric e2e relayer")
PRIVACY_DEPLOYER = keccak(b"cryptlet-fabric e2e property privacy deployer")


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def ganache(tmp_path_factory):
    """ganache on 127.0.0.1:<free port>, a block every second, two funded test accounts."""
    if not GANACHE.exists():
        pytest.fail("ganache is not installed: run `npm ci`")
    port = free_port()
    log_path = tmp_path_factory.mktemp("ganache") / "ganache.log"
    balance = str(10**22)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                "node",
                str(GANACHE),
                "--server.host",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--chain.chainId",
                str(CHAIN_ID),
                "--miner.blockTime",
                "1",
                "--logging.quiet",
                "--wallet.accounts",
                f"0x{DEPLOYER.hex()},{balance}",
                "--wallet.accounts",
                f"0x{RELAYER.hex()},{balance}",
                "--wallet.accounts",
                f"0x{PRIVACY_DEPLOYER.hex()},{balance}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    try:
        wait_for_port(port, 60, process)
        url = f"http://127.0.0.1:{port}"
        w3 = Web3(Web3.HTTPProvider(url))
        deadline = time.time() + 30
        while not w3.is_connected():
            assert time.time() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield url, w3
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return harness.build(tmp_path_factory.mktemp("build-ganache"), evm_version="shanghai")
