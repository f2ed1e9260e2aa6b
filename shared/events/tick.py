"""The scheduler tick: turns active subscriptions into claimed, enqueued fires.

Run every second (timer ``%FABRIC_SCHEDULER_SCHEDULE%``) on every host. For each active
subscription:

* **schedules** (``cron``/``interval``): ``due_fires`` over ``(last_fired_ms, now + LOOKAHEAD_MS]``
  (the subscription's ``created_ms`` when it never fired), fires at or after the deadline dropped;
  each fire is *claimed* (history row created with ``create_entity``: only one host wins) and
  enqueued with a visibility delay of ``floor(seconds until the fire)``, so it surfaces at most
  ~1 s before its instant and the worker waits for the instant; then ``last_fired_ms`` advances with
  the subscription's ETag (a Conflict means another host did it).
* **observation triggers** (``threshold``/``deviation_heartbeat``): every ``observe.every_s`` a
  lease (``last_fired_ms`` := now, with the ETag) is taken, the cryptlet is invoked, the trigger
  evaluated on ``payload[observe.field]`` and its state stored with the ETag; a fire claims a
  history row that already holds *that* envelope (the worker delivers it without invoking again).
* **once** (long jobs): one ``job`` fire at ``created_ms``, then the subscription is ``done``.
* **deadline passed**: one ``expired`` fire at ``deadline_ms`` (delivered as a signed failure
  result), and the subscription becomes ``expired``.

A claimed fire whose message may have been lost (the claiming host died between claim and enqueue,
so ``last_fired_ms`` did not advance) is re-enqueued by a later tick once its row is older than
:data:`STALE_CLAIM_MS`; the worker is idempotent, so a duplicate message has no second effect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.clock import now_ms
from shared.errors import Conflict, FabricError
from shared.events.history import HistoryRow, HistoryStore
from shared.events.schedules import MissedFirePolicy, due_fires, epoch_ms, fire_key, schedule_from_dict
from shared.events.subscriptions import Subscription, SubscriptionStore
from shared.events.triggers import observation_from_dict

log = logging.getLogger("fabric.scheduler")
#: How far ahead a tick claims and enqueues schedule fires (the timer runs every second).
LOOKAHEAD_MS = 2000
#: A claimed row older than this whose subscription's watermark did not pass it is re-enqueued.
STALE_CLAIM_MS = 5000
#: Observation lateness tolerated by the "is an observation due" check (tick jitter).
OBSERVE_SLACK_MS = 200
#: Undelivered fires claimed longer ago than this are re-enqueued by the sweep (every SWEEP_EVERY_MS).
STALE_FIRE_MS = 20_000
SWEEP_EVERY_MS = 10_000
SWEEP_MAX = 2000
SCHEDULES = ("cron", "interval")
OBSERVATIONS = ("threshold", "deviation_heartbeat")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(ms: int) -> datetime:
    """Unix milliseconds as an aware UTC datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def fire_message(
    subscription: Subscription,
    sequence: int,
    *,
    key: str,
    at_ms: int,
    reason: str,
    args: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The fire queue message (docs/events.md, "Fires")."""
    return {
        "subscription": subscription.id,
        "sequence": sequence,
        "key": key,
        "at_ms": at_ms,
        "reason": reason,
        "args": args or {},
        **extra,
    }


def observed_value(payload: Any, field: str) -> Any:
    """``payload[field]``; for a contract cryptlet (payload ``{result, state}``), ``payload.result[field]``."""
    if not isinstance(payload, dict):
        return None
    if field not in payload and isinstance(payload.get("result"), dict) and "state" in payload:
        return payload["result"].get(field)
    return payload.get(field)


class EventsPort(Protocol):
    """What the tick needs of the event engine (:class:`shared.events.engine.Events`)."""

    subscriptions: SubscriptionStore
    history: HistoryStore
    max_attempts: int
    invoke: Callable[[str, str, dict[str, Any], str], dict[str, Any]]

    def remember(self, subscription: Subscription) -> None: ...

    def enqueue(self, message: dict[str, Any], now: int | None = None) -> None: ...

    def record_result(
        self,
        row: HistoryRow,
        *,
        envelope: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        result: str = "ok",
    ) -> None: ...


class Scheduler:
    """One host's tick. Thread-safe; every decision is guarded by storage (claims, ETags)."""

    def __init__(self, events: EventsPort, workers: int = 8) -> None:
        self.events = events
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fabric-scheduler")
        self._observing: set[str] = set()
        self._last_sweep = now_ms()
        self._lock = threading.Lock()

    def tick(self, now: int | None = None) -> dict[str, int]:
        """Handle every active subscription once; returns counts (fires enqueued, observations started)."""
        now = now_ms() if now is None else now
        counts = {"subscriptions": 0, "fires": 0, "observations": 0, "expired": 0}
        futures = []
        for subscription, etag in self.events.subscriptions.list(status="active"):
            counts["subscriptions"] += 1
            self.events.remember(subscription)
            if now >= subscription.deadline_ms:
                futures.append(self.pool.submit(self._guard, self._expire, subscription, etag, now))
                counts["expired"] += 1
            elif subscription.trigger_kind in SCHEDULES:
                futures.append(self.pool.submit(self._guard, self._schedule, subscription, etag, now))
            elif subscription.trigger_kind in OBSERVATIONS:
                if self._observation_due(subscription, now) and self._start_observing(subscription.id):
                    self.pool.submit(self._guard, self._observe, subscription, etag, now)
                    counts["observations"] += 1
            elif subscription.trigger_kind == "once":
                futures.append(self.pool.submit(self._guard, self._once, subscription, etag, now))
        if now - self._last_sweep >= SWEEP_EVERY_MS:
            self._last_sweep = now
            self.pool.submit(self._sweep_guarded, now)
        wait(futures)
        counts["fires"] = sum(f.result() or 0 for f in futures)
        return counts

    # -- recovery -----------------------------------------------------------------------------------
    def _sweep_guarded(self, now: int) -> None:
        try:
            swept = self.sweep(now)
            if swept:
                log.info("re-enqueued %d undelivered fire(s) older than %d s", swept, STALE_FIRE_MS // 1000)
        except Exception as exc:  # storage down: the next sweep tries again
            log.warning("history sweep failed: %s", type(exc).__name__)

    def sweep(self, now: int) -> int:
        """Re-enqueue fires claimed more than :data:`STALE_FIRE_MS` ago and still not delivered (their
        message was lost with a crashed storage, or is held invisible by a host that died while
        processing it); fires that exhausted their attempts (dead letters) are left alone. The worker
        is idempotent, so a fire whose original message is still on its way is not delivered twice."""
        rows = self.events.history.table.query_entities(
            "status ne @d and claimed_ms lt @c",
            parameters={"d": "delivered", "c": now - STALE_FIRE_MS},
            select=["PartitionKey", "RowKey", "fire", "attempts"],
            results_per_page=1000,
        )
        swept = 0
        for entity in rows:
            if int(entity.get("attempts") or 0) >= self.events.max_attempts:
                continue
            try:
                message = json.loads(entity["fire"])
            except (KeyError, ValueError):
                continue
            self.events.enqueue(message, now)
            swept += 1
            if swept >= SWEEP_MAX:
                break
        return swept

    def _guard(
        self, step: Callable[[Subscription, str, int], int], subscription: Subscription, etag: str, now: int
    ) -> int:
        try:
            return step(subscription, etag, now) or 0
        except FabricError as exc:
            log.warning("subscription %s: %s", subscription.id, exc.diagnostics())
        except Exception:
            log.exception("subscription %s: tick step failed", subscription.id)
        return 0

    # -- claims -------------------------------------------------------------------------------------
    def claim_and_enqueue(
        self, subscription: Subscription, message: dict[str, Any], now: int, *, row: HistoryRow | None = None
    ) -> bool:
        """Claim the fire (history row) and enqueue it; False if it was claimed before (by anyone)."""
        row = row or HistoryRow(subscription.id, message["sequence"], message, claimed_ms=now)
        try:
            self.events.history.claim(row)
        except Conflict:
            existing = self.events.history.get(subscription.id, message["sequence"])
            if existing is not None and existing.status == "claimed" and now - existing.claimed_ms > STALE_CLAIM_MS:
                log.info("re-enqueueing stale claim %s/%s", subscription.id, message["sequence"])
                self.events.enqueue(message, now)
            return False
        self.events.enqueue(message, now)
        return True

    # -- steps --------------------------------------------------------------------------------------
    def _schedule(self, subscription: Subscription, etag: str, now: int) -> int:
        trigger = schedule_from_dict(subscription.trigger)
        watermark = subscription.last_fired_ms if subscription.last_fired_ms is not None else subscription.created_ms
        policy = MissedFirePolicy.from_dict(subscription.missed)
        fires = [
            f
            for f in due_fires(trigger, utc(watermark), utc(now + LOOKAHEAD_MS), policy)
            if epoch_ms(f.at) < subscription.deadline_ms
        ]
        if not fires:
            return 0
        enqueued = 0
        for fire in fires:
            at = epoch_ms(fire.at)
            extra: dict[str, Any] = {"missed": True} if fire.missed else {}
            message = fire_message(subscription, at, key=fire.key, at_ms=at, reason="schedule", **extra)
            enqueued += self.claim_and_enqueue(subscription, message, now)
        try:
            self.events.subscriptions.update(subscription, etag, last_fired_ms=max(epoch_ms(f.at) for f in fires))
        except Conflict:
            pass  # another host advanced it (or the subscription changed): its next tick sees the new row
        return enqueued

    def _once(self, subscription: Subscription, etag: str, now: int) -> int:
        if subscription.last_fired_ms is not None:
            return 0
        at = subscription.created_ms
        message = fire_message(
            subscription, at, key=fire_key("job-" + subscription.id, utc(at)), at_ms=at, reason="job"
        )
        enqueued = self.claim_and_enqueue(subscription, message, now)
        try:
            self.events.subscriptions.update(subscription, etag, last_fired_ms=at, status="done")
        except Conflict:
            pass
        return int(enqueued)

    def _expire(self, subscription: Subscription, etag: str, now: int) -> int:
        at = subscription.deadline_ms
        message = fire_message(
            subscription, at, key=fire_key("expired-" + subscription.id, utc(at)), at_ms=at, reason="expired"
        )
        enqueued = self.claim_and_enqueue(subscription, message, now)
        try:
            self.events.subscriptions.update(subscription, etag, status="expired")
        except Conflict:
            pass
        return int(enqueued)

    # -- observations -------------------------------------------------------------------------------
    @staticmethod
    def _observation_due(subscription: Subscription, now: int) -> bool:
        assert subscription.observe is not None  # validate_spec requires it of observation triggers
        every_ms = int(float(subscription.observe["every_s"]) * 1000)
        last = subscription.last_fired_ms
        return last is None or now - last >= every_ms - OBSERVE_SLACK_MS

    def _start_observing(self, subscription_id: str) -> bool:
        with self._lock:
            if subscription_id in self._observing:
                return False
            self._observing.add(subscription_id)
            return True

    def _observe(self, subscription: Subscription, etag: str, now: int) -> int:
        try:
            return self._observe_once(subscription, etag, now)
        finally:
            with self._lock:
                self._observing.discard(subscription.id)

    def _observe_once(self, subscription: Subscription, etag: str, now: int) -> int:
        try:  # the lease: only the host that moves the watermark observes
            subscription, etag = self.events.subscriptions.update(subscription, etag, last_fired_ms=now)
        except Conflict:
            return 0
        request_id = "0x" + hashlib.sha256(f"{subscription.id}:observe:{now}".encode()).hexdigest()
        envelope = self.events.invoke(subscription.cryptlet, subscription.method, subscription.args, request_id)
        assert subscription.observe is not None  # validate_spec requires it of observation triggers
        field = subscription.observe["field"]
        value = observed_value(envelope.get("payload"), field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            log.warning("subscription %s: observation has no number at payload[%r]", subscription.id, field)
            return 0
        trigger = observation_from_dict(subscription.trigger)
        at = int(envelope.get("timestamp") or now)
        fire = trigger.evaluate(float(value), utc(at))
        try:
            subscription, etag = self.events.subscriptions.update(subscription, etag, trigger=trigger.to_dict())
        except Conflict:
            return 0  # the subscription changed meanwhile (cancelled?): this observation does not count
        if fire is None:
            return 0
        sequence = epoch_ms(fire.at)
        message = fire_message(
            subscription, sequence, key=fire.key, at_ms=sequence, reason=fire.reason, value=fire.value
        )
        row = HistoryRow(subscription.id, sequence, message, claimed_ms=now)
        self.events.record_result(row, envelope=envelope)
        return int(self.claim_and_enqueue(subscription, message, now, row=row))
