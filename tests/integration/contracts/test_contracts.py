"""The Solidity contracts (contracts/) on a real EVM: eth-tester over py-evm, Prague rules.

The contracts are compiled from source once per session with the pinned solc-js
(``contracts/build.js``), envelopes are built and signed with the fabric's own code
(``shared.envelope``), and every rejection is checked by decoding the revert data's custom error
(selector from the ABI, then its arguments). No storage or host is needed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import coincurve
import pytest

from shared.encoding import canonical_json, keccak256
from shared.envelope import (
    SECP256K1_N,
    Domain,
    Envelope,
    address_of,
    payload_hash,
    sign_envelope,
    topic_hash,
    verify_envelope,
)

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "contracts"))
import contracts_harness as harness  # noqa: E402  (contracts/contracts_harness.py: build, deploy, call, decode errors)

pytestmark = pytest.mark.timeout(300)

ZERO_ADDRESS = "0x" + "00" * 20
DIGEST = bytes.fromhex("07" * 32)
TOPIC = "price_feed.gold"
REGISTRATION = "0x" + "3c" * 32
EVIDENCE = "0x" + "ee" * 32
HEARTBEAT = 3600
KEYS = [keccak256(f"cryptlet-fabric contract test key {i}".encode()) for i in range(8)]
ADDRESSES = [address_of(coincurve.PrivateKey(k).public_key.format()) for k in KEYS]
POOL = "0x" + "5a" * 20


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    return harness.build(tmp_path_factory.mktemp("contracts-build"), evm_version="prague")


@pytest.fixture
def chain():
    return harness.Chain()


def queue(chain, artifacts, *, quorum=1, signers=(0,), topic=TOPIC, digest=DIGEST, max_signers=0):
    q = chain.deploy(
        artifacts["MessageQueue"],
        chain.accounts[0],
        topic_hash(topic) if topic else bytes(32),
        digest,
        HEARTBEAT,
        quorum,
        POOL if quorum > 1 else ZERO_ADDRESS,
        max_signers,
    )
    for i in signers:
        q.transact("addSigner", ADDRESSES[i], bytes.fromhex("3c" * 32))
    return q


_SEQUENCE = [int(time.time() * 1_000_000)]


def envelope(
    contract,
    *,
    cryptlet=None,
    sequence=None,
    payload=None,
    chain_id=None,
    topic=TOPIC,
    request_id=None,
    timestamp_ms=None,
) -> Envelope:
    """An unsigned envelope in the fabric's format for ``contract`` (domain: this chain, that contract)."""
    if sequence is None:
        _SEQUENCE[0] += 1
        sequence = _SEQUENCE[0]
    return Envelope(
        cryptlet=cryptlet or ADDRESSES[0],
        name="price_feed",
        digest=DIGEST,
        topic=topic,
        request_id=request_id or keccak256(b"request %d" % sequence),
        sequence=sequence,
        timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        payload={"gold": "2650.10", "n": sequence} if payload is None else payload,
        domain=Domain(contract.chain.chain_id if chain_id is None else chain_id, contract.address),
        registration={"stream": "ledger", "sequence": 3, "entry_hash": REGISTRATION},
        evidence={"kind": "process", "hash": EVIDENCE},
    )


def fields(e: Envelope) -> tuple:
    """The Envelope struct as the contracts take it (the EIP-712 message fields)."""
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


def single(e: Envelope, key: int = 0) -> tuple:
    """(envelope, chainId, signature) for ``submit``: signed by KEYS[key] with shared.envelope."""
    signed = sign_envelope(e, KEYS[key])
    return (fields(signed), signed.domain.chain_id, vrs(signed.signature))


def quorum_sigs(e: Envelope, keys) -> list:
    """Signatures by ``keys`` over the same envelope, in increasing signer address order."""
    ordered = sorted(keys, key=lambda i: int(ADDRESSES[i], 16))
    return [vrs(sign_envelope(e, KEYS[i]).signature) for i in ordered]


def reverts(name: str, fn, *args, **kwargs) -> tuple:
    with pytest.raises(harness.Reverted) as info:
        fn(*args, **kwargs)
    assert info.value.name == name, f"expected {name}, got {info.value}"
    return info.value.args


