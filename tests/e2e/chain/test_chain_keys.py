"""Key rotation and revocation from the fabric's ledger honoured on chain, end to end.

ganache + the dev host + the chain adapter (``python -m adapters.ethereum``) as real processes, the
fixtures of tests/e2e/chain/conftest.py and the helpers of test_chain_e2e.py (this module gets its
own ganache and its own host and ledger). The adapter's transaction key is the proxy's owner, so it
follows the ledger and mirrors the proxy's cryptlet's key events into the proxy's signer set:

1. the registration -> ``addSigner`` (nobody adds the key by hand here);
2. a rotation through ``POST /api/cryptlets/{name}/keys/rotate`` -> ``rotateSigner(old, new,
   entryHash)``: an envelope the old key signed before the rotation is refused on chain with
   ``RevokedSigner(old)``, one by the new key is accepted;
3. a revocation through ``POST .../keys/revoke`` (revoke + rotate, one ledger transaction) ->
   ``revokeSigner`` and ``rotateSigner``: the revoked key's envelope reverts ``RevokedSigner``;
4. a ledger entry modified in Azurite (content changed, its hash recomputed so only the next
   entry's link breaks) is not mirrored: the adapter reports ``prev_hash_mismatch`` and stops
   following; with the row restored and the adapter restarted, it resumes from its saved ledger
   cursor and mirrors the real entries.

The envelopes the test submits itself are for requests made before the adapter's start block, so
the adapter never fulfils them (it only maintains the signer set for them).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
from azure.data.tables import TableClient
from eth_account import Account
from web3.exceptions import ContractCustomError, ContractLogicError

from adapters.ethereum.adapter import LedgerVerificationError, envelope_args, verify_anchor, verify_ledger_page
from shared.encoding import canonical_json
from shared.envelope import topic_hash
from shared.ledger.chain import GENESIS_HASH, LedgerEntry, entry_bytes, hash_entry, row_key
from shared.ledger.checkpoints import CheckpointSigner, VerifierKey
from tests.e2e.chain.conftest import CHAIN_ID, DEPLOYER, RELAYER, _stop
from tests.e2e.chain.test_chain_e2e import (
    DEPLOYER_ADDRESS,
    PROXY_ADDRESS,
    QUOTE,
    AdapterProcess,
    deploy,
    transact,
    wait_for,
)

FABRIC_HOST_SETTINGS = {"FABRIC_CHAIN_ID": str(CHAIN_ID), "FABRIC_VERIFYING_CONTRACT": PROXY_ADDRESS}
UNKNOWN, ACTIVE, REVOKED = 0, 1, 2

pytestmark = pytest.mark.timeout(120)


def hex32(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def revert_name(call, errors: dict[bytes, str]) -> str:
    """The custom error (name and first argument) ``call`` reverts with in an ``eth_call``."""
    try:
        call.call({"from": Account.from_key(RELAYER).address})
    except (ContractCustomError, ContractLogicError) as exc:
        data = exc.data if isinstance(exc.data, str) else (exc.args[0] if exc.args else "")
        raw = bytes.fromhex(str(data).removeprefix("0x"))
        name = errors.get(raw[:4], f"0x{raw[:4].hex()}")
        return f"{name}(0x{raw[4 + 12 : 4 + 32].hex()})" if len(raw) >= 36 else name
    return "no revert"


def test_rotation_and_revocation_are_mirrored_into_the_signer_set(ganache, artifacts, fabric_host, tmp_path):
    from eth_utils import keccak, to_checksum_address

    url, w3 = ganache
    started = time.time()
    admin = fabric_host.client(fabric_host.admin_key)
    client = fabric_host.client()
    registered = admin.post("/api/cryptlets", json={"package": "market_watcher"})
    assert registered.status_code == 201, registered.text
    registration = registered.json()
    first_key = to_checksum_address(registration["address"])

    def invoke(request_id: bytes, day: str) -> dict:
        answer = client.post(
            "/api/cryptlets/market_watcher/invoke",
            json={"method": "quote", "args": {"symbol": "SPX", "date": day}, "request_id": "0x" + request_id.hex()},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    # the chain: the proxy (owner: DEPLOYER, whose key the adapter holds), host not pinned (a new key
    # comes with new attestation evidence), no signer added by hand; a consumer with four requests
    probe = client.post(
        "/api/cryptlets/market_watcher/invoke",
        json={"method": "quote", "args": {"symbol": "SPX", "date": "2008-01-02"}},
    ).json()
    proxy = deploy(
        w3,
        DEPLOYER,
        artifacts["CryptletProxy"],
        DEPLOYER_ADDRESS,
        "market_watcher",
        hex32(probe["digest"]),
        b"\0" * 32,
        b"\0" * 4,
        0,
    )
    assert proxy.address == PROXY_ADDRESS
    consumer = deploy(w3, DEPLOYER, artifacts["MarketConsumer"], proxy.address)
    errors = {
        keccak(text=f"{i['name']}({','.join(x['type'] for x in i['inputs'])})")[:4]: i["name"]
        for i in artifacts["CryptletProxy"]["abi"]
        if i["type"] == "error"
    }
    deadline = w3.eth.get_block("latest")["timestamp"] + 600
    request_ids = []
    for day in ("2008-09-12", "2008-09-15", "2008-09-16", "2008-09-17"):
        args = canonical_json({"symbol": "SPX", "date": day})
        receipt = transact(w3, RELAYER, consumer.functions.ask(topic_hash(QUOTE), args, deadline))
        request_ids.append(bytes(proxy.events.Requested().process_receipt(receipt)[0]["args"]["requestId"]))
    start_block = w3.eth.block_number + 1  # the adapter does not see these requests: the test fulfils them
    status = lambda address: proxy.functions.signerStatus(address).call()

    signed_by_first = invoke(request_ids[0], "2008-09-12")  # held back, submitted after the rotation
    assert signed_by_first["cryptlet"] == first_key

    key_file = tmp_path / "owner.json"
    key_file.write_text(json.dumps({"private_key": "0x" + DEPLOYER.hex()}))
    abi_path = tmp_path / "CryptletProxy.json"
    abi_path.write_text(json.dumps(artifacts["CryptletProxy"]))
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
            str(key_file),
            "--state",
            str(state_path),
            "--confirmations",
            "2",
            "--start-block",
            str(start_block),
            "--poll",
            "0.3",
            "--max-attempts",
            "3",
            "--backoff",
            "0.3",
            "--ledger-key",
            client.get("/api/ledger").json()["public_key"],
        ],  # pages anchored in signed checkpoints
        dict(os.environ, CRYPTLET_URL=fabric_host.url, CRYPTLET_FUNCTION_KEY=fabric_host.key),
        tmp_path,
    )
    try:
        first_log = adapter.start()
        # 1. the registration is mirrored: addSigner(first key, registration entry hash)
        wait_for(lambda: status(first_key) == ACTIVE, 20, "addSigner of the registered key", first_log)
        added = proxy.events.SignerAdded().get_logs(from_block=0)
        assert [(e["args"]["signer"], bytes(e["args"]["ledgerEntry"])) for e in added] == [
            (first_key, hex32(registration["ledger"]["entry_hash"]))
        ]
        fulfil_first = proxy.functions.fulfil(*envelope_args(signed_by_first))
        assert revert_name(fulfil_first, errors) == "no revert"  # valid before the rotation

        # 2. rotation through the fabric API
        rotated = admin.post("/api/cryptlets/market_watcher/keys/rotate")
        assert rotated.status_code == 200, rotated.text
        rotation = rotated.json()["entries"][-1]
        assert rotation["kind"] == "cryptlet.key_rotated"
        assert to_checksum_address(rotation["payload"]["previous_address"]) == first_key
        second_key = to_checksum_address(rotation["payload"]["address"])
        wait_for(
            lambda: status(first_key) == REVOKED and status(second_key) == ACTIVE,
            20,
            "rotateSigner of the rotated key",
            first_log,
        )
        [event] = proxy.events.SignerRotated().get_logs(from_block=0)
        assert (event["args"]["oldSigner"], event["args"]["newSigner"], bytes(event["args"]["ledgerEntry"])) == (
            first_key,
            second_key,
            hex32(rotation["entry_hash"]),
        )
        # the old key's envelope (signed while it was valid) is refused; the new key's is accepted
        assert revert_name(fulfil_first, errors) == f"RevokedSigner(0x{first_key[2:].lower()})"
        signed_by_second = invoke(request_ids[1], "2008-09-15")
        assert signed_by_second["cryptlet"] == second_key
        held_second = invoke(request_ids[2], "2008-09-16")  # held back for the revocation
        transact(w3, RELAYER, proxy.functions.fulfil(*envelope_args(signed_by_second)))
        assert consumer.functions.callbacks(request_ids[1]).call() == 1
        assert consumer.functions.callbacks(request_ids[0]).call() == 0

        # 3. revocation of the current key (revoke + rotate in one ledger transaction)
        revoked = admin.post("/api/cryptlets/market_watcher/keys/revoke", json={"reason": "compromised"})
        assert revoked.status_code == 200, revoked.text
        revocation, replacement = revoked.json()["entries"]
        assert revocation["kind"] == "cryptlet.key_revoked"
        third_key = to_checksum_address(replacement["payload"]["address"])
        wait_for(
            lambda: status(second_key) == REVOKED and status(third_key) == ACTIVE,
            20,
            "revokeSigner of the revoked key",
            first_log,
        )
        [event] = proxy.events.SignerRevoked().get_logs(from_block=0)
        assert (event["args"]["signer"], bytes(event["args"]["ledgerEntry"])) == (
            second_key,
            hex32(revocation["entry_hash"]),
        )
        assert (
            revert_name(proxy.functions.fulfil(*envelope_args(held_second)), errors)
            == f"RevokedSigner(0x{second_key[2:].lower()})"
        )
        assert proxy.functions.activeSigners().call() == 1

        # 4. a tampered ledger entry is not mirrored. With the adapter stopped: revoke the third key,
        # rewrite its key_revoked row (another reason) with a recomputed entry_hash — the row alone
        # verifies, the next entry (key_rotated) no longer links to it
        assert _stop(adapter.current, signal.SIGTERM) == 0, first_log.read_text()[-3000:]
        cursor = json.loads(state_path.read_text())["ledger"]
        revoked = admin.post("/api/cryptlets/market_watcher/keys/revoke", json={"reason": "compromised"})
        assert revoked.status_code == 200, revoked.text
        revocation, replacement = revoked.json()["entries"]
        fourth_key = to_checksum_address(replacement["payload"]["address"])
        table = TableClient.from_connection_string(fabric_host.storage, f"{fabric_host.table_prefix}ledger")
        original = table.get_entity("registry", row_key(revocation["sequence"]))
        forged_payload = original["payload"].replace('"compromised"', '"superseded"')
        assert forged_payload != original["payload"]
        forged_hash = hash_entry(
            entry_bytes(
                "registry",
                revocation["sequence"],
                original["kind"],
                original["time"],
                forged_payload,
                original["prev_hash"],
            )
        ).hex()
        table.update_entity({**original, "payload": forged_payload, "entry_hash": forged_hash})
        try:
            tampered_log = adapter.start()
            wait_for(
                lambda: "no longer following the ledger" in tampered_log.read_text(),
                20,
                "the adapter to refuse the tampered ledger",
                tampered_log,
            )
            text = tampered_log.read_text()
            assert f"ledger entry {replacement['sequence']}: prev_hash_mismatch" in text, text[-3000:]
            assert status(fourth_key) == UNKNOWN and status(third_key) == ACTIVE  # neither entry mirrored
            state = json.loads(state_path.read_text())
            assert state["ledger"]["next"] == revocation["sequence"] == cursor["next"]
            assert state["ledger"]["halted"] and state["failed"][-1]["kind"] == "ledger"
            assert _stop(adapter.current, signal.SIGTERM) == 0
        finally:
            table.update_entity(original)  # restored: the fabric's ledger verifies again
        # restarted on the restored ledger: it resumes from its saved cursor and mirrors both entries
        restored_log = adapter.start()
        wait_for(
            lambda: status(third_key) == REVOKED and status(fourth_key) == ACTIVE,
            20,
            "the restored entries to be mirrored",
            restored_log,
        )
        assert f"following the fabric's ledger from entry {revocation['sequence']}" in restored_log.read_text()
        assert "checkpoint key cryptlet-fabric/ledger/registry+" in first_log.read_text()
        assert _stop(adapter.current, signal.SIGTERM) == 0
    finally:
        adapter.stop_all()

    # the on-chain set's history is the ledger's, entry hash for entry hash, each mirrored once
    audit = [
        (e["event"], bytes(e["args"]["ledgerEntry"]).hex())
        for kind in ("SignerAdded", "SignerRotated", "SignerRevoked")
        for e in getattr(proxy.events, kind)().get_logs(from_block=0)
    ]
    mirrored = sorted(h for _, h in audit)
    ledger = client.get("/api/ledger/entries", params={"from": "1", "limit": "1000"}).json()["entries"]
    key_events = [
        e
        for e in verify_ledger_page(ledger, next_sequence=1, prev_hash=GENESIS_HASH, stream=None)
        if e.kind.startswith("cryptlet.") and e.payload.get("name") == "market_watcher"
    ]
    assert mirrored == sorted(e.entry_hash for e in key_events), (audit, key_events)
    assert revert_name(proxy.functions.fulfil(*envelope_args(signed_by_first)), errors).startswith("RevokedSigner")
    assert time.time() - started < 60


def test_ledger_page_verification_on_real_entries(fabric_host):
    """verify_ledger_page on the fabric's own entries: a changed field, a broken link, a gap, a
    replayed page or a page from another point of the chain are each refused, naming the entry."""
    client = fabric_host.client()
    if client.get("/api/ledger").json()["size"] < 3:
        admin = fabric_host.client(fabric_host.admin_key)
        registered = admin.post("/api/cryptlets", json={"package": "customer_validator"})
        assert registered.status_code == 201, registered.text
    documents = client.get("/api/ledger/entries", params={"from": "1", "limit": "1000"}).json()["entries"]
    assert len(documents) >= 3
    entries = verify_ledger_page(documents, next_sequence=1, prev_hash=GENESIS_HASH, stream=None)
    assert [e.sequence for e in entries] == list(range(1, len(documents) + 1))
    # continuing a verified prefix
    tail = verify_ledger_page(documents[2:], next_sequence=3, prev_hash=documents[1]["entry_hash"], stream="registry")
    assert [e.entry_hash for e in tail] == [d["entry_hash"] for d in documents[2:]]

    def refused(page, code, sequence, *, start=1, prev=GENESIS_HASH, stream=None):
        with pytest.raises(LedgerVerificationError) as caught:
            verify_ledger_page(page, next_sequence=start, prev_hash=prev, stream=stream)
        assert (caught.value.code, caught.value.sequence) == (code, sequence), caught.value.reason

    def changed(index, **fields):
        page = json.loads(json.dumps(documents))
        page[index].update(fields)
        return page

    second = documents[1]
    refused(changed(1, payload={**second["payload"], "name": "someone_else"}), "entry_hash_mismatch", 2)
    refused(changed(1, time=second["time"].replace("Z", "1Z")), "entry_hash_mismatch", 2)
    refused(changed(1, kind="cryptlet.retired"), "entry_hash_mismatch", 2)
    # rewritten with a recomputed hash: it verifies alone, the next entry does not link to it
    forged = dict(second, payload={**second["payload"], "note": "forged"})
    forged["entry_hash"] = LedgerEntry.from_dict(forged).computed_hash()
    refused([documents[0], forged, *documents[2:]], "prev_hash_mismatch", 3)
    refused([documents[0], *documents[2:]], "sequence_mismatch", 2)  # an entry left out
    refused(documents[1:], "prev_hash_mismatch", 2, start=2, prev="11" * 32)  # another chain
    refused(documents, "sequence_mismatch", 2, start=2, prev=documents[0]["entry_hash"])  # a replayed page
    refused(documents[1:], "stream_mismatch", 2, start=2, prev=documents[0]["entry_hash"], stream="other")
    refused(changed(0, sequence="1"), "malformed_entry", 1)
    refused(changed(0, entry_hash=documents[0]["entry_hash"].upper()), "entry_hash_mismatch", 1)


def test_ledger_page_anchor_in_a_signed_checkpoint(fabric_host):
    """verify_anchor: a real receipt of the page's last entry verifies under the host's pinned key;
    under another key, or for another entry than the one served, it is refused."""
    client = fabric_host.client()
    documents = client.get("/api/ledger/entries", params={"from": "1", "limit": "1000"}).json()["entries"]
    entries = verify_ledger_page(documents, next_sequence=1, prev_hash=GENESIS_HASH, stream=None)
    key = VerifierKey.parse(client.get("/api/ledger").json()["public_key"])
    last = entries[-1]
    receipt = client.get(f"/api/ledger/entries/{last.sequence}/receipt").json()
    assert verify_anchor(receipt, last, key) >= last.sequence
    other_key = CheckpointSigner.from_secret(b"\x01" * 32, key.name).verifier
    with pytest.raises(LedgerVerificationError) as caught:
        verify_anchor(receipt, last, other_key)
    assert caught.value.sequence == last.sequence and "does not verify" in caught.value.reason
    earlier = client.get(f"/api/ledger/entries/{entries[0].sequence}/receipt").json()
    with pytest.raises(LedgerVerificationError) as caught:
        verify_anchor(earlier, last, key)
    assert caught.value.code == "receipt_mismatch"
