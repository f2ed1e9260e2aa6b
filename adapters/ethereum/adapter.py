"""The Ethereum chain adapter: CryptletProxy events -> the fabric's HTTP API -> signed envelopes on chain.

One loop (``Adapter.run``), each round:

1. **scan**: read the proxy's ``Requested``, ``Subscribed`` and ``Unsubscribed`` logs of the blocks
   that are at least ``confirmations`` deep (``head - confirmations``), in (block, log index) order,
   from the state's ``next_block``; each handled log moves the state's cursor, each fully read range
   moves ``next_block`` and records that block's hash (a later mismatch is a reorg deeper than the
   confirmation depth: the scan rewinds and rereads, which is safe because every handler is
   idempotent);
2. **requests**: for each pending request whose retry time has come: its on-chain status (not
   pending any more: done), the deadline (passed: ``expire`` it, reported), the fabric call
   ``POST /api/cryptlets/{name}/invoke`` with the request's id as ``request_id`` (so the envelope's
   ``requestId`` names it), a dry run of ``fulfil`` (``eth_call``: a revert is decoded to the
   contract's custom error) and the transaction;
3. **subscriptions**: each chain subscription has a fabric subscription (created with a signed
   subscriber request, target ``history``); the adapter reads its history and ``deliver``s every
   recorded envelope in order.

0. **ledger** (only when the transaction key is the proxy's ``owner()``: the proxy is a ``SignerSet``):
   read the fabric's ledger entries from the state's ``ledger.next`` sequence
   (``GET /api/ledger/entries``), check every entry of the page — its ``entry_hash`` recomputed,
   its ``prev_hash`` the previous entry's hash (the genesis hash for entry 1), consecutive
   sequences, one stream — before acting on any of them, then mirror the proxy's cryptlet's key
   events into its signer set: ``cryptlet.registered`` -> ``addSigner``, ``cryptlet.key_rotated``
   -> ``rotateSigner(old, new, entryHash)``, ``cryptlet.key_revoked`` / ``cryptlet.retired`` ->
   ``revokeSigner(key, entryHash)``. Each update reads ``signerStatus`` first (done already: skipped)
   and is dry-run with ``eth_call``, so a repeat after a crash is harmless.

Failures are logged with their reason, retried with exponential backoff up to ``max_attempts`` and
then reported (``failed`` in the state file and an ``ERROR`` log line). Permanent ones (the request
is no longer pending, the envelope was signed for another domain, ...) are not retried.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from shared.encoding import canonical_json
from shared.envelope import Envelope, topic_hash
from shared.errors import FabricError, InvalidInput
from shared.events.subscribers import sign_request
from shared.ledger.chain import LedgerEntry
from shared.ledger.checkpoints import VerifierKey
from shared.ledger.kinds import KEY_REVOKED, KEY_ROTATED, REGISTERED, RETIRED

from .state import State

log = logging.getLogger("adapters.ethereum")

PENDING = 1  # CryptletProxy.RequestStatus.Pending
UNKNOWN, ACTIVE, REVOKED = 0, 1, 2  # SignerSet.Status
STATUS_NAMES = {UNKNOWN: "unknown", ACTIVE: "active", REVOKED: "revoked"}
#: Reverts that mean "someone already did it / it cannot be done any more": do not retry.
PERMANENT = {
    "RequestNotPending",
    "UnknownRequest",
    "RequestExpired",
    "UnknownSubscription",
    "SubscriptionEnded",
    "ReplayedSequence",
    "WrongTopic",
    "WrongDigest",
    "WrongHost",
    "PayloadMismatch",
    "WrongChain",
    "RevokedSigner",
    "BadSignature",
}


class Failure(Exception):
    """A step failed; ``permanent`` ones are reported at once instead of retried."""

    def __init__(self, reason: str, *, permanent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass
class Config:
    rpc_url: str
    proxy: str
    abi_path: Path
    tx_key: str
    fabric_url: str
    function_key: str
    state_path: Path
    subscriber: str = ""
    subscriber_key: str = ""
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    confirmations: int = 2
    poll_s: float = 1.0
    start_block: int = 0
    max_attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    batch_blocks: int = 1000
    expire_late: bool = True
    gas: int = 1_500_000
    follow_ledger: bool = True
    ledger_page: int = 500
    ledger_key: str = ""


class Fabric:
    """The fabric's HTTP API, as far as the adapter uses it."""

    def __init__(self, url: str, function_key: str):
        self.http = httpx.Client(base_url=url.rstrip("/"), headers={"x-functions-key": function_key}, timeout=60)

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:300]}
            reason = problem.get("reason") or problem.get("code") or ""
            raise Failure(
                f"fabric {response.request.method} {response.request.url.path} -> {response.status_code}"
                f" {reason} {problem.get('detail', '')} field={problem.get('field')}".strip(),
                permanent=400 <= response.status_code < 500 and response.status_code not in (408, 409, 429),
            )
        return response.json()

    def cryptlet(self, name: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/api/cryptlets/{name}"))

    def invoke(self, name: str, method: str, args: dict[str, Any], request_id: str) -> dict[str, Any]:
        return self._check(
            self.http.post(
                f"/api/cryptlets/{name}/invoke", json={"method": method, "args": args, "request_id": request_id}
            )
        )

    def signed(self, path: str, body: bytes, signature: str) -> httpx.Response:
        return self.http.post(
            path, content=body, headers={"X-Subscriber-Signature": signature, "Content-Type": "application/json"}
        )

    def subscriptions(self, subscriber: str) -> list[dict[str, Any]]:
        return self._check(self.http.get("/api/subscriptions", params={"subscriber": subscriber}))["subscriptions"]

    def ledger_entries(self, start: int, limit: int) -> list[Any]:
        """Raw ledger entries from ``start`` (unverified: :func:`verify_ledger_page` checks them)."""
        answer = self._check(self.http.get("/api/ledger/entries", params={"from": str(start), "limit": str(limit)}))
        entries = answer.get("entries") if isinstance(answer, dict) else None
        if not isinstance(entries, list):
            raise Failure("fabric GET /api/ledger/entries: no entries list in the answer")
        return entries

    def receipt(self, sequence: int) -> dict[str, Any]:
        return self._check(self.http.get(f"/api/ledger/entries/{sequence}/receipt"))

    def history(self, subscription: str, start: int) -> dict[str, Any]:
        return self._check(
            self.http.get(f"/api/subscriptions/{subscription}/history", params={"from": str(start), "limit": "50"})
        )


def envelope_args(document: dict[str, Any]) -> tuple[tuple, int, tuple, bytes]:
    """(Envelope struct, chainId, Signature struct, payload bytes) of an envelope document."""
    e = Envelope.from_dict(document)
    signature = e.signature
    struct = (
        to_checksum_address(e.cryptlet),
        e.digest,
        topic_hash(e.topic),
        e.request_id,
        e.sequence,
        e.timestamp_ms,
        e.payload_hash,
        e.evidence_hash,
        e.registration_hash,
    )
    return struct, e.domain.chain_id, (signature[64], signature[:32], signature[32:64]), canonical_json(e.payload)


class LedgerVerificationError(Failure):
    """A ledger entry the fabric served does not verify: it is not acted on."""

    def __init__(self, sequence: int, code: str, detail: str):
        super().__init__(f"ledger entry {sequence}: {code}: {detail}")
        self.sequence, self.code = sequence, code


def verify_ledger_page(
    documents: list[Any], *, next_sequence: int, prev_hash: str, stream: str | None
) -> list[LedgerEntry]:
    """Parse and check a page of ledger entries (JSON documents) that must continue a verified chain
    ending in ``prev_hash`` at sequence ``next_sequence - 1`` (``GENESIS_HASH`` before entry 1).

    Every entry's hash is recomputed from its content (``LedgerEntry.computed_hash``, the payload
    canonicalised per RFC 8785 as the ledger stores it) and must be its ``entry_hash``; its
    ``prev_hash`` must be the hash of the entry before it; sequences must be consecutive and the
    stream the same throughout. The whole page is checked before any entry of it is returned, so
    an entry followed by a mislinked one is not trusted either. Raises
    :class:`LedgerVerificationError` naming the first bad entry (``malformed_entry``,
    ``sequence_mismatch``, ``stream_mismatch``, ``entry_hash_mismatch``, ``prev_hash_mismatch``).
    """
    entries: list[LedgerEntry] = []
    expected, previous = next_sequence, prev_hash
    for document in documents:
        try:
            entry = LedgerEntry.from_dict(document)
        except InvalidInput as exc:
            raise LedgerVerificationError(expected, "malformed_entry", str(exc)) from None
        except (TypeError, ValueError) as exc:  # e.g. a payload that is not canonical JSON
            raise LedgerVerificationError(expected, "malformed_entry", f"{type(exc).__name__}: {exc}") from None
        if entry.sequence != expected:
            raise LedgerVerificationError(expected, "sequence_mismatch", f"the fabric served entry {entry.sequence}")
        if stream is not None and entry.stream != stream:
            raise LedgerVerificationError(expected, "stream_mismatch", f"stream {entry.stream!r}, not {stream!r}")
        if entry.computed_hash() != entry.entry_hash:
            raise LedgerVerificationError(
                expected, "entry_hash_mismatch", "its content does not hash to its entry_hash"
            )
        if entry.prev_hash != previous:
            raise LedgerVerificationError(
                expected, "prev_hash_mismatch", f"does not link to entry {expected - 1} ({previous[:16]}…)"
            )
        entries.append(entry)
        stream, previous, expected = entry.stream, entry.entry_hash, expected + 1
    return entries


def verify_anchor(receipt_document: Any, last: LedgerEntry, key: VerifierKey) -> int:
    """Check that ``last`` (the newest entry of a verified page) is in a checkpoint signed by the pinned
    ``key``: its receipt must verify (``Receipt.verify``: signature, inclusion proof) and name exactly
    this entry. Every earlier entry of the page links to it, so the whole page is anchored. Returns
    the checkpoint's size; :class:`LedgerVerificationError` otherwise."""
    from shared.ledger.receipts import Receipt

    try:
        receipt = Receipt.from_dict(receipt_document)
        checkpoint = receipt.verify(key)
    except FabricError as exc:
        raise LedgerVerificationError(
            last.sequence, getattr(exc, "reason", None) or "receipt_invalid", f"its receipt does not verify: {exc}"
        ) from None
    if receipt.entry.sequence != last.sequence or receipt.entry.entry_hash != last.entry_hash:
        raise LedgerVerificationError(
            last.sequence, "receipt_mismatch", f"the checkpointed entry {receipt.entry.sequence} is not the one served"
        )
    return checkpoint.size


class Adapter:
    def __init__(self, config: Config):
        self.config = config
        self.w3 = Web3(Web3.HTTPProvider(config.rpc_url, request_kwargs={"timeout": 30}))
        abi = json.loads(Path(config.abi_path).read_text())
        self.abi = abi["abi"] if isinstance(abi, dict) else abi
        self.proxy = self.w3.eth.contract(address=to_checksum_address(config.proxy), abi=self.abi)
        self.errors = {
            keccak(text=f"{item['name']}({','.join(i['type'] for i in item['inputs'])})")[:4]: item
            for item in self.abi
            if item.get("type") == "error"
        }
        self.account = Account.from_key(config.tx_key)
        self.fabric = Fabric(config.fabric_url, config.function_key)
        self.chain_id = self.w3.eth.chain_id
        self.state = State.load(
            config.state_path, chain_id=self.chain_id, proxy=self.proxy.address, start_block=config.start_block
        )
        self.name = self.proxy.functions.name().call()
        self.topics: dict[bytes, str] = {}
        self.stopping = False
        self.event_topics = {self._event_topic(n): n for n in ("Requested", "Subscribed", "Unsubscribed")}
        self.digest = bytes(self.proxy.functions.digest().call())
        owner = self.proxy.functions.owner().call()
        self.signer_owner = to_checksum_address(owner) == self.account.address
        self.follows_ledger = config.follow_ledger and self.signer_owner
        self.ledger_key = VerifierKey.parse(config.ledger_key, "ledger_key") if config.ledger_key else None

    def _event_topic(self, name: str) -> bytes:
        item = next(i for i in self.abi if i.get("type") == "event" and i["name"] == name)
        return keccak(text=f"{name}({','.join(i['type'] for i in item['inputs'])})")

    # -- main loop ----------------------------------------------------------------------------------
    def run(self, *, once: bool = False) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self._check_domain()
        log.info(
            "adapter for proxy %s (cryptlet %s) on chain %d: resuming from block %d%s, %d confirmations",
            self.proxy.address,
            self.name,
            self.chain_id,
            self.state.data["next_block"],
            f" after log {self.state.data['cursor']}" if self.state.data["cursor"] else "",
            self.config.confirmations,
        )
        if self.follows_ledger:
            ledger = self.state.ledger
            log.info(
                "signer set: following the fabric's ledger from entry %d for cryptlet %s, %s%s",
                ledger["next"],
                self.name,
                f"checkpoint key {self.ledger_key.name}+{self.ledger_key.key_id.hex()} pinned"
                if self.ledger_key
                else "no checkpoint key pinned (hash chain only)",
                f" (it had halted, trying again: {ledger['halted']})" if ledger.get("halted") else "",
            )
            ledger.update(halted=None, attempts=0, next_try=0.0)
            self.state.save()
        else:
            log.info(
                "signer set: not following the ledger (%s)",
                "--no-ledger"
                if not self.config.follow_ledger
                else f"the proxy's owner is not the transaction account {self.account.address}",
            )
        while not self.stopping:
            try:
                self.scan()
                if self.follows_ledger:
                    self.follow_ledger()
                self.work_requests()
                self.work_subscriptions()
            except (httpx.HTTPError, OSError, ConnectionError) as exc:  # the node or the fabric is unreachable
                log.warning("round failed, retrying: %s", exc)
            if once:
                break
            time.sleep(self.config.poll_s)
        self.state.save()
        log.info("adapter stopped at block %d", self.state.data["next_block"])

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _check_domain(self) -> None:
        """Warn early if the fabric signs for another domain (its /api/health does not say; an envelope does)."""
        try:
            self.cryptlet_info = self.fabric.cryptlet(self.name)
        except Failure as exc:
            log.error("cryptlet %s is not registered on the fabric: %s", self.name, exc.reason)
            self.cryptlet_info = {}
        methods = self.cryptlet_info.get("methods") or []
        for method in methods if isinstance(methods, (list, dict)) else []:
            self.topics[topic_hash(f"{self.name}.{method}")] = method

    # -- scanning -----------------------------------------------------------------------------------
    def scan(self) -> None:
        data = self.state.data
        head = self.w3.eth.block_number
        safe = head - self.config.confirmations
        self._check_reorg()
        while data["next_block"] <= safe and not self.stopping:
            start = data["next_block"]
            end = min(safe, start + self.config.batch_blocks - 1)
            logs = self.w3.eth.get_logs(
                {"address": self.proxy.address, "fromBlock": start, "toBlock": end, "topics": [list(self.event_topics)]}
            )
            for entry in sorted(logs, key=lambda log: (log["blockNumber"], log["logIndex"])):
                position = [entry["blockNumber"], entry["logIndex"]]
                if data["cursor"] and position <= data["cursor"]:
                    continue  # handled before a restart
                self.handle_log(entry)
                data["cursor"] = position
                self.state.save()
            data["next_block"] = end + 1
            data["cursor"] = None
            data["last_block_hash"] = [end, self.w3.eth.get_block(end)["hash"].hex()]
            self.state.save()

    def _check_reorg(self) -> None:
        recorded = self.state.data.get("last_block_hash")
        if not recorded:
            return
        number, block_hash = recorded
        if self.w3.eth.get_block(number)["hash"].hex() != block_hash:
            back = max(0, number - 2 * self.config.confirmations - 1)
            log.error(
                "block %d changed after %d confirmations (reorg deeper than the confirmation depth): "
                "rescanning from block %d",
                number,
                self.config.confirmations,
                back,
            )
            self.state.data.update(next_block=back, cursor=None, last_block_hash=None)
            self.state.save()

    def handle_log(self, entry: Any) -> None:
        kind = self.event_topics[bytes(entry["topics"][0])]
        event = getattr(self.proxy.events, kind)().process_log(entry)
        args = event["args"]
        if kind == "Requested":
            request_id = "0x" + bytes(args["requestId"]).hex()
            if request_id in self.state.requests or self.state.is_done(request_id):
                return
            self.state.requests[request_id] = {
                "topic": "0x" + bytes(args["topic"]).hex(),
                "args": "0x" + bytes(args["args"]).hex(),
                "deadline": args["deadline"],
                "consumer": args["consumer"],
                "block": entry["blockNumber"],
                "attempts": 0,
                "next_try": 0.0,
            }
            log.info("request %s from %s seen in block %d", request_id, args["consumer"], entry["blockNumber"])
        elif kind == "Subscribed":
            sid = "0x" + bytes(args["subscriptionId"]).hex()
            if sid in self.state.subscriptions:
                return
            self.state.subscriptions[sid] = {
                "topic": "0x" + bytes(args["topic"]).hex(),
                "until": args["until"],
                "consumer": args["consumer"],
                "status": "new",
                "fabric_id": None,
                "next_fire": 0,
                "attempts": 0,
                "next_try": 0.0,
            }
            log.info("subscription %s from %s seen in block %d", sid, args["consumer"], entry["blockNumber"])
        elif kind == "Unsubscribed":
            sid = "0x" + bytes(args["subscriptionId"]).hex()
            found = self.state.subscriptions.get(sid)
            if found and found["status"] != "ended":
                self._end_subscription(sid, found, "unsubscribed on chain")

    # -- ledger -> signer set -------------------------------------------------------------------------
    def follow_ledger(self) -> None:
        """Mirror the key events of the proxy's cryptlet, from verified ledger entries only, in ledger order.

        The cursor (``ledger.next``, ``ledger.prev_hash``) moves only past an entry that verified and
        was handled (mirrored, found mirrored already, not this cryptlet's, or reported as a
        permanent failure such as adding a key the set has revoked); a page that does not verify, or
        an update that may pass later, is retried with backoff from the same entry, and after
        ``max_attempts`` it is reported and the ledger is no longer followed (``ledger.halted``)
        until the adapter is restarted — so no later entry is applied past a revocation that was
        not, and a ledger that does not verify is never acted on.
        """
        ledger = self.state.ledger
        if ledger.get("halted") or ledger["next_try"] > time.time():
            return
        while not self.stopping:
            try:
                documents = self.fabric.ledger_entries(ledger["next"], self.config.ledger_page)
                entries = verify_ledger_page(
                    documents, next_sequence=ledger["next"], prev_hash=ledger["prev_hash"], stream=ledger.get("stream")
                )
                if entries and self.ledger_key is not None:
                    verify_anchor(self.fabric.receipt(entries[-1].sequence), entries[-1], self.ledger_key)
            except Failure as exc:
                self._ledger_failed(exc, ledger["next"])
                return
            if not entries:
                return
            for entry in entries:
                if self.stopping:
                    return
                try:
                    self.mirror(entry)
                except Failure as exc:
                    if not exc.permanent:  # retried from this entry; after max_attempts: reported, halted
                        self._ledger_failed(exc, entry.sequence)
                        return
                    self._report(
                        "ledger",
                        str(entry.sequence),
                        {"kind": entry.kind, "entry_hash": "0x" + entry.entry_hash},
                        exc.reason,
                    )
                ledger.update(
                    next=entry.sequence + 1, prev_hash=entry.entry_hash, stream=entry.stream, attempts=0, next_try=0.0
                )
                self.state.save()
            if len(documents) < self.config.ledger_page:
                return

    def _ledger_failed(self, exc: Failure, sequence: int) -> None:
        ledger = self.state.ledger
        ledger["attempts"] += 1
        if ledger["attempts"] >= self.config.max_attempts:
            ledger["halted"] = exc.reason
            self._report("ledger", str(sequence), {"attempts": ledger["attempts"]}, exc.reason)
            log.error(
                "signer set: no longer following the ledger (entry %d): restart the adapter once the cause is fixed",
                sequence,
            )
        else:
            delay = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (ledger["attempts"] - 1))
            ledger["next_try"] = time.time() + delay
            log.warning(
                "signer set: ledger from entry %d failed (attempt %d/%d), retrying in %.1f s: %s",
                sequence,
                ledger["attempts"],
                self.config.max_attempts,
                delay,
                exc.reason,
            )
        self.state.save()

    def signer_status(self, address: str) -> int:
        return int(self.proxy.functions.signerStatus(to_checksum_address(address)).call())

    def mirror(self, entry: LedgerEntry) -> None:
        """Apply one verified ledger entry to the proxy's signer set, if it is a key event of its cryptlet.

        Idempotent: the on-chain status of the keys is read first and an update already made is
        skipped, so repeating an entry (a crash before its cursor was saved) sends nothing.
        """
        payload = entry.payload
        if entry.kind not in (REGISTERED, KEY_ROTATED, KEY_REVOKED, RETIRED) or payload.get("name") != self.name:
            return
        ledger_entry = bytes.fromhex(entry.entry_hash)
        address = payload.get("address")
        if not isinstance(address, str):
            raise Failure(f"ledger entry {entry.sequence} ({entry.kind}) names no address", permanent=True)
        where = f"ledger entry {entry.sequence} ({entry.kind} {self.name})"
        if entry.kind in (REGISTERED, KEY_ROTATED):
            digest = str(payload.get("digest", ""))
            if digest.lower() != "0x" + self.digest.hex():
                log.info(
                    "signer set: %s is for package %s, the proxy is bound to 0x%s: not mirrored",
                    where,
                    digest,
                    self.digest.hex(),
                )
                return
        if entry.kind == REGISTERED:
            status = self.signer_status(address)
            if status != UNKNOWN:
                log.info("signer set: %s: key %s is %s on chain already", where, address, STATUS_NAMES[status])
                return
            tx = self._transact("addSigner", to_checksum_address(address), ledger_entry)
            log.info("signer set: %s mirrored: addSigner(%s) in tx %s", where, address, tx["hash"])
        elif entry.kind == KEY_ROTATED:
            old = payload.get("previous_address")
            if not isinstance(old, str):
                raise Failure(f"{where} names no previous_address", permanent=True)
            old_status, new_status = self.signer_status(old), self.signer_status(address)
            if new_status != UNKNOWN and old_status != ACTIVE:
                log.info(
                    "signer set: %s: %s -> %s is on chain already (%s, %s)",
                    where,
                    old,
                    address,
                    STATUS_NAMES[old_status],
                    STATUS_NAMES[new_status],
                )
                return
            if old_status == UNKNOWN:  # the set never held the old key: the new one is still this cryptlet's key
                tx = self._transact("addSigner", to_checksum_address(address), ledger_entry)
                log.info(
                    "signer set: %s mirrored: addSigner(%s) (the old key %s was never in the set) in tx %s",
                    where,
                    address,
                    old,
                    tx["hash"],
                )
                return
            tx = self._transact("rotateSigner", to_checksum_address(old), to_checksum_address(address), ledger_entry)
            log.info("signer set: %s mirrored: rotateSigner(%s, %s) in tx %s", where, old, address, tx["hash"])
        else:  # KEY_REVOKED, RETIRED
            status = self.signer_status(address)
            if status != ACTIVE:
                log.info(
                    "signer set: %s: key %s is %s on chain: nothing to revoke", where, address, STATUS_NAMES[status]
                )
                return
            tx = self._transact("revokeSigner", to_checksum_address(address), ledger_entry)
            log.info("signer set: %s mirrored: revokeSigner(%s) in tx %s", where, address, tx["hash"])

    # -- requests -----------------------------------------------------------------------------------
    def work_requests(self) -> None:
        for request_id, request in list(self.state.requests.items()):
            if self.stopping:
                return
            if request["next_try"] > time.time():
                continue
            try:
                outcome = self.fulfil(request_id, request)
            except Failure as exc:
                self._failed("request", request_id, request, exc, self.state.requests)
            else:
                self.state.finish_request(request_id, outcome)
            self.state.save()

    def fulfil(self, request_id: str, request: dict[str, Any]) -> str:
        rid = bytes.fromhex(request_id[2:])
        status = self.proxy.functions.requests(rid).call()[3]
        if status != PENDING:
            log.info("request %s is no longer pending (status %d): nothing to do", request_id, status)
            return "not_pending"
        now = self.w3.eth.get_block("latest")["timestamp"]
        if now > request["deadline"]:
            if self.config.expire_late:
                self._transact("expire", rid)
            raise Failure(
                f"deadline {request['deadline']} passed before fulfilment (chain time {now}); "
                + ("expired on chain" if self.config.expire_late else "left pending"),
                permanent=True,
            )
        method = self.topics.get(bytes.fromhex(request["topic"][2:]))
        if method is None:
            self._check_domain()  # the cryptlet may have been registered (or updated) since
            method = self.topics.get(bytes.fromhex(request["topic"][2:]))
        if method is None:
            raise Failure(f"topic {request['topic']} is no method of cryptlet {self.name}", permanent=True)
        raw = bytes.fromhex(request["args"][2:])
        try:
            call_args = json.loads(raw) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Failure("request args are not JSON", permanent=True) from None
        if not isinstance(call_args, dict):
            raise Failure("request args must be a JSON object", permanent=True)
        document = self.fabric.invoke(self.name, method, call_args, request_id)
        self._check_envelope_domain(document)
        struct, chain_id, sig, payload = envelope_args(document)
        tx = self._transact("fulfil", struct, chain_id, sig, payload)
        log.info(
            "request %s fulfilled in tx %s (block %d, envelope sequence %d)",
            request_id,
            tx["hash"],
            tx["block"],
            struct[4],
        )
        return "fulfilled"

    def _check_envelope_domain(self, document: dict[str, Any]) -> None:
        domain = document.get("domain") or {}
        if (
            domain.get("chainId") != self.chain_id
            or str(domain.get("verifyingContract", "")).lower() != self.proxy.address.lower()
        ):
            raise Failure(
                f"the fabric signs for chainId {domain.get('chainId')} verifyingContract "
                f"{domain.get('verifyingContract')}, not for this proxy (chainId {self.chain_id}, "
                f"{self.proxy.address}): set the host's FABRIC_CHAIN_ID/FABRIC_VERIFYING_CONTRACT",
                permanent=True,
            )

    # -- subscriptions ------------------------------------------------------------------------------
    def work_subscriptions(self) -> None:
        for sid, sub in list(self.state.subscriptions.items()):
            if self.stopping:
                return
            if sub["status"] == "ended" or sub["next_try"] > time.time():
                continue
            try:
                if sub["status"] in ("new", "creating"):
                    self._create_subscription(sid, sub)
                if sub["status"] == "active":
                    self._deliver_history(sid, sub)
            except Failure as exc:
                self._failed("subscription", sid, sub, exc, None)
                if exc.permanent:
                    sub["status"] = "ended"
            self.state.save()

    def _spec(self, topic: str) -> tuple[str, dict[str, Any]]:
        for name, spec in self.config.subscriptions.items():
            if "0x" + topic_hash(name).hex() == topic:
                return name, spec
        raise Failure(f"no subscription spec for topic {topic} (give one with --subscriptions)", permanent=True)

    def _create_subscription(self, sid: str, sub: dict[str, Any]) -> None:
        if not self.config.subscriber:
            raise Failure("no subscriber configured (--subscriber, --subscriber-key-file)", permanent=True)
        name, spec = self._spec(sub["topic"])
        cryptlet, _, method = name.partition(".")
        deadline_ms = min(sub["until"] * 1000, int(time.time() * 1000) + 365 * 86400 * 1000)
        body = {
            "cryptlet": cryptlet,
            "method": spec.get("method", method),
            "args": spec.get("args", {}),
            "trigger": spec["trigger"],
            "target": {"type": "history"},
            "deadline_ms": deadline_ms,
        }
        if "missed" in spec:
            body["missed"] = spec["missed"]
        if sub["status"] == "creating":  # a restart between sending the request and recording its answer
            adopted = self._adopt(sub)
            if adopted:
                return
        sub.update(status="creating", requested_ms=int(time.time() * 1000))
        self.state.save()
        message, signature = sign_request(self.config.subscriber_key, self.config.subscriber, "subscribe", body)
        response = self.fabric.signed("/api/subscriptions", message, signature)
        created = self.fabric._check(response)["subscription"]
        sub.update(status="active", fabric_id=created["id"], attempts=0, next_try=0.0)
        log.info("subscription %s -> fabric subscription %s (%s.%s)", sid, created["id"], cryptlet, body["method"])

    def _adopt(self, sub: dict[str, Any]) -> bool:
        """After a restart in the middle of creating: take the subscriber's fabric subscription created
        since the request was sent that no chain subscription has yet."""
        known = {s.get("fabric_id") for s in self.state.subscriptions.values()}
        for candidate in self.fabric.subscriptions(self.config.subscriber):
            if candidate["id"] not in known and candidate.get("created_ms", 0) >= sub.get("requested_ms", 0) - 1000:
                sub.update(status="active", fabric_id=candidate["id"])
                log.warning("adopted fabric subscription %s created before the restart", candidate["id"])
                return True
        return False

    def _deliver_history(self, sid: str, sub: dict[str, Any]) -> None:
        answer = self.fabric.history(sub["fabric_id"], sub["next_fire"])
        for row in answer["deliveries"]:
            if row["result"] is None:
                return  # not invoked yet: deliveries go in order
            if row["result"] == "expired":
                self._end_subscription(sid, sub, "deadline reached", cancel=False)
                return
            if row["result"] == "ok" and row.get("envelope"):
                try:
                    document = {k: v for k, v in row["envelope"].items() if k != "events"}
                    self._check_envelope_domain(document)
                    struct, chain_id, sig, payload = envelope_args(document)
                    tx = self._transact("deliver", bytes.fromhex(sid[2:]), struct, chain_id, sig, payload)
                    log.info(
                        "subscription %s: fire %d delivered in tx %s (envelope sequence %d)",
                        sid,
                        row["sequence"],
                        tx["hash"],
                        struct[4],
                    )
                except Failure as exc:
                    if exc.reason.startswith("ReplayedSequence"):
                        log.info("subscription %s: fire %d was delivered already", sid, row["sequence"])
                    elif exc.reason.startswith(("SubscriptionEnded", "UnknownSubscription")):
                        self._end_subscription(sid, sub, exc.reason)
                        return
                    elif not exc.permanent and sub["attempts"] + 1 < self.config.max_attempts:
                        raise
                    else:
                        self._report("subscription", sid, {"fire": row["sequence"]}, exc.reason)
            else:
                self._report(
                    "subscription", sid, {"fire": row["sequence"]}, f"fabric fire {row['result']}: {row.get('error')}"
                )
            sub.update(next_fire=row["sequence"] + 1, attempts=0)
            self.state.save()

    def _end_subscription(self, sid: str, sub: dict[str, Any], why: str, *, cancel: bool = True) -> None:
        sub["status"] = "ended"
        log.info("subscription %s ended: %s", sid, why)
        if cancel and sub.get("fabric_id") and self.config.subscriber:
            message, signature = sign_request(
                self.config.subscriber_key, self.config.subscriber, "cancel", {"subscription": sub["fabric_id"]}
            )
            response = self.fabric.signed(f"/api/subscriptions/{sub['fabric_id']}/cancel", message, signature)
            if response.status_code >= 400 and response.status_code != 409:
                log.warning(
                    "cancelling fabric subscription %s: %d %s",
                    sub["fabric_id"],
                    response.status_code,
                    response.text[:200],
                )

    # -- failures -----------------------------------------------------------------------------------
    def _failed(self, kind: str, ident: str, item: dict[str, Any], exc: Failure, table: dict[str, Any] | None) -> None:
        item["attempts"] = item.get("attempts", 0) + 1
        if exc.permanent or item["attempts"] >= self.config.max_attempts:
            self._report(kind, ident, {"attempts": item["attempts"]}, exc.reason)
            if table is not None:
                table.pop(ident, None)
                self.state.finish_request(ident, "failed")
            return
        delay = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (item["attempts"] - 1))
        item["next_try"] = time.time() + delay
        log.warning(
            "%s %s failed (attempt %d/%d), retrying in %.0f s: %s",
            kind,
            ident,
            item["attempts"],
            self.config.max_attempts,
            delay,
            exc.reason,
        )

    def _report(self, kind: str, ident: str, extra: dict[str, Any], reason: str) -> None:
        record = {"kind": kind, "id": ident, "reason": reason, "at_ms": int(time.time() * 1000), **extra}
        self.state.report_failure(record)
        log.error("%s %s failed for good: %s", kind, ident, reason)

    # -- transactions -------------------------------------------------------------------------------
    def _decode_revert(self, exc: Exception) -> str:
        data = getattr(exc, "data", None)
        for candidate in (data, *(getattr(exc, "args", ()) or ())):
            if isinstance(candidate, dict):
                candidate = candidate.get("data")
            if isinstance(candidate, str) and candidate.startswith("0x") and len(candidate) >= 10:
                raw = bytes.fromhex(candidate[2:])
                item = self.errors.get(raw[:4])
                if item:
                    values = abi_decode([i["type"] for i in item["inputs"]], raw[4:])
                    shown = ", ".join(v.hex() if isinstance(v, bytes) else str(v) for v in values)
                    return f"{item['name']}({shown})"
                return f"revert 0x{raw.hex()}"
        return f"{type(exc).__name__}: {exc}"

    def _transact(self, function: str, *args: Any) -> dict[str, Any]:
        call = getattr(self.proxy.functions, function)(*args)
        try:  # dry run first: a revert names its custom error and costs nothing
            call.call({"from": self.account.address})
        except Exception as exc:  # web3 raises several types for a revert
            reason = self._decode_revert(exc)
            name = reason.split("(", 1)[0]
            raise Failure(reason, permanent=name in PERMANENT) from None
        tx = call.build_transaction(
            {
                "from": self.account.address,
                "chainId": self.chain_id,
                "gas": self.config.gas,
                "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
            }
        )
        signed = self.account.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:
            raise Failure(f"transaction failed: {self._decode_revert(exc)}") from None
        if receipt["status"] != 1:  # the dry run passed, the chain moved on in between: ask again why
            try:
                call.call({"from": self.account.address})
                reason = "unknown reason"
            except Exception as exc:
                reason = self._decode_revert(exc)
            raise Failure(
                f"{reason} (transaction 0x{bytes(tx_hash).hex()} reverted)",
                permanent=reason.split("(", 1)[0] in PERMANENT,
            )
        return {"hash": "0x" + bytes(tx_hash).hex(), "block": receipt["blockNumber"]}
