"""Subscriptions: a subscriber asks the fabric to run a cryptlet's method when a trigger fires and
to deliver each signed result to a target, until a deadline.

The model, its table store and the subscription API's logic (:class:`SubscriptionService`: signed
create and cancel, list, show); who may sign requests (subscribers, signatures, nonces) is
:mod:`shared.events.subscribers`, when they fire is :mod:`shared.events.tick`, and how results travel is
:mod:`shared.events.delivery`. Formats: docs/events.md.

A subscription row lives in ``<prefix>subscriptions`` (``PartitionKey="sub"``, ``RowKey=<id>``);
its ``document`` is the JSON of :class:`Subscription`. Scheduler state (``last_fired_ms``, an
observation trigger's ``trigger["state"]``) is written with the row's ETag, so two hosts ticking at once cannot both
advance it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import webhooks
from shared.events.delivery import CallbackDenied, CallbackPolicy
from shared.events.schedules import MissedFirePolicy, schedule_from_dict
from shared.events.subscribers import Forbidden, SubscriberRegistry
from shared.events.triggers import observation_from_dict
from shared.isolation.egress import split_url
from shared.storage import storage_errors

PARTITION = "sub"
STATUSES = ("active", "cancelled", "expired", "done")
TRIGGER_KINDS = ("cron", "interval", "threshold", "deviation_heartbeat", "webhook", "once")
TARGET_KINDS = ("callback", "history")
#: Longest a subscription may run (its deadline at most this far ahead), and the shortest.
MAX_LIFETIME_MS = 366 * 24 * 3600 * 1000
MIN_LIFETIME_MS = 1000

_ID = re.compile(r"^sub_[0-9a-f]{24}\Z")
Status = Literal["active", "cancelled", "expired", "done"]


def new_id() -> str:
    """A fresh subscription id: ``sub_`` + 24 hex digits."""
    return "sub_" + secrets.token_hex(12)


@dataclass(frozen=True)
class Subscription:
    """What to run, when, where to deliver, until when.

    ``trigger`` is one of: a schedule (``cron``/``interval``, :mod:`shared.events.schedules`); an
    observation trigger (``threshold``/``deviation_heartbeat``, :mod:`shared.events.triggers`) evaluated
    on the value at ``observe["field"]`` of the method's payload every ``observe["every_s"]``
    seconds; ``{"type": "webhook"}`` (fires on each authenticated webhook call, whose JSON body
    becomes ``args["event"]``); ``{"type": "once"}`` (a long job: fires once, now). ``target`` is
    ``{"type": "callback", "url": ...}`` (a signed POST) or ``{"type": "history"}`` (the
    message-queue history table only; every delivery is recorded there in any case).
    """

    id: str
    subscriber: str
    cryptlet: str
    method: str
    args: dict[str, Any]
    trigger: dict[str, Any]
    target: dict[str, Any]
    deadline_ms: int
    created_ms: int
    status: Status = "active"
    observe: dict[str, Any] | None = None
    missed: dict[str, Any] = field(default_factory=lambda: {"mode": "fire_once"})
    last_fired_ms: int | None = None  # schedules: the newest fire enqueued (due_fires' last_fired)
    webhook_secret_sealed: str | None = None  # base64 AES-GCM blob; never returned by the API

    @property
    def trigger_kind(self) -> str:
        return str(self.trigger.get("type"))

    def to_dict(self) -> dict[str, Any]:
        """The stored document (includes the sealed webhook secret)."""
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What the API shows: everything but the sealed webhook secret."""
        document = self.to_dict()
        document.pop("webhook_secret_sealed")
        return document

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subscription:
        return cls(**data)