# --- build --------------------------------------------------------------------------------------


def test_build_is_from_source_with_the_pinned_solc_and_explicit_evm_version(artifacts):
    info = artifacts["build-info"]
    assert info["solcVersion"].startswith("0.8.37+")
    assert info["settings"]["evmVersion"] == "prague"
    assert info["settings"]["optimizer"]["enabled"] is True
    for name in ("MessageQueue", "CryptletProxy", "StateMirror", "NaiveMessageQueue"):
        assert len(artifacts[name]["bytecode"]) > 2 and artifacts[name]["abi"]
    errors = {i["name"] for i in artifacts["MessageQueue"]["abi"] if i["type"] == "error"}
    assert {
        "BadSignature",
        "HighS",
        "WrongChain",
        "UnknownSigner",
        "RevokedSigner",
        "ReplayedSequence",
        "StaleValue",
        "QuorumNotMet",
    } <= errors


def test_domain_separator_is_the_one_shared_envelope_signs_under(chain, artifacts):
    q = queue(chain, artifacts)
    assert q.call("domainSeparator") == Domain(chain.chain_id, q.address).separator()
    fields_, name, version, chain_id, contract, _, _ = q.call("eip712Domain")
    assert (name, version, chain_id, contract.lower()) == ("CryptletFabric", "1", chain.chain_id, q.address.lower())


# --- MessageQueue: single signer ----------------------------------------------------------------


def test_valid_report_is_stored_and_readable(chain, artifacts):
    q = queue(chain, artifacts)
    assert q.call("lastSequence") == 0 and q.call("updatedAt") == 0
    e = envelope(q, payload={"gold": "2650.10"})
    verify_envelope(sign_envelope(e, KEYS[0]), ADDRESSES[0])  # the same envelope verifies off chain
    receipt = q.transact("submit", *single(e))
    value, sequence, timestamp, updated_at, rounds = q.call("latest")
    assert value == payload_hash({"gold": "2650.10"}) == q.call("value")
    assert (sequence, timestamp, rounds) == (e.sequence, e.timestamp_ms, 1)
    block = chain.tester.get_block_by_number(receipt.block_number)
    assert updated_at == block["timestamp"] == q.call("updatedAt")
    assert q.call("isLatestPayload", canonical_json({"gold": "2650.10"}))
    [log] = receipt.logs
    assert log["event"] == "Reported"
    assert log["args"]["cryptlet"].lower() == ADDRESSES[0].lower()
    assert (log["args"]["sequence"], log["args"]["payloadHash"], log["args"]["requestId"]) == (
        e.sequence,
        e.payload_hash,
        e.request_id,
    )
    # a later report replaces it
    e2 = envelope(q, payload={"gold": "2651.00"})
    q.transact("submit", *single(e2))
    assert q.call("latest")[:2] == (payload_hash({"gold": "2651.00"}), e2.sequence)
    assert q.call("latest")[4] == 2


def test_forged_signature_reverts_bad_signature(chain, artifacts):
    q = queue(chain, artifacts, signers=(0, 1))
    e = envelope(q)
    # signed by another (even authorised) key while claiming to be cryptlet 0
    reverts("BadSignature", q.transact, "submit", *single(e, key=1))
    # a field changed after signing (the payload hash of another value)
    envelope_, chain_id, sig = single(e)
    tampered = envelope_[:6] + (payload_hash({"gold": "1.00"}),) + envelope_[7:]
    reverts("BadSignature", q.transact, "submit", tampered, chain_id, sig)
    # v outside {27, 28}
    reverts("BadSignature", q.transact, "submit", envelope_, chain_id, (29, sig[1], sig[2]))
    # r = 0 recovers no address
    reverts("BadSignature", q.transact, "submit", envelope_, chain_id, (sig[0], bytes(32), sig[2]))
    # signed for another verifying contract (a second queue)
    other = queue(chain, artifacts)
    reverts("BadSignature", q.transact, "submit", *single(envelope(other)))
    assert q.call("lastSequence") == 0


