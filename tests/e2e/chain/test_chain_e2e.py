"""End to end on a real chain: ganache (npm, loopback) + the dev host + the chain adapter as a process.

The paper's MarketWatcher example: a consumer contract asks MarketWatcher for quotes and subscribes
to its market event through a CryptletProxy; the adapter (``python -m adapters.ethereum``) sees the
events once they are ``CONFIRMATIONS`` blocks deep, asks the fabric (plain invocations for requests,
a signed subscriber request + the delivery history for the subscription) and submits the signed
envelopes; the consumer's ``CalculatePrice`` callback stores every verified payload, which is
checked against the replay CSV. In the middle the adapter is killed (SIGKILL) while requests keep
coming; the restarted adapter resumes from its state file: every request is fulfilled exactly once,
none is lost, and every recorded fire is delivered in order.

The fabric signs for the proxy's EIP-712 domain: the proxy is the deployer's first contract, so its
address is known before anything runs and the module's host gets it as FABRIC_VERIFYING_CONTRACT.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import coincurve
import pytest
import rlp
from eth_account import Account
from eth_utils import keccak, to_canonical_address, to_checksum_address
from web3 import Web3

from shared.encoding import canonical_json
from shared.envelope import topic_hash
from tests.e2e.chain.conftest import CHAIN_ID, DEPLOYER, PRIVACY_DEPLOYER, RELAYER, ROOT, _stop  # ganache's

DATA = ROOT / "cryptlet_packages" / "market_watcher" / "data"
CONFIRMATIONS = 2
SUBSCRIBER = keccak(b"cryptlet-fabric e2e subscriber")  # test-only key
DEPLOYER_ADDRESS = Account.from_key(DEPLOYER).address


def first_contract_of(address: str) -> str:
    """The address of the first contract ``address`` deploys (nonce 0): keccak256(rlp([sender, 0]))[12:]."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(address), 0]))[12:])


PROXY_ADDRESS = first_contract_of(DEPLOYER_ADDRESS)
PRIVACY_DEPLOYER_ADDRESS = Account.from_key(PRIVACY_DEPLOYER).address
PRIVACY_PROXY_ADDRESS = first_contract_of(PRIVACY_DEPLOYER_ADDRESS)

FABRIC_HOST_SETTINGS = {"FABRIC_CHAIN_ID": str(CHAIN_ID), "FABRIC_VERIFYING_CONTRACT": PROXY_ADDRESS}

QUOTE = "market_watcher.quote"
EVENT = "market_watcher.market_event"

pytestmark = pytest.mark.timeout(240)


# -- replay data (what the payloads must say) ---------------------------------------------------------
def _series() -> dict[str, tuple[list[str], list[str]]]:
    found: dict[str, list[tuple[str, str]]] = {"SPX": []}
    with open(DATA / "sp500_daily.csv", newline="") as file:
        found["SPX"] = [(row["date"], row["close"]) for row in csv.DictReader(file)]
    with open(DATA / "stocks.csv", newline="") as file:
        for row in csv.DictReader(file):
            day = dt.datetime.strptime(row["date"], "%b %d %Y").date().isoformat()
            found.setdefault(row["symbol"], []).append((day, row["price"]))
    return {s: ([d for d, _ in sorted(v)], [p for _, p in sorted(v)]) for s, v in found.items()}


SERIES = _series()


def csv_price(symbol: str, day: str) -> tuple[str, str]:
    dates, prices = SERIES[symbol]
    index = bisect.bisect_right(dates, day) - 1
    return dates[index], prices[index]