def validate_spec(spec: Any, *, now_ms: int) -> dict[str, Any]:
    """Check a create request's ``{cryptlet, method, args, trigger, target, deadline_ms, observe?,
    missed?}``; return it normalised. :class:`InvalidInput` names the JSON path."""
    if not isinstance(spec, dict):
        raise InvalidInput("subscription must be a JSON object", field="$")
    allowed = {"cryptlet", "method", "args", "trigger", "target", "deadline_ms", "observe", "missed"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise InvalidInput(f"unknown member {extra[0]!r}", field=f"$.{extra[0]}")
    for name in ("cryptlet", "method"):
        if not isinstance(spec.get(name), str) or not spec[name]:
            raise InvalidInput(f"{name} must be a non-empty string", field=f"$.{name}")
    args = spec.get("args", {})
    if not isinstance(args, dict):
        raise InvalidInput("args must be an object", field="$.args")
    trigger = spec.get("trigger")
    if not isinstance(trigger, dict) or trigger.get("type") not in TRIGGER_KINDS:
        raise InvalidInput(f"trigger.type must be one of {', '.join(TRIGGER_KINDS)}", field="$.trigger.type")
    kind = trigger["type"]
    observe = spec.get("observe")
    if kind in ("cron", "interval"):
        trigger = schedule_from_dict(trigger, "$.trigger").to_dict()
    elif kind in ("threshold", "deviation_heartbeat"):
        trigger = observation_from_dict(trigger, "$.trigger").to_dict()
        if (
            not isinstance(observe, dict)
            or not isinstance(observe.get("field"), str)
            or not isinstance(observe.get("every_s"), (int, float))
            or isinstance(observe.get("every_s"), bool)
            or not 1 <= observe["every_s"] <= 86400
        ):
            raise InvalidInput(
                "an observation trigger needs observe: {field: payload member, every_s: 1..86400}", field="$.observe"
            )
    elif set(trigger) != {"type"}:
        raise InvalidInput(f"a {kind} trigger takes no other members", field="$.trigger")
    if kind not in ("threshold", "deviation_heartbeat") and observe is not None:
        raise InvalidInput("observe is only for threshold and deviation_heartbeat triggers", field="$.observe")
    target = spec.get("target")
    if not isinstance(target, dict) or target.get("type") not in TARGET_KINDS:
        raise InvalidInput(f"target.type must be one of {', '.join(TARGET_KINDS)}", field="$.target.type")
    if target["type"] == "callback":
        url = target.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or set(target) != {"type", "url"}:
            raise InvalidInput("a callback target is {type: callback, url: http(s)://...}", field="$.target.url")
        try:
            split_url(url)
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, field="$.target.url") from None
    elif set(target) != {"type"}:
        raise InvalidInput("a history target takes no other members", field="$.target")
    deadline = spec.get("deadline_ms")
    if (
        not isinstance(deadline, int)
        or isinstance(deadline, bool)
        or not now_ms + MIN_LIFETIME_MS <= deadline <= now_ms + MAX_LIFETIME_MS
    ):
        raise InvalidInput(
            "deadline_ms must be unix milliseconds between 1 s and 366 days ahead", field="$.deadline_ms"
        )
    missed = MissedFirePolicy.from_dict(spec.get("missed", {"mode": "fire_once"}), "$.missed").to_dict()
    return {
        "cryptlet": spec["cryptlet"],
        "method": spec["method"],
        "args": args,
        "trigger": trigger,
        "target": dict(target),
        "deadline_ms": deadline,
        "observe": observe,
        "missed": missed,
    }


