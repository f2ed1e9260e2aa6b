"""Observation-driven triggers: threshold crossings and deviation + heartbeat, as pure state machines.

A trigger is fed observations with :meth:`ObservationTrigger.evaluate` (``value``, ``at``) and
returns a :class:`~shared.events.schedules.Fire` or None; :meth:`ObservationTrigger.due` is the time
check between observations (only heartbeats use it). The whole trigger, configuration and
state, round-trips through :meth:`to_dict` / :func:`trigger_from_dict`, so a host can persist it
after every call and resume on another machine. Observations older than the newest one already
seen are ignored (None, state unchanged), so a redelivered or late observation never fires twice.
See ``docs/schedules.md``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.errors import InvalidInput
from shared.events.schedules import (
    Fire,
    IdentifiedTrigger,
    ScheduleTrigger,
    check_object,
    format_instant,
    json_path,
    number,
    parse_instant,
    relabel,
    require_aware,
    schedule_from_dict,
)

__all__ = ["ObservationTrigger", "ThresholdTrigger", "DeviationHeartbeatTrigger", "trigger_from_dict", "Fire"]

REASONS = ("threshold_crossed", "deviation", "heartbeat", "first")


def _value(value: Any, field: str = "value") -> float:
    return number(value, field)


def _optional_instant(state: dict[str, Any], name: str, path: str) -> datetime | None:
    raw = state.get(name)
    return None if raw is None else parse_instant(raw, json_path(path, name))


def _optional_value(state: dict[str, Any], name: str, path: str) -> float | None:
    raw = state.get(name)
    return None if raw is None else number(raw, json_path(path, name))


class ObservationTrigger(IdentifiedTrigger):
    """A trigger evaluated on every new observation; configuration plus mutable, serialisable state."""

    def __init__(self, trigger_id: str | None) -> None:
        super().__init__(trigger_id)
        self.last_at: datetime | None = None  # the newest observation seen

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The mutable state as JSON."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any], path: str) -> None: ...

    @abstractmethod
    def _observe(self, value: float, at: datetime) -> Fire | None: ...

    def to_dict(self) -> dict[str, Any]:
        """Configuration, ``id`` if explicit, and ``state``."""
        body = self.config()
        if self._explicit_id is not None:
            body["id"] = self._explicit_id
        body["state"] = self.state()
        return body

    @classmethod
    def from_dict(cls, data: Any, path: str = "$") -> ObservationTrigger:
        """A trigger of this class from its JSON (with or without ``state``)."""
        trigger = observation_from_dict(data, path)
        if not isinstance(trigger, cls):
            raise InvalidInput(
                f"type must be {getattr(cls, 'type', 'an observation trigger')!r}", field=json_path(path, "type")
            )
        return trigger

    def evaluate(self, value: float, at: datetime) -> Fire | None:
        """Feed one observation; the fire it causes, if any. Stale observations are ignored."""
        value = _value(value)
        at = require_aware(at, "at")
        if self.last_at is not None and at < self.last_at:
            return None
        self.last_at = at
        return self._observe(value, at)

    def due(self, now: datetime) -> Fire | None:
        """A fire owed at ``now`` without a new observation (heartbeats); None by default."""
        require_aware(now, "now")
        return None

    def next_due(self) -> datetime | None:
        """When :meth:`due` may next return a fire; None if only observations can cause one."""
        return None

    def _fire(self, at: datetime, reason: str, value: float | None) -> Fire:
        return Fire(self.id, at, reason, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


class ThresholdTrigger(ObservationTrigger):
    """Fires once per crossing of ``level``; re-arms only after the value goes back past it by ``hysteresis``.

    ``above``: fires when ``value > level`` while armed; re-arms when ``value <= level - hysteresis``.
    ``below``: fires when ``value < level`` while armed; re-arms when ``value >= level + hysteresis``.
    A new trigger starts armed, so a first observation already past the level fires.
    """

    type = "threshold"
    DIRECTIONS = ("above", "below")

    def __init__(
        self,
        level: float,
        direction: Literal["above", "below"] = "above",
        hysteresis: float = 0.0,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id)
        self.level = number(level, "level")
        if direction not in self.DIRECTIONS:
            raise InvalidInput("direction must be 'above' or 'below'", field="direction")
        self.direction = direction
        self.hysteresis = number(hysteresis, "hysteresis", minimum=0)
        self.armed = True
        self.last_value: float | None = None

    def config(self) -> dict[str, Any]:
        return {"type": self.type, "level": self.level, "direction": self.direction, "hysteresis": self.hysteresis}

    def state(self) -> dict[str, Any]:
        return {
            "armed": self.armed,
            "last_value": self.last_value,
            "last_at": format_instant(self.last_at) if self.last_at else None,
        }

    def _load_state(self, state: dict[str, Any], path: str) -> None:
        check_object(state, path, {"armed", "last_value", "last_at"}, {"armed"})
        if not isinstance(state["armed"], bool):
            raise InvalidInput("armed must be true or false", field=json_path(path, "armed"))
        self.armed = state["armed"]
        self.last_value = _optional_value(state, "last_value", path)
        self.last_at = _optional_instant(state, "last_at", path)

    def _observe(self, value: float, at: datetime) -> Fire | None:
        self.last_value = value
        past = value > self.level if self.direction == "above" else value < self.level
        if self.armed and past:
            self.armed = False
            return self._fire(at, "threshold_crossed", value)
        if not self.armed:
            back = (
                value <= self.level - self.hysteresis
                if self.direction == "above"
                else value >= self.level + self.hysteresis
            )
            if back:
                self.armed = True
        return None


class DeviationHeartbeatTrigger(ObservationTrigger):
    """A price-feed style trigger (as Chainlink Data Feeds): report on deviation or when the heartbeat is due.

    Fires ``first`` on the first observation; ``deviation`` when
    ``|value - last_reported| / |last_reported| >= deviation_fraction`` (from a reported 0, any
    change); ``heartbeat`` when ``heartbeat_s`` passed since the last report, checked on each
    observation and by :meth:`due`. Deviation wins when both hold.
    """

    type = "deviation_heartbeat"

    def __init__(self, deviation_fraction: float, heartbeat_s: float, *, id: str | None = None) -> None:
        super().__init__(id)
        self.deviation_fraction = number(deviation_fraction, "deviation_fraction", minimum=0, exclusive=True)
        self.heartbeat_s = number(heartbeat_s, "heartbeat_s", minimum=1)
        millis = round(self.heartbeat_s * 1000)
        if abs(millis - self.heartbeat_s * 1000) > 1e-6:
            raise InvalidInput("heartbeat_s must be a whole number of milliseconds", field="heartbeat_s")
        self._heartbeat = timedelta(milliseconds=millis)
        self.last_reported: float | None = None
        self.last_reported_at: datetime | None = None
        self.last_value: float | None = None

    def config(self) -> dict[str, Any]:
        return {"type": self.type, "deviation_fraction": self.deviation_fraction, "heartbeat_s": self.heartbeat_s}

    def state(self) -> dict[str, Any]:
        return {
            "last_reported": self.last_reported,
            "last_reported_at": format_instant(self.last_reported_at) if self.last_reported_at else None,
            "last_value": self.last_value,
            "last_at": format_instant(self.last_at) if self.last_at else None,
        }

    def _load_state(self, state: dict[str, Any], path: str) -> None:
        check_object(state, path, {"last_reported", "last_reported_at", "last_value", "last_at"}, set())
        self.last_reported = _optional_value(state, "last_reported", path)
        self.last_reported_at = _optional_instant(state, "last_reported_at", path)
        self.last_value = _optional_value(state, "last_value", path)
        self.last_at = _optional_instant(state, "last_at", path)
        if (self.last_reported is None) != (self.last_reported_at is None):
            raise InvalidInput("last_reported and last_reported_at go together", field=json_path(path, "last_reported"))

    def deviation(self, value: float) -> float:
        """``|value - last_reported| / |last_reported|`` (inf from a reported 0 to another value)."""
        if self.last_reported is None:
            return math.inf
        change = abs(value - self.last_reported)
        if self.last_reported == 0:
            return 0.0 if change == 0 else math.inf
        return change / abs(self.last_reported)

    def _report(self, at: datetime, reason: str, value: float) -> Fire:
        self.last_reported, self.last_reported_at = value, at
        return self._fire(at, reason, value)

    def _observe(self, value: float, at: datetime) -> Fire | None:
        self.last_value = value
        if self.last_reported_at is None:
            return self._report(at, "first", value)
        if at < self.last_reported_at:  # older than a heartbeat already reported by due()
            return None
        if self.deviation(value) >= self.deviation_fraction:
            return self._report(at, "deviation", value)
        if at - self.last_reported_at >= self._heartbeat:
            return self._report(at, "heartbeat", value)
        return None

    def next_due(self) -> datetime | None:
        return None if self.last_reported_at is None else self.last_reported_at + self._heartbeat

    def due(self, now: datetime) -> Fire | None:
        """The heartbeat owed at ``now``, carrying the newest observed value.

        Its instant is on the heartbeat grid (``last_reported_at + k * heartbeat_s``, the latest
        not after ``now``), not ``now`` itself, so hosts checking at slightly different moments
        compute the same fire and key. Missed heartbeats collapse into this one.
        """
        now = require_aware(now, "now")
        if self.last_reported_at is None or self.last_value is None:
            return None
        elapsed = now - self.last_reported_at
        if elapsed < self._heartbeat:
            return None
        at = self.last_reported_at + (elapsed // self._heartbeat) * self._heartbeat
        return self._report(at, "heartbeat", self.last_value)


_OBSERVATION_TYPES: dict[str, type[ThresholdTrigger | DeviationHeartbeatTrigger]] = {
    ThresholdTrigger.type: ThresholdTrigger,
    DeviationHeartbeatTrigger.type: DeviationHeartbeatTrigger,
}
_CONFIG_MEMBERS = {
    ThresholdTrigger.type: ({"level"}, {"direction", "hysteresis"}),
    DeviationHeartbeatTrigger.type: ({"deviation_fraction", "heartbeat_s"}, set()),
}


def trigger_from_dict(data: Any, path: str = "$") -> ObservationTrigger | ScheduleTrigger:
    """Any trigger from its JSON: ``cron``, ``interval``, ``threshold`` or ``deviation_heartbeat``.

    Observation triggers may carry ``state`` (as written by ``to_dict``); without it they start fresh.
    """
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _OBSERVATION_TYPES:
        if kind in ("cron", "interval"):
            return schedule_from_dict(data, path)
        check_object(data, path, set(data) if isinstance(data, dict) else set(), {"type"})
        raise InvalidInput(
            "type must be one of cron, interval, threshold, deviation_heartbeat", field=json_path(path, "type")
        )
    required, optional = _CONFIG_MEMBERS[kind]
    check_object(data, path, {"type", "id", "state"} | required | optional, {"type"} | required)
    config = {name: data[name] for name in required | optional if name in data}
    trigger = relabel(path, lambda: _OBSERVATION_TYPES[kind](**config, id=data.get("id")))
    if data.get("state") is not None:
        trigger._load_state(data["state"], json_path(path, "state"))
    return trigger


def observation_from_dict(data: Any, path: str = "$") -> ObservationTrigger:
    """An observation trigger from its JSON; :class:`InvalidInput` for any other type."""
    trigger = trigger_from_dict(data, path)
    if not isinstance(trigger, ObservationTrigger):
        raise InvalidInput("type must be threshold or deviation_heartbeat", field=json_path(path, "type"))
    return trigger