# -- processes and transactions --------------------------------------------------------------------
def transact(w3: Web3, key: bytes, call, *, gas: int = 3_000_000) -> dict:
    account = Account.from_key(key)
    tx = call.build_transaction(
        {
            "from": account.address,
            "chainId": CHAIN_ID,
            "gas": gas,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1, receipt
    return receipt


def deploy(w3: Web3, key: bytes, artifact: dict, *args):
    contract = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = transact(w3, key, contract.constructor(*args), gas=6_000_000)
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def wait_for(predicate, timeout: float, what: str, *logs: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}:\n{p.read_text(errors='replace')[-4000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out waiting for {what}\n{tails}")


class AdapterProcess:
    def __init__(self, argv: list[str], env: dict[str, str], log_dir: Path):
        self.argv, self.env, self.log_dir = argv, env, log_dir
        self.runs: list[tuple[subprocess.Popen, Path]] = []

    def start(self) -> Path:
        log_path = self.log_dir / f"adapter-{len(self.runs) + 1}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.runs.append((process, log_path))
        return log_path

    @property
    def current(self) -> subprocess.Popen:
        return self.runs[-1][0]

    def stop_all(self) -> None:
        for process, _ in self.runs:
            _stop(process)


# -- the test -----------------------------------------------------------------------------------------
def test_market_watcher_through_the_adapter_with_a_restart(ganache, artifacts, fabric_host, tmp_path):
    url, w3 = ganache
    assert w3.eth.chain_id == CHAIN_ID
    admin = fabric_host.client(fabric_host.admin_key)
    client = fabric_host.client()

    # the fabric: MarketWatcher registered, the adapter's subscriber key registered
    registered = admin.post("/api/cryptlets", json={"package": "market_watcher"})
    assert registered.status_code == 201, registered.text
    subscriber = Account.from_key(SUBSCRIBER)
    public_key = "0x04" + subscriber._key_obj.public_key.to_bytes().hex()
    answer = admin.post("/api/subscribers", json={"name": "chain_adapter", "public_key": public_key})
    assert answer.status_code == 201, answer.text
    # one envelope tells what the proxy must be bound to (digest, host evidence, key, registration)
    probe = client.post(
        "/api/cryptlets/market_watcher/invoke",
        json={"method": "quote", "args": {"symbol": "SPX", "date": "2008-01-02"}},
    )
    assert probe.status_code == 200, probe.text
    probe = probe.json()
    assert probe["domain"] == {
        "name": "CryptletFabric",
        "version": "1",
        "chainId": CHAIN_ID,
        "verifyingContract": PROXY_ADDRESS,
    }

    # the chain: proxy (the deployer's first transaction, so at PROXY_ADDRESS), signer, consumer
    proxy = deploy(
        w3,
        DEPLOYER,
        artifacts["CryptletProxy"],
        DEPLOYER_ADDRESS,
        "market_watcher",
        bytes.fromhex(probe["digest"][2:]),
        bytes.fromhex(probe["evidence"]["hash"][2:]),
        b"\0" * 4,
        0,
    )
    assert proxy.address == PROXY_ADDRESS
    transact(
        w3,
        DEPLOYER,
        proxy.functions.addSigner(probe["cryptlet"], bytes.fromhex(probe["registration"]["entry_hash"][2:])),
    )
    consumer = deploy(w3, DEPLOYER, artifacts["MarketConsumer"], proxy.address)
    start_block = w3.eth.block_number

    # the adapter's configuration
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "relayer.json").write_text(json.dumps({"private_key": "0x" + RELAYER.hex()}))
    (keys / "subscriber.json").write_text(json.dumps({"private_key": "0x" + SUBSCRIBER.hex()}))
    abi_path = tmp_path / "CryptletProxy.json"
    abi_path.write_text(json.dumps(artifacts["CryptletProxy"]))
    epoch_ms = (int(time.time()) + 3) * 1000
    specs = {
        EVENT: {
            "args": {
                "symbols": ["SPX", "MSFT"],
                "clock": {"start": "2008-09-10", "epoch_ms": epoch_ms, "step_ms": 2000, "unit": "trading_day"},
            },
            "trigger": {
                "type": "interval",
                "seconds": 2,
                "start": dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            },
        }
    }
    (tmp_path / "subscriptions.json").write_text(json.dumps(specs))
    state_path = tmp_path / "adapter-state.json"
    adapter = AdapterProcess(
        [
            sys.executable,
            "-m",
            "adapters.ethereum",
            "--rpc-url",
            url,
            "--proxy",
            proxy.address,
            "--abi",
            str(abi_path),
            "--tx-key-file",
            str(keys / "relayer.json"),
            "--subscriber",
            "chain_adapter",
            "--subscriber-key-file",
            str(keys / "subscriber.json"),
            "--subscriptions",
            str(tmp_path / "subscriptions.json"),
            "--state",
            str(state_path),
            "--confirmations",
            str(CONFIRMATIONS),
            "--start-block",
            str(start_block),
            "--poll",
            "0.5",
            "--max-attempts",
            "3",
            "--backoff",
            "0.5",
        ],
        dict(os.environ, CRYPTLET_URL=fabric_host.url, CRYPTLET_FUNCTION_KEY=fabric_host.key),
        tmp_path,
    )

    def ask(day: str, symbol: str = "SPX") -> tuple[bytes, int]:
        deadline = w3.eth.get_block("latest")["timestamp"] + 600
        receipt = transact(
            w3,
            DEPLOYER,
            consumer.functions.ask(topic_hash(QUOTE), canonical_json({"symbol": symbol, "date": day}), deadline),
        )
        event = proxy.events.Requested().process_receipt(receipt)[0]
        return bytes(event["args"]["requestId"]), receipt["blockNumber"]

    def delivered() -> int:
        return consumer.functions.callbacks(subscription_id).call()

    try:
        first_log = adapter.start()
        receipt = transact(
            w3, DEPLOYER, consumer.functions.watch(topic_hash(EVENT), w3.eth.get_block("latest")["timestamp"] + 900)
        )
        subscription_id = bytes(proxy.events.Subscribed().process_receipt(receipt)[0]["args"]["subscriptionId"])
        asked = {ask(day): day for day in ("2008-09-12", "2008-09-15", "2008-10-10")}
        bad_id, _ = ask("1999-01-04")  # before the replay data: the cryptlet refuses, the adapter reports it
        wait_for(
            lambda: all(consumer.functions.callbacks(rid).call() == 1 for rid, _ in asked) and delivered() >= 2,
            60,
            "the first requests and deliveries",
            first_log,
        )

        # crash the adapter in the middle; requests keep coming while it is down
        assert _stop(adapter.current, signal.SIGKILL) == -signal.SIGKILL
        state_at_kill = json.loads(state_path.read_text())
        delivered_at_kill = delivered()
        asked.update({ask(day): day for day in ("2009-03-09", "2010-05-06")})
        asked[ask("2009-06-30", "MSFT")] = "2009-06-30"
        time.sleep(3)  # the fabric keeps firing into the history meanwhile

        second_log = adapter.start()
        wait_for(
            lambda: (
                all(consumer.functions.callbacks(rid).call() == 1 for rid, _ in asked)
                and delivered() >= delivered_at_kill + 3
            ),
            60,
            "the requests and deliveries after the restart",
            second_log,
        )
        transact(w3, DEPLOYER, consumer.functions.stopWatching(subscription_id))
        sid = "0x" + subscription_id.hex()
        wait_for(
            lambda: json.loads(state_path.read_text())["subscriptions"][sid]["status"] == "ended",
            30,
            "the unsubscription",
            second_log,
        )
        assert _stop(adapter.current, signal.SIGTERM) == 0, second_log.read_text()[-3000:]
    finally:
        adapter.stop_all()
    first, second = first_log.read_text(), second_log.read_text()

    # resumed from the block it had reached, not from the start
    assert f"resuming from block {start_block}," in first
    assert f"resuming from block {state_at_kill['next_block']}" in second and state_at_kill["next_block"] > start_block

    # every request fulfilled exactly once, none lost, after the confirmation depth
    fulfilled = proxy.events.Fulfilled().get_logs(from_block=start_block)
    by_id: dict[bytes, list] = {}
    for event in fulfilled:
        by_id.setdefault(bytes(event["args"]["requestId"]), []).append(event)
    assert set(by_id) == {rid for rid, _ in asked}, "a request was lost, or a wrong one fulfilled"
    assert all(len(events) == 1 for events in by_id.values())
    for (rid, block), _ in asked.items():
        assert consumer.functions.callbacks(rid).call() == 1
        assert by_id[rid][0]["blockNumber"] >= block + CONFIRMATIONS, "acted before the confirmation depth"
        assert by_id[rid][0]["args"]["callbackOk"] is True
    for rid, _ in asked:  # the requests seen before the crash were not picked up again
        marker = f"request 0x{rid.hex()} from"
        assert (marker in first) != (marker in second)

    # the failed fulfilment was logged with its reason and reported, not retried forever
    assert f"request 0x{bad_id.hex()} failed for good" in first + second
    final_state = json.loads(state_path.read_text())
    reported = [f for f in final_state["failed"] if f["id"] == "0x" + bad_id.hex()]
    assert len(reported) == 1 and "no price" in reported[0]["reason"], reported
    assert consumer.functions.callbacks(bad_id).call() == 0
    assert final_state["requests"] == {}

    # CalculatePrice received verified values: each payload is what the replay CSV says
    records = [consumer.functions.record(i).call() for i in range(consumer.functions.count().call())]
    quotes = {bytes(i): json.loads(p) for i, p in records if bytes(i) != subscription_id}
    for (rid, _), day in asked.items():
        quote = quotes[rid]
        as_of, price = csv_price(quote["ticker"], day)
        assert (quote["as_of"], quote["price"]) == (as_of, price), quote
        assert quote["price_e8"] == round(float(price) * 10**8) or abs(quote["price_e8"] - float(price) * 1e8) < 1
    events = [json.loads(p) for i, p in records if bytes(i) == subscription_id]
    assert len(events) == delivered() >= delivered_at_kill + 3
    days = [e["day"] for e in events]
    assert days == sorted(days) and len(set(days)) == len(days), days
    for event in events:
        assert event["tickers"] == ["SPX", "MSFT"] and event["market_open"] is True
        for ticker, price, as_of in zip(event["tickers"], event["prices"], event["as_of"], strict=False):
            assert (as_of, price) == csv_price(ticker, event["day"]), event

    # every fire the fabric recorded (up to the last one delivered) reached the chain once, in order
    sub = final_state["subscriptions"]["0x" + subscription_id.hex()]
    assert sub["status"] == "ended"
    history = client.get(f"/api/subscriptions/{sub['fabric_id']}/history", params={"limit": "1000"}).json()
    recorded = [
        row["envelope"]["sequence"]
        for row in history["deliveries"]
        if row["result"] == "ok" and row["sequence"] < sub["next_fire"]
    ]
    on_chain = [e["args"]["sequence"] for e in proxy.events.Delivered().get_logs(from_block=start_block)]
    assert on_chain == recorded and len(on_chain) == len(events)
    assert client.get(f"/api/subscriptions/{sub['fabric_id']}").json()["status"] == "cancelled"


# -- PropertyPrivacy: a field on chain that only the counterparties can read ---------------------------
def test_property_privacy_field_is_stored_encrypted_for_the_counterparties(ganache, artifacts, fabric_host, tmp_path):
    """The paper's PropertyPrivacy: a PropertyRecord contract requests the sealing of its sale price
    through a second CryptletProxy (bound to property_privacy); the seller's application — the party
    that knows the value — asks the fabric off chain with the proxy's request id and submits the
    signed envelope with ``fulfil`` itself (the adapter only relays public request arguments). The
    ciphertext stored on chain opens with the buyer's and the seller's keys and no other; the value
    is nowhere on the chain.

    The fabric signs for one verifying contract per host, so this proxy gets its own host process
    (same storage and ledger, ``FABRIC_VERIFYING_CONTRACT`` = this proxy): the deployment consequence
    docs/adapters.md describes.
    """
    from adapters.ethereum.adapter import envelope_args
    from shared import ecies

    url, w3 = ganache
    # a second host process: fabric_host's settings and storage, but this proxy as verifying contract
    env = dict(fabric_host.env, FABRIC_VERIFYING_CONTRACT=PRIVACY_PROXY_ADDRESS)
    with dataclasses.replace(fabric_host, env=env).twin() as host:
        client = host.client()
        registered = host.client(host.admin_key).post("/api/cryptlets", json={"package": "property_privacy"})
        assert registered.status_code == 201, registered.text
        buyer, seller, outsider = (coincurve.PrivateKey(keccak(b"e2e " + who)) for who in (b"buyer", b"seller", b"x"))
        recipients = ["0x" + k.public_key.format(compressed=False).hex() for k in (buyer, seller)]
        probe = client.post(
            "/api/cryptlets/property_privacy/invoke",
            json={"method": "recipient_set", "args": {"recipients": recipients}},
        )
        assert probe.status_code == 200, probe.text
        probe = probe.json()
        assert probe["domain"]["verifyingContract"] == PRIVACY_PROXY_ADDRESS and probe["domain"]["chainId"] == CHAIN_ID

        proxy = deploy(
            w3,
            PRIVACY_DEPLOYER,
            artifacts["CryptletProxy"],
            PRIVACY_DEPLOYER_ADDRESS,
            "property_privacy",
            bytes.fromhex(probe["digest"][2:]),
            bytes.fromhex(probe["evidence"]["hash"][2:]),
            b"\0" * 4,
            0,
        )
        assert proxy.address == PRIVACY_PROXY_ADDRESS
        transact(
            w3,
            PRIVACY_DEPLOYER,
            proxy.functions.addSigner(probe["cryptlet"], bytes.fromhex(probe["registration"]["entry_hash"][2:])),
        )
        record = deploy(w3, PRIVACY_DEPLOYER, artifacts["PropertyRecord"], proxy.address)
        first_block = w3.eth.block_number

        # on chain only what is public: which field, the deed, and who may read it
        public_args = {"field": "sale_price", "context": "deed 2026-0042", "recipients": recipients}
        deadline = w3.eth.get_block("latest")["timestamp"] + 600
        receipt = transact(
            w3,
            PRIVACY_DEPLOYER,
            record.functions.seal(topic_hash("property_privacy.encrypt_field"), canonical_json(public_args), deadline),
        )
        request_id = bytes(proxy.events.Requested().process_receipt(receipt)[0]["args"]["requestId"])

        # the seller's application: the value goes to the fabric only, the envelope to the chain
        value = "USD 1,234,567.89 (e2e secret)"
        sealed = client.post(
            "/api/cryptlets/property_privacy/invoke",
            json={
                "method": "encrypt_field",
                "args": {**public_args, "value": value},
                "request_id": "0x" + request_id.hex(),
            },
        )
        assert sealed.status_code == 200, sealed.text
        struct, chain_id, sig, payload = envelope_args(sealed.json())
        transact(w3, PRIVACY_DEPLOYER, proxy.functions.fulfil(struct, chain_id, sig, payload))

        stored = record.functions.sealedFields(request_id).call()
        assert stored == payload and keccak(stored) == bytes(
            proxy.events.Fulfilled().get_logs(from_block=first_block)[0]["args"]["payloadHash"]
        )
        encrypted = json.loads(stored)["encrypted"]
        assert encrypted["field"] == "sale_price" and encrypted["context"] == "deed 2026-0042"
        assert encrypted["recipients_digest"] == probe["payload"]["recipients_digest"]
        for counterparty in (buyer, seller):
            assert ecies.decrypt_field(encrypted, counterparty.secret) == value
        with pytest.raises(ecies.NotARecipient):
            ecies.decrypt_field(encrypted, outsider.secret)
        with pytest.raises(ecies.EciesError):  # bound to its field: cannot be passed off as another one
            ecies.decrypt_field(encrypted, buyer.secret, field="rent")

        # the plaintext is nowhere on the chain: not in a transaction, not in a log
        needle = value.encode()
        for number in range(first_block, w3.eth.block_number + 1):
            block = w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                assert needle not in bytes(tx["input"])
                for entry in w3.eth.get_transaction_receipt(tx["hash"])["logs"]:
                    assert needle not in bytes(entry["data"])
