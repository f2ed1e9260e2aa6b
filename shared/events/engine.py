"""The event engine's service: fire queue, fire worker, webhooks, dead letters, history.

Built by the composition root (:mod:`shared.host.composition`) with its collaborators: an ``invoke``
callable, the stores, the delivery key and the queues; ``functions/events.py`` calls it and nothing
deeper. The scheduler tick is :mod:`shared.events.tick`, the history table
:mod:`shared.events.history`, signing and callbacks :mod:`shared.events.delivery`. Formats: docs/events.md.

Fire worker (:meth:`Events.run_fire`), for one queue message ``(subscription, sequence)``:

1. the history row: ``delivered`` -> nothing to do; missing -> claimed now (a message whose claim
   row was lost, or a fire enqueued by hand);
2. early by at most :data:`MAX_EARLY_WAIT_MS` -> sleep until ``at_ms``; a retry (dequeue count
   n >= 2) waits ``base * 2^(n-2)`` in all (``base`` = host.json ``visibilityTimeout``, which the
   queue already waited), at most ``FABRIC_DELIVERY_BACKOFF_MAX_S``;
3. no result recorded yet -> invoke the cryptlet with ``request_id = sha256(subscription:sequence)``,
   record the envelope (or a 4xx failure, or the ``expired`` result) in the row with its ETag (a
   concurrent duplicate loses the write and uses the winner's result);
4. deliver the recorded result (callback: signed POST; history: nothing more) and mark the row
   ``delivered``. A failed delivery raises, so the queue retries the message and finally moves it
   to ``<fire queue>-poison``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient

from shared.clock import now_ms
from shared.encoding import parse_json_input
from shared.errors import Conflict, FabricError, InvalidInput, NotFound, PayloadTooLarge, StorageError
from shared.events import webhooks
from shared.events.delivery import CallbackClient, CallbackPolicy, DeliveryFailed, DeliveryKey
from shared.events.history import HistoryRow, HistoryStore
from shared.events.subscriptions import Subscription, SubscriptionStore
from shared.events.tick import Scheduler, fire_message
from shared.limits import MAX_WEBHOOK_BYTES
from shared.settings import PROJECT_ROOT, SETTINGS
from shared.storage import Storage, storage_errors

log = logging.getLogger("fabric.events")
#: A fire surfacing at most this early is held by the worker until its instant.
MAX_EARLY_WAIT_MS = 1500
#: How long a subscription read is reused by the worker and the webhook route.
SUBSCRIPTION_TTL_S = 5.0
#: Dead letters listed at most (a queue peek returns at most 32).
MAX_DEADLETTERS = 32
#: ``invoke(cryptlet, method, args, request id hex) -> envelope document``
Invoke = Callable[[str, str, dict[str, Any], str], dict[str, Any]]
_SUBSCRIPTION_ID = re.compile(r"^sub_[0-9a-f]{24}\Z")


class Unauthorized(FabricError):
    status, code, title = 401, "unauthorized", "Unauthorized"


def _setting(env: Mapping[str, str], name: str) -> str:
    return env.get(name) or SETTINGS[name][0] or ""


def _max_dequeue_count(host_json: os.PathLike[str] | str = PROJECT_ROOT / "host.json") -> int:
    """host.json ``extensions.queues.maxDequeueCount`` (default 5, as in Azure)."""
    try:
        return int(json.loads(open(host_json).read())["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, KeyError, ValueError, TypeError):
        return 5


def _visibility_base_s(host_json: os.PathLike[str] | str = PROJECT_ROOT / "host.json") -> float:
    """host.json ``extensions.queues.visibilityTimeout`` in seconds (the retry base), default 0."""
    try:
        value = json.loads(open(host_json).read())["extensions"]["queues"]["visibilityTimeout"]
        h, m, s = value.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except (OSError, KeyError, ValueError, TypeError):
        return 0.0


def request_id_of(subscription: str, sequence: int) -> str:
    """The deterministic invocation request id of a fire: SHA-256 of ``<subscription>:<sequence>``."""
    return "0x" + hashlib.sha256(f"{subscription}:{sequence}".encode()).hexdigest()


def record_result(
    row: HistoryRow,
    *,
    envelope: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    result: str = "ok",
) -> None:
    """Put a result into ``row`` (not stored yet)."""
    row.result, row.envelope, row.error = result, envelope, error
    row.status = "invoked" if result == "ok" else "failed"
    row.invoked_ms = now_ms()
    if envelope is not None:
        row.payload_hash = str(envelope.get("payload_hash", ""))
        row.signature = str(envelope.get("signature", ""))
        if len(json.dumps(envelope)) > 30_000:
            row.result, row.envelope, row.status = "failed", None, "failed"
            row.error = {
                "code": "envelope_too_large",
                "status": 413,
                "detail": "the envelope is too large for the history table",
            }


class Events:
    """Subscriptions' runtime: one per host process."""

    def __init__(
        self,
        *,
        invoke: Invoke,
        subscriptions: SubscriptionStore,
        history: HistoryStore,
        delivery_key: DeliveryKey,
        storage: Storage,
        sealing_secret: bytes,
        region_timeout: float,
        callbacks: CallbackPolicy | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        #: ``invoke(cryptlet, method, args, request id hex) -> envelope document``
        self.invoke = invoke
        self.sealing_secret = sealing_secret  # opens sealed webhook secrets; never logged
        self.fire_queue_name = _setting(env, "FABRIC_FIRE_QUEUE")
        self.backoff_max_s = float(_setting(env, "FABRIC_DELIVERY_BACKOFF_MAX_S"))
        self.backoff_base_s = _visibility_base_s()
        self.max_attempts = _max_dequeue_count()
        #: how long an ``invoking`` row is left to the worker that marked it (then a retry takes over)
        self.lease_ms = int((region_timeout + MAX_EARLY_WAIT_MS / 1000 + 5) * 1000)
        self.subscriptions = subscriptions
        self.history = history
        self.key = delivery_key
        self.callbacks = CallbackClient(self.key, callbacks)  # where callbacks may go: docs/events.md
        self.queue = storage.queue(self.fire_queue_name)
        self.poison = storage.queue(f"{self.fire_queue_name}-poison")
        for client in (self.queue, self.poison):
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                log.warning("could not create queue %s: %s", client.queue_name, type(exc).__name__)
        self.scheduler = Scheduler(self)
        self._cache: dict[str, tuple[float, Subscription]] = {}  # id -> (read at, subscription)
        self._cache_lock = threading.Lock()

    def subscription(self, subscription_id: str) -> Subscription:
        """A subscription as read at most :data:`SUBSCRIPTION_TTL_S` ago (the tick refreshes every one it
        lists each second); :class:`NotFound` if there is none. Workers need its target, method and args,
        which never change, and its status, for which a second's staleness is harmless."""
        cached = self._cache.get(subscription_id)
        if cached is not None and time.monotonic() - cached[0] < SUBSCRIPTION_TTL_S:
            return cached[1]
        subscription, _ = self.subscriptions.get(subscription_id)
        self.remember(subscription)
        return subscription

    def remember(self, subscription: Subscription) -> None:
        with self._cache_lock:
            self._cache[subscription.id] = (time.monotonic(), subscription)
            if len(self._cache) > 100_000:
                self._cache.clear()

    @property
    def delivery_address(self) -> str:
        return self.key.address

    # -- the fire queue ------------------------------------------------------------------------------
    def enqueue(self, message: dict[str, Any], now: int | None = None) -> None:
        """Put a fire on the queue, visible ``floor(seconds until at_ms)`` from now (0 if due)."""
        now = now_ms() if now is None else now
        delay = max(0, (message["at_ms"] - now_ms()) // 1000)
        body = base64.b64encode(json.dumps(message, separators=(",", ":")).encode()).decode()
        with storage_errors("fire queue"):
            self.queue.send_message(body, visibility_timeout=int(delay) or None)

    def tick(self) -> dict[str, int]:
        return self.scheduler.tick()

    # -- the fire worker ----------------------------------------------------------------------------
    def run_fire(self, body: bytes | str, dequeue_count: int = 1) -> str:
        """Process one fire message; return what happened (``delivered``, ``duplicate``, ...).

        Raises when the delivery failed or storage/the region failed (5xx): the queue retries.
        """
        message = _parse_message(body)
        subscription_id, sequence = message["subscription"], message["sequence"]
        try:
            subscription = self.subscription(subscription_id)
        except NotFound:
            log.warning("fire for unknown subscription %s dropped", subscription_id)
            return "unknown_subscription"
        row = self.history.get(subscription_id, sequence)
        if row is None:
            try:
                row = self.history.claim(HistoryRow(subscription_id, sequence, message, claimed_ms=now_ms()))
            except Conflict:
                row = self.history.get(subscription_id, sequence)
                assert row is not None
        if row.status == "delivered":
            return "duplicate"
        leased = False
        if not row.has_result:
            if row.status == "invoking" and now_ms() - row.invoked_ms < self.lease_ms:
                return "in_progress"  # a duplicate of this fire is being invoked right now; it delivers
            row.status, row.invoked_ms = "invoking", now_ms()
            try:  # the invocation lease: of two copies of one fire, only one invokes the cryptlet
                row = self.history.update(row)
            except Conflict:
                return "in_progress"
            leased = True
        early = message["at_ms"] - now_ms()
        if 0 < early <= MAX_EARLY_WAIT_MS:
            time.sleep(early / 1000)  # lease taken first: at the instant only the invocation is left
        if dequeue_count > 1:
            total = min(self.backoff_base_s * 2 ** (dequeue_count - 2), self.backoff_max_s)
            if total > self.backoff_base_s:
                time.sleep(total - self.backoff_base_s)
        if leased:
            try:
                row = self._produce(subscription, row)
            except BaseException:
                row.status = "claimed"  # release the lease so the retry can invoke at once
                row.attempts += 1
                try:
                    self.history.update(row)
                except (Conflict, StorageError):
                    pass
                raise
        if row.status == "delivered":
            return "duplicate"
        return self._deliver(subscription, row)

    def _produce(self, subscription: Subscription, row: HistoryRow) -> HistoryRow:
        """Invoke (or build the expired result) and record it; the row the record ended up with."""
        fire = row.fire
        if fire.get("reason") == "expired":
            self.record_result(
                row,
                error={
                    "code": "deadline_expired",
                    "status": 410,
                    "detail": f"subscription {subscription.id} passed its deadline {subscription.deadline_ms}",
                },
                result="expired",
            )
        else:
            args = {**subscription.args, **(fire.get("args") or {})}
            try:
                envelope = self.invoke(
                    subscription.cryptlet, subscription.method, args, request_id_of(subscription.id, row.sequence)
                )
                self.record_result(row, envelope=envelope)
            except FabricError as exc:
                if exc.status >= 500:
                    raise
                self.record_result(row, error=exc.problem(), result="failed")
        if subscription.target.get("type") != "callback":
            row.status, row.delivered_ms = "delivered", now_ms()
        try:
            return self.history.update(row)
        except Conflict:  # a duplicate message recorded first: deliver what it recorded
            winner = self.history.get(row.subscription, row.sequence)
            if winner is None or not winner.has_result:
                raise StorageError("history row vanished while recording a result") from None
            return winner

    record_result = staticmethod(record_result)

    def delivery_body(self, row: HistoryRow) -> dict[str, Any]:
        return {
            "subscription": row.subscription,
            "sequence": row.sequence,
            "fire": row.fire,
            "status": row.result,
            "envelope": row.envelope,
            "error": row.error,
            "delivered_ms": now_ms(),
        }

    def _deliver(self, subscription: Subscription, row: HistoryRow) -> str:
        if subscription.target.get("type") != "callback":  # history target: the row is the delivery
            row.status, row.delivered_ms = "delivered", now_ms()
            try:
                self.history.update(row)
            except Conflict:
                pass
            return "recorded"
        body = self.delivery_body(row)
        try:
            signature = self.callbacks.post(subscription.target["url"], body)
        except DeliveryFailed as exc:
            row.attempts += 1
            try:
                self.history.update(row)
            except (Conflict, StorageError):
                pass
            raise DeliveryFailed(f"subscription {subscription.id} sequence {row.sequence}: {exc}") from None
        row.attempts += 1
        row.status, row.delivered_ms, row.delivery_signature = "delivered", body["delivered_ms"], signature
        try:
            self.history.update(row)
        except Conflict:
            pass  # a duplicate delivered and marked it concurrently
        return "delivered"

    # -- webhooks -----------------------------------------------------------------------------------
    def webhook(self, subscription_id: str, header: str | None, body: bytes) -> dict[str, Any]:
        """Authenticate a webhook call (HMAC before anything is parsed or stored), claim and enqueue a fire."""
        return receive_webhook(self, subscription_id, header, body)

    def deadletters(self) -> dict[str, Any]:
        """The fire queue's poison messages (peeked, at most 32) with their fire and history status."""
        return deadletters(self.poison, self.history)

    def list_history(self, subscription_id: str, start: int, limit: int) -> dict[str, Any]:
        self.subscriptions.get(subscription_id)  # 404 for an unknown subscription
        rows = self.history.list(subscription_id, start=start, limit=limit)
        body: dict[str, Any] = {"subscription": subscription_id, "deliveries": [r.public() for r in rows]}
        if len(rows) == limit:
            body["next"] = rows[-1].sequence + 1
        return body


def _parse_message(body: bytes | str) -> dict[str, Any]:
    message = parse_json_input(body, what="fire message")
    if (
        not isinstance(message, dict)
        or not isinstance(message.get("subscription"), str)
        or not isinstance(message.get("sequence"), int)
        or not isinstance(message.get("at_ms"), int)
    ):
        raise InvalidInput("fire message needs subscription, sequence and at_ms", field="$")
    message.setdefault("args", {})
    return message


def deadletters(poison: QueueClient, history: HistoryStore) -> dict[str, Any]:
    """The poison messages of a fire queue (peeked, at most :data:`MAX_DEADLETTERS`) with their history status."""
    with storage_errors("poison queue"):
        messages = list(poison.peek_messages(max_messages=MAX_DEADLETTERS))
    items = []
    for message in messages:
        try:
            fire: Any = _parse_message(base64.b64decode(message.content))
        except (ValueError, InvalidInput):
            fire = None
        item = {
            "message_id": message.id,
            "dequeue_count": message.dequeue_count,
            "inserted_ms": int(message.inserted_on.timestamp() * 1000) if message.inserted_on else None,
            "fire": fire,
        }
        if fire is not None:
            row = history.get(fire["subscription"], fire["sequence"])
            item["history"] = (
                None if row is None else {"status": row.status, "attempts": row.attempts, "result": row.result or None}
            )
        items.append(item)
    return {"queue": poison.queue_name, "messages": items}


def receive_webhook(events: Events, subscription_id: str, header: str | None, body: bytes) -> dict[str, Any]:
    """Authenticate a webhook call (HMAC before anything is parsed or stored), claim and enqueue a fire."""
    if not _SUBSCRIPTION_ID.match(subscription_id or ""):
        raise InvalidInput("subscription_id must be sub_ + 24 hex digits", field="subscription_id")
    if len(body) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge(f"webhook body is larger than {MAX_WEBHOOK_BYTES} bytes", field="$")
    subscription = events.subscription(subscription_id)
    try:
        webhooks.verify(
            events.sealing_secret,
            subscription.id,
            subscription.webhook_secret_sealed,
            header,
            body,
            now_s=time.time(),
        )
    except FabricError as exc:
        raise Unauthorized(exc.detail, field=webhooks.HEADER, reason=getattr(exc, "reason", "webhook")) from None
    if subscription.trigger_kind != "webhook":
        raise Conflict("the subscription is not a webhook subscription", field="subscription_id")
    if subscription.status != "active":
        raise Conflict(f"the subscription is {subscription.status}", field="subscription_id")
    event = parse_json_input(body, what="webhook body")
    arrival = now_ms()
    if arrival >= subscription.deadline_ms:
        raise Conflict("the subscription passed its deadline", field="subscription_id")
    for sequence in range(arrival, arrival + 1000):  # same millisecond: the next free sequence
        message = fire_message(
            subscription,
            sequence,
            key=f"webhook:{sequence}",
            at_ms=arrival,
            reason="webhook",
            args={"event": event},
        )
        try:
            events.history.claim(HistoryRow(subscription.id, sequence, message, claimed_ms=arrival))
        except Conflict:
            continue
        events.enqueue(message, arrival)
        return {"subscription": subscription.id, "sequence": sequence, "status": "accepted"}
    raise Conflict("too many webhook calls in one second", field="subscription_id")


# -- dead letters and history -------------------------------------------------------------------