class SubscriptionStore:
    """Subscription rows with optimistic concurrency (ETags)."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def create(self, subscription: Subscription) -> None:
        with storage_errors("subscriptions"):
            try:
                self.table.create_entity(self._row(subscription))
            except ResourceExistsError:
                raise Conflict(f"subscription {subscription.id} exists", field="id") from None

    def get(self, subscription_id: str) -> tuple[Subscription, str]:
        """(subscription, etag); :class:`NotFound` if there is none."""
        with storage_errors("subscriptions"):
            try:
                row = self.table.get_entity(PARTITION, subscription_id)
            except ResourceNotFoundError:
                raise NotFound(f"no subscription {subscription_id!r}", field="id") from None
        return Subscription.from_dict(json.loads(row["document"])), cast(str, row.metadata["etag"])

    def list(self, *, subscriber: str | None = None, status: str | None = None) -> list[tuple[Subscription, str]]:
        """Subscriptions (with etags), optionally of one subscriber and/or in one status."""
        with storage_errors("subscriptions"):
            rows = list(self.table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION}))
        found = [(Subscription.from_dict(json.loads(r["document"])), cast(str, r.metadata["etag"])) for r in rows]
        return [
            (s, e)
            for s, e in found
            if (subscriber is None or s.subscriber == subscriber) and (status is None or s.status == status)
        ]

    def update(self, subscription: Subscription, etag: str, **changes: Any) -> tuple[Subscription, str]:
        """Write ``changes`` if the row still has ``etag``; :class:`Conflict` if another writer won."""
        changed = replace(subscription, **changes)
        with storage_errors("subscriptions"):
            try:
                metadata = self.table.update_entity(
                    self._row(changed),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                raise Conflict(f"subscription {subscription.id} changed concurrently", field="id") from None
        return changed, metadata["etag"]

    @staticmethod
    def _row(subscription: Subscription) -> dict[str, Any]:
        return {
            "PartitionKey": PARTITION,
            "RowKey": subscription.id,
            "status": subscription.status,
            "subscriber": subscription.subscriber,
            "document": json.dumps(subscription.to_dict(), separators=(",", ":")),
        }


# -- the subscription API's logic (functions/subscriptions.py is a thin wrapper) ---------------------
class SubscriptionService:
    """Create, list, show and cancel subscriptions; signed requests are checked by ``subscribers``.

    ``cryptlets(name)`` returns the registration of a cryptlet (an object with ``methods``) or raises
    :class:`NotFound`; ``sealing_secret`` seals webhook secrets; ``callbacks`` says where callback
    targets may point (checked again at each delivery).
    """

    def __init__(
        self,
        store: SubscriptionStore,
        subscribers: SubscriberRegistry,
        cryptlets: Callable[[str], Any],
        sealing_secret: bytes,
        callbacks: CallbackPolicy | None = None,
    ) -> None:
        self.store = store
        self.subscribers = subscribers
        self.cryptlets = cryptlets
        self.sealing_secret = sealing_secret
        self.callbacks = callbacks if callbacks is not None else CallbackPolicy()

    def register_subscriber(self, name: object, public_key: object, *, now_ms: int) -> dict[str, Any]:
        """A subscriber's ``name`` and secp256k1 ``public_key`` (admin) -> the registered subscriber
        (name, address, public key); the registry checks both."""
        return self.subscribers.register(name, public_key, now_ms=now_ms).to_dict()

    def list_subscribers(self) -> dict[str, Any]:
        return {"subscribers": [s.to_dict() for s in self.subscribers.list()]}

    def subscribe(self, body: bytes, signature: str | None, *, now_ms: int) -> dict[str, Any]:
        """A signed ``subscribe`` request -> ``{"subscription", "webhook_secret"?, "webhook_url"?}``.

        The ``webhook_secret`` is in this answer only; the table keeps it sealed.
        """
        request = self.subscribers.verify_request(body, signature, now_ms, expected_action="subscribe")
        spec = validate_spec(request.body, now_ms=now_ms)
        if spec["target"]["type"] == "callback":
            try:
                self.callbacks.check(spec["target"]["url"])
            except (CallbackDenied, InvalidInput) as exc:
                raise InvalidInput(exc.detail, field="$.target.url") from None
        self._check_interface(spec)
        subscription_id = new_id()
        secret = sealed = None
        if spec["trigger"]["type"] == "webhook":
            secret, sealed = webhooks.issue_secret(self.sealing_secret, subscription_id)
        subscription = Subscription(
            id=subscription_id,
            subscriber=request.subscriber,
            status="active",
            created_ms=now_ms,
            webhook_secret_sealed=sealed,
            **spec,
        )
        self.store.create(subscription)
        answer: dict[str, Any] = {"subscription": subscription.public()}
        if secret is not None:
            answer["webhook_secret"] = secret
            answer["webhook_url"] = f"/api/webhooks/{subscription_id}"
        return answer

    def _check_interface(self, spec: dict[str, Any]) -> None:
        try:
            registration = self.cryptlets(spec["cryptlet"])
        except NotFound:
            raise NotFound(f"no registered cryptlet {spec['cryptlet']!r}", field="$.cryptlet") from None
        methods = registration.methods or {}
        if spec["method"] not in methods:
            raise InvalidInput(
                f"{spec['cryptlet']} has no method {spec['method']!r}; its methods: {', '.join(sorted(methods))}",
                field="$.method",
            )
        inputs = {i.get("name") for i in (methods[spec["method"]] or {}).get("inputs", []) if isinstance(i, dict)}
        for name in spec["args"]:
            if name not in inputs:
                raise InvalidInput(
                    f"{spec['cryptlet']}.{spec['method']} takes no argument {name!r}", field=f"$.args.{name}"
                )

    def list(self, *, subscriber: str | None = None, status: str | None = None) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
        found = self.store.list(subscriber=subscriber or None, status=status)
        return {"subscriptions": [s.public() for s, _ in sorted(found, key=lambda f: (f[0].created_ms, f[0].id))]}

    def get(self, subscription_id: str) -> dict[str, Any]:
        _check_id(subscription_id)
        return self.store.get(subscription_id)[0].public()

    def cancel(self, subscription_id: str, body: bytes, signature: str | None, *, now_ms: int) -> dict[str, Any]:
        """A signed ``cancel`` request (``body: {"subscription": id}``, the id of the route) by the
        subscription's own subscriber -> the cancelled subscription. Cancelling a cancelled one
        answers it again; an expired or done one is a 409."""
        _check_id(subscription_id)
        request = self.subscribers.verify_request(body, signature, now_ms, expected_action="cancel")
        if not isinstance(request.body, dict) or set(request.body) != {"subscription"}:
            raise InvalidInput('a cancel request\'s body is {"subscription": <id>}', field="$.body")
        if request.body["subscription"] != subscription_id:
            raise InvalidInput("the signed subscription id is not the one in the URL", field="$.body.subscription")
        for _ in range(8):  # the scheduler may write the row between our read and write: re-read and retry
            subscription, etag = self.store.get(subscription_id)
            if subscription.subscriber != request.subscriber:
                raise Forbidden(f"subscription {subscription_id} belongs to another subscriber", field="$.subscriber")
            if subscription.status == "cancelled":
                return {"subscription": subscription.public()}
            if subscription.status != "active":
                raise Conflict(f"subscription {subscription_id} is {subscription.status}", field="status")
            try:
                cancelled, _ = self.store.update(subscription, etag, status="cancelled")
            except Conflict:
                continue
            return {"subscription": cancelled.public()}
        raise Conflict(f"subscription {subscription_id} keeps changing; try again", field="id")


def _check_id(subscription_id: str) -> None:
    if not _ID.match(subscription_id or ""):
        raise NotFound(f"no subscription {subscription_id!r}", field="id")