def test_high_s_signature_reverts_high_s(chain, artifacts):
    q = queue(chain, artifacts)
    envelope_, chain_id, (v, r, s) = single(envelope(q))
    high_s = (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
    # the malleable twin: same signer under ecrecover, refused by the low-S rule
    reverts("HighS", q.transact, "submit", envelope_, chain_id, (55 - v, r, high_s))
    q.transact("submit", envelope_, chain_id, (v, r, s))


def test_replayed_sequence_reverts(chain, artifacts):
    q = queue(chain, artifacts)
    report = single(envelope(q, sequence=1000))
    q.transact("submit", *report)
    assert reverts("ReplayedSequence", q.transact, "submit", *report) == (1000, 1000)
    assert reverts("ReplayedSequence", q.transact, "submit", *single(envelope(q, sequence=999))) == (1000, 999)
    q.transact("submit", *single(envelope(q, sequence=1001)))


def test_wrong_chain_id_reverts(chain, artifacts):
    q = queue(chain, artifacts)
    e = envelope(q, chain_id=chain.chain_id + 1)
    assert reverts("WrongChain", q.transact, "submit", *single(e)) == (chain.chain_id, chain.chain_id + 1)
    # claiming this chain for an envelope signed for another one: the digest differs
    envelope_, _, sig = single(e)
    reverts("BadSignature", q.transact, "submit", envelope_, chain.chain_id, sig)


def test_unknown_and_revoked_keys_revert(chain, artifacts):
    q = queue(chain, artifacts, signers=(0,))
    assert reverts("UnknownSigner", q.transact, "submit", *single(envelope(q, cryptlet=ADDRESSES[2]), key=2)) == (
        ADDRESSES[2].lower(),
    )
    early = single(envelope(q))  # signed while the key was valid, submitted after its revocation
    entry = keccak256(b"cryptlet.key_revoked")
    receipt = q.transact("revokeSigner", ADDRESSES[0], entry)
    assert receipt.logs[0]["event"] == "SignerRevoked" and receipt.logs[0]["args"]["ledgerEntry"] == entry
    assert q.call("signerStatus", ADDRESSES[0]) == 2 and q.call("activeSigners") == 0
    assert reverts("RevokedSigner", q.transact, "submit", *early) == (ADDRESSES[0].lower(),)
    assert reverts("RevokedSigner", q.transact, "submit", *single(envelope(q))) == (ADDRESSES[0].lower(),)
    # revocation is final
    reverts("RevokedSigner", q.transact, "addSigner", ADDRESSES[0], entry)


def test_rotation_moves_acceptance_to_the_new_key(chain, artifacts):
    q = queue(chain, artifacts, signers=(0,))
    q.transact("submit", *single(envelope(q)))
    q.transact("rotateSigner", ADDRESSES[0], ADDRESSES[1], keccak256(b"cryptlet.key_rotated"))
    reverts("RevokedSigner", q.transact, "submit", *single(envelope(q)))
    q.transact("submit", *single(envelope(q, cryptlet=ADDRESSES[1]), key=1))
    assert q.call("activeSigners") == 1
    # only the owner manages the set
    assert reverts("NotOwner", q.transact, "addSigner", ADDRESSES[3], bytes(32), sender=chain.accounts[1]) == (
        chain.accounts[1].lower(),
    )


def test_topic_and_digest_binding(chain, artifacts):
    q = queue(chain, artifacts)
    assert reverts("WrongTopic", q.transact, "submit", *single(envelope(q, topic="price_feed.silver")))[
        0
    ] == topic_hash(TOPIC)
    e = envelope(q)
    e.digest = bytes(32)
    assert reverts("WrongDigest", q.transact, "submit", *single(e)) == (DIGEST, bytes(32))


def test_stale_value_reverts(chain, artifacts):
    q = queue(chain, artifacts)
    assert reverts("StaleValue", q.call, "requireFresh", 60) == (0, 60)  # nothing reported yet
    assert q.call("isFresh") is False
    q.transact("submit", *single(envelope(q, payload={"gold": "2650.10"})))
    updated_at = q.call("updatedAt")
    assert q.call("requireFresh", 60) == payload_hash({"gold": "2650.10"})
    assert q.call("requireFresh") == payload_hash({"gold": "2650.10"}) and q.call("isFresh") is True
    chain.time_travel(120)
    assert reverts("StaleValue", q.call, "requireFresh", 60) == (updated_at, 60)
    assert q.call("requireFresh", 600) == payload_hash({"gold": "2650.10"})
    chain.time_travel(HEARTBEAT)
    reverts("StaleValue", q.call, "requireFresh")
    assert q.call("isFresh") is False


def test_a_value_produced_long_ago_is_stale_even_if_it_arrives_now(chain, artifacts):
    q = queue(chain, artifacts)
    old = (chain.timestamp() - 900) * 1000  # signed 15 minutes ago, held back by a relayer
    q.transact("submit", *single(envelope(q, timestamp_ms=old)))
    reverts("StaleValue", q.call, "requireFresh", 600)
    q.call("requireFresh", 1200)


# --- MessageQueue: k-of-n quorum ----------------------------------------------------------------


def test_quorum_3_of_5(chain, artifacts):
    q = queue(chain, artifacts, quorum=3, signers=range(5), max_signers=5)
    assert q.call("activeSigners") == 5
    e = envelope(q, cryptlet=POOL, payload={"gold": "2650.10"})
    chain_id = chain.chain_id
    # three distinct signers over the same digest
    q.transact("submitQuorum", fields(e), chain_id, quorum_sigs(e, [4, 0, 2]))
    assert q.call("latest")[:2] == (payload_hash({"gold": "2650.10"}), e.sequence)
    # two are not enough
    e2 = envelope(q, cryptlet=POOL)
    assert reverts("QuorumNotMet", q.transact, "submitQuorum", fields(e2), chain_id, quorum_sigs(e2, [1, 3])) == (2, 3)
    # a duplicate does not count twice
    sigs = quorum_sigs(e2, [1, 3])
    duplicate = [sigs[0], sigs[0], sigs[1]]
    first = min(ADDRESSES[1], ADDRESSES[3], key=lambda a: int(a, 16))
    assert reverts("DuplicateSigner", q.transact, "submitQuorum", fields(e2), chain_id, duplicate) == (first.lower(),)
    # nor out of order
    three = quorum_sigs(e2, [1, 2, 3])
    reverts("UnsortedSigners", q.transact, "submitQuorum", fields(e2), chain_id, [three[1], three[0], three[2]])
    # a signer outside the set, a revoked one, a high-S one
    outsider = quorum_sigs(e2, [1, 3, 6])
    reverts("UnknownSigner", q.transact, "submitQuorum", fields(e2), chain_id, outsider)
    q.transact("revokeSigner", ADDRESSES[3], bytes(32))
    reverts("RevokedSigner", q.transact, "submitQuorum", fields(e2), chain_id, quorum_sigs(e2, [1, 2, 3]))
    v, r, s = three[0]
    high = (55 - v, r, (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big"))
    reverts("HighS", q.transact, "submitQuorum", fields(e2), chain_id, [high, three[1], three[2]])
    # the envelope must name the pool, and single-signer submission is refused on a quorum queue
    mine = envelope(q, cryptlet=ADDRESSES[0])
    reverts("WrongCryptlet", q.transact, "submitQuorum", fields(mine), chain_id, quorum_sigs(mine, [0, 1, 2]))
    assert reverts("QuorumNotMet", q.transact, "submit", *single(envelope(q))) == (1, 3)
    # still accepted with three valid ones, and replay of the quorum report is refused
    q.transact("submitQuorum", fields(e2), chain_id, quorum_sigs(e2, [0, 1, 2]))
    reverts("ReplayedSequence", q.transact, "submitQuorum", fields(e2), chain_id, quorum_sigs(e2, [0, 1, 2]))
    # the set is bounded by maxSigners (a pool's maximumInstances)
    q.transact("addSigner", ADDRESSES[5], bytes(32))
    reverts("BadConfig", q.transact, "addSigner", ADDRESSES[6], bytes(32))


def test_gas_stays_within_the_issue_targets(chain, artifacts):
    q = queue(chain, artifacts)
    q.transact("submit", *single(envelope(q)))
    warm = q.transact("submit", *single(envelope(q))).gas_used
    assert warm <= 50_000
    p = queue(chain, artifacts, quorum=3, signers=range(5))
    for _ in range(2):
        e = envelope(p, cryptlet=POOL)
        quorum_warm = p.transact("submitQuorum", fields(e), chain.chain_id, quorum_sigs(e, [0, 1, 2])).gas_used
    assert quorum_warm <= 75_000


# --- ContractCryptlet ---------------------------------------------------------------------------


def contract_payload(result, version, before, after):
    """The payload a contract cryptlet's envelope signs (shared/isolation/runtime.py)."""
    return {
        "result": result,
        "state": {
            "version": version,
            "hash": "0x" + keccak256(canonical_json(after)).hex(),
            "previous": "0x" + keccak256(canonical_json(before)).hex(),
        },
    }


def snapshot(payload):
    s = payload["state"]
    return (s["version"], bytes.fromhex(s["hash"][2:]), bytes.fromhex(s["previous"][2:]))


def test_contract_cryptlet_follows_the_signed_state(chain, artifacts):
    m = chain.deploy(artifacts["StateMirror"], chain.accounts[0], DIGEST, 1, 2, 1, ZERO_ADDRESS)
    m.transact("addSigner", ADDRESSES[0], bytes(32))
    assert (m.call("minimumInstances"), m.call("maximumInstances"), m.call("quorum")) == (1, 2, 1)
    assert m.call("state") == (0, keccak256(b"{}"))
    s1 = {"greetings": 1}
    p1 = contract_payload({"message": "hello, Bo"}, 1, {}, s1)
    result1 = canonical_json(p1["result"])
    # the chain rebuilds exactly the canonical JSON the fabric signs
    assert m.call("statePayload", result1, snapshot(p1)) == canonical_json(p1)
    e1 = envelope(m, payload=p1)
    envelope_, chain_id, sig = single(e1)
    m.transact("advance", envelope_, chain_id, [sig], result1, snapshot(p1))
    assert m.call("state") == (1, keccak256(canonical_json(s1)))
    assert m.call("lastResultHash") == keccak256(result1)
    # an unchanged state keeps its version
    p2 = contract_payload({"count": 1}, 1, s1, s1)
    e2 = envelope(m, payload=p2)
    envelope_, chain_id, sig = single(e2)
    m.transact("advance", envelope_, chain_id, [sig], canonical_json(p2["result"]), snapshot(p2))
    assert m.call("state") == (1, keccak256(canonical_json(s1)))
    # a state that does not continue from the one held here
    p3 = contract_payload({}, 2, {"greetings": 7}, {"greetings": 8})
    envelope_, chain_id, sig = single(envelope(m, payload=p3))
    reverts("StateConflict", m.transact, "advance", envelope_, chain_id, [sig], canonical_json({}), snapshot(p3))
    # a skipped version
    p4 = contract_payload({}, 3, s1, {"greetings": 2})
    envelope_, chain_id, sig = single(envelope(m, payload=p4))
    assert reverts(
        "StateVersionMismatch", m.transact, "advance", envelope_, chain_id, [sig], canonical_json({}), snapshot(p4)
    ) == (1, 3)
    # a result that is not the signed one
    p5 = contract_payload({"ok": True}, 2, s1, {"greetings": 2})
    envelope_, chain_id, sig = single(envelope(m, payload=p5))
    reverts(
        "PayloadMismatch",
        m.transact,
        "advance",
        envelope_,
        chain_id,
        [sig],
        canonical_json({"ok": False}),
        snapshot(p5),
    )
    # onlyBy: another key, a replay
    envelope_, chain_id, sig = single(envelope(m, payload=p5, cryptlet=ADDRESSES[1]), key=1)
    reverts(
        "UnknownSigner", m.transact, "advance", envelope_, chain_id, [sig], canonical_json(p5["result"]), snapshot(p5)
    )
    envelope_, chain_id, sig = single(e1)
    reverts("ReplayedSequence", m.transact, "advance", envelope_, chain_id, [sig], result1, snapshot(p1))


def test_contract_cryptlet_pool_quorum_and_config(chain, artifacts):
    reverts("BadConfig", chain.deploy, artifacts["StateMirror"], chain.accounts[0], DIGEST, 1, 3, 2, POOL)
    m = chain.deploy(artifacts["StateMirror"], chain.accounts[0], DIGEST, 3, 5, 3, POOL)
    for i in range(5):
        m.transact("addSigner", ADDRESSES[i], bytes(32))
    p = contract_payload({"price": "2650.10"}, 1, {}, {"last": "2650.10"})
    e = envelope(m, cryptlet=POOL, payload=p)
    args = (canonical_json(p["result"]), snapshot(p))
    reverts("QuorumNotMet", m.transact, "advance", fields(e), chain.chain_id, quorum_sigs(e, [0, 1]), *args)
    m.transact("advance", fields(e), chain.chain_id, quorum_sigs(e, [0, 3, 4]), *args)
    assert m.call("stateVersion") == 1


# --- CryptletProxy ------------------------------------------------------------------------------


def test_proxy_request_fulfil_and_expiry(chain, artifacts):
    interface_id = bytes.fromhex("12345678")
    proxy = chain.deploy(
        artifacts["CryptletProxy"],
        chain.accounts[0],
        "price_feed",
        DIGEST,
        bytes.fromhex(EVIDENCE[2:]),
        interface_id,
        0,
    )
    proxy.transact("addSigner", ADDRESSES[0], bytes(32))
    consumer = chain.deploy(artifacts["ProxyConsumer"], proxy.address)
    assert (proxy.call("name"), proxy.call("digest"), proxy.call("interfaceId")) == ("price_feed", DIGEST, interface_id)
    topic = topic_hash("price_feed.quote")
    deadline = chain.timestamp() + 300
    receipt = consumer.transact("ask", topic, deadline)
    request_id = _topic1(receipt)  # Requested(requestId indexed, ...) is emitted by the proxy
    payload = {"gold": "2650.10"}
    e = envelope(proxy, topic="price_feed.quote", request_id=request_id, payload=payload)
    envelope_, chain_id, sig = single(e)
    # the payload bytes must be the signed ones
    reverts("PayloadMismatch", proxy.transact, "fulfil", envelope_, chain_id, sig, canonical_json({"gold": "1"}))
    receipt = proxy.transact("fulfil", envelope_, chain_id, sig, canonical_json(payload))
    assert receipt.logs[-1]["event"] == "Fulfilled" and receipt.logs[-1]["args"]["callbackOk"] is True
    assert consumer.call("lastId") == request_id and consumer.call("lastPayload") == canonical_json(payload)
    reverts("RequestNotPending", proxy.transact, "fulfil", envelope_, chain_id, sig, canonical_json(payload))
    # a second request that is not answered in time fails explicitly
    receipt = consumer.transact("ask", topic, chain.timestamp() + 60)
    late_id = _topic1(receipt)
    reverts("RequestNotExpired", proxy.transact, "expire", late_id)
    chain.time_travel(120)
    late = envelope(proxy, topic="price_feed.quote", request_id=late_id, payload=payload)
    envelope_, chain_id, sig = single(late)
    reverts("RequestExpired", proxy.transact, "fulfil", envelope_, chain_id, sig, canonical_json(payload))
    receipt = proxy.transact("expire", late_id)
    assert receipt.logs[-1]["event"] == "Expired" and consumer.call("expired") == late_id
    reverts("RequestNotPending", proxy.transact, "fulfil", envelope_, chain_id, sig, canonical_json(payload))
    reverts("UnknownRequest", proxy.transact, "expire", keccak256(b"nothing"))


def _topic1(receipt) -> bytes:
    topic = receipt.logs[0]["raw"]["topics"][1]
    return bytes.fromhex(topic[2:]) if isinstance(topic, str) else bytes(topic)


def test_proxy_subscription_delivers_in_sequence_until_it_ends(chain, artifacts):
    proxy = chain.deploy(
        artifacts["CryptletProxy"], chain.accounts[0], "market_watcher", DIGEST, bytes(32), bytes(4), 0
    )
    proxy.transact("addSigner", ADDRESSES[0], bytes(32))
    consumer = chain.deploy(artifacts["ProxyConsumer"], proxy.address)
    topic = "market_watcher.Price"
    subscription = _topic1(consumer.transact("follow", topic_hash(topic), chain.timestamp() + 600))
    first = envelope(proxy, topic=topic, payload={"gold": "2650.10", "libor": "0.0512"})
    envelope_, chain_id, sig = single(first)
    proxy.transact("deliver", subscription, envelope_, chain_id, sig, canonical_json(first.payload))
    assert consumer.call("deliveries") == 1 and consumer.call("lastId") == subscription
    reverts(
        "ReplayedSequence",
        proxy.transact,
        "deliver",
        subscription,
        envelope_,
        chain_id,
        sig,
        canonical_json(first.payload),
    )
    other = envelope(proxy, topic="market_watcher.Volume", payload={})
    reverts("WrongTopic", proxy.transact, "deliver", subscription, *single(other), canonical_json({}))
    chain.time_travel(700)
    later = envelope(proxy, topic=topic, payload={"gold": "2651"})
    reverts("SubscriptionEnded", proxy.transact, "deliver", subscription, *single(later), canonical_json(later.payload))


# --- the naive baseline is a working contract too -------------------------------------------------


def test_naive_baseline_verifies_the_same_envelopes(chain, artifacts):
    naive = chain.deploy(artifacts["NaiveMessageQueue"])
    naive.transact("addSigner", ADDRESSES[0])
    e = sign_envelope(envelope(naive), KEYS[0])
    naive.transact("submit", fields(e), e.signature)
    assert naive.call("latest")[0] == e.payload_hash


# --- a contract developer's view: the header from `cryptlet header` plus these contracts ----------

CONSUMER = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import "./MessageQueue.sol";
import "./CustomerValidatorCryptlet.sol";

/// Verdicts of customer_validator: a MessageQueue bound to its topic and package digest, both taken
/// from the header `cryptlet header customer_validator` generated.
contract CustomerVerdicts is MessageQueue {
    constructor(address owner_) MessageQueue(owner_,
        keccak256(bytes(string.concat(CustomerValidatorCryptlet.NAME, ".validate"))),
        CustomerValidatorCryptlet.DIGEST, 1 days, 1, address(0), 0) {}

    function headerInterfaceId() external pure returns (bytes4) {
        return type(ICustomerValidatorCryptlet).interfaceId;
    }

    function headerMatchesVerifier() external pure returns (bool) {
        return CustomerValidatorCryptlet.ENVELOPE_TYPEHASH == CryptletVerifier.ENVELOPE_TYPEHASH
            && CustomerValidatorCryptlet.DOMAIN_TYPEHASH == CryptletVerifier.DOMAIN_TYPEHASH;
    }
}
"""


def test_generated_header_compiles_with_the_contracts_and_binds_a_queue(chain, tmp_path):
    from cryptlet_cli.header import HeaderSource, library_name, solidity_header

    package = ROOT / "cryptlet_packages" / "customer_validator"
    source = HeaderSource.from_package(package)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / f"{library_name(source.name)}.sol").write_text(solidity_header(source))
    (tmp_path / "src" / "CustomerVerdicts.sol").write_text(CONSUMER)
    built = harness.build(tmp_path / "out", include=[tmp_path / "src"])
    verdicts = chain.deploy(built["CustomerVerdicts"], chain.accounts[0])
    assert verdicts.call("headerMatchesVerifier") is True
    assert verdicts.call("digest").hex() == source.digest[2:]
    assert verdicts.call("topic") == topic_hash("customer_validator.validate")
    verdicts.transact("addSigner", ADDRESSES[0], bytes(32))
    e = envelope(
        verdicts,
        topic="customer_validator.validate",
        payload={
            "approved": True,
            "failed_rules": [],
            "record_commitment": "0x" + "ab" * 32,
            "rules_version": "2026.1",
        },
    )
    e.digest = bytes.fromhex(source.digest[2:])
    verdicts.transact("submit", *single(e))
    assert verdicts.call("value") == e.payload_hash


def test_contracts_also_build_for_ganache_evm_versions(tmp_path):
    built = harness.build(tmp_path, evm_version="shanghai")
    assert built["build-info"]["settings"]["evmVersion"] == "shanghai"
    assert built["MessageQueue"]["bytecode"].startswith("0x")
