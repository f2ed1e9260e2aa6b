"""Time triggers: cron in an IANA time zone (optionally gated by an exchange calendar) and fixed intervals.

Everything here is pure and clock-free: a trigger answers "which instants fire after ``after``?"
for an aware ``datetime`` it is given, and never sleeps or reads the clock. Instants returned
are aware UTC datetimes. See ``docs/schedules.md`` for the JSON formats and the rules below.

* **Cron** expressions are parsed and iterated by ``croniter`` over *wall-clock* time in the
  trigger's zone; each matching wall-clock time is then placed on the UTC time line with
  ``zoneinfo`` (zone data from the pinned ``tzdata`` package, not the OS copy, so every host
  computes the same instants):

  - a wall-clock time that happens twice (fall back) fires **once**, at its first occurrence;
  - a wall-clock time that does not exist (spring forward) fires **once**, at the first instant
    after the gap (``02:30`` on a New York spring-forward day fires at ``03:00`` EDT), as Vixie
    cron does for jobs at a specific time; several such times collapse into that one fire.

* **Exchange calendars** (``exchange_calendars``, loaded on first use) keep only fires whose date
  in the exchange's own zone is a trading session; ``at="open"``/``at="close"`` fire at the
  session's open/close instead (a 13:00 close on New York early-close days).
* **Idempotency**: a fire's key is ``<trigger id>:<UTC milliseconds>``; the id defaults to a hash
  of the trigger's canonical JSON, so two hosts computing the same fire get the same key.
* **Missed fires** are handled by :func:`due_fires` under an explicit :class:`MissedFirePolicy`.
"""

from __future__ import annotations

import bisect
import importlib.resources
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache, lru_cache
from typing import Any, ClassVar, Literal, TypeVar, cast
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from shared.encoding import canonical_json, sha256
from shared.errors import InvalidInput

__all__ = [
    "CronTrigger",
    "IntervalTrigger",
    "ScheduleTrigger",
    "Fire",
    "MissedFirePolicy",
    "due_fires",
    "schedule_from_dict",
    "fire_key",
    "exchange_calendar",
    "calendar_library_version",
    "load_zone",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
_ZONE_RE = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
_NAMES_RE = re.compile(r"jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat", re.I)
_FIELD_RE = re.compile(r"[0-9*?/,\-#LW]+")
# Calendars are loaded once per process for this fixed span (deterministic, unlike the library's
# default of "20 years back to 1 year ahead of today"), clipped to the calendar's own bounds.
CALENDAR_START, CALENDAR_END = "2000-01-01", "2099-12-31"
AT_CHOICES = ("cron", "open", "close")

# --------------------------------------------------------------------------- helpers


def json_path(path: str, name: str) -> str:
    """``path.name`` (the JSON path of member ``name`` of the object at ``path``)."""
    return f"{path}.{name}" if path else name


def require_aware(moment: Any, field: str) -> datetime:
    """``moment`` as an aware UTC datetime, else :class:`InvalidInput` naming ``field``."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{field} must be a time-zone-aware datetime", field=field)
    return moment.astimezone(UTC)


def parse_instant(value: Any, field: str) -> datetime:
    """An RFC 3339 timestamp with an offset (``2026-03-08T07:00:00Z``) as an aware UTC datetime."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an RFC 3339 timestamp string", field=field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field} is not an RFC 3339 timestamp: {value[:64]!r}", field=field) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{field} must carry a UTC offset (e.g. 'Z')", field=field)
    return moment.astimezone(UTC)


def format_instant(moment: datetime) -> str:
    """An aware datetime as RFC 3339 UTC with a ``Z`` (milliseconds, or microseconds if needed)."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the Unix epoch (floor), exact (no float rounding)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def fire_key(trigger_id: str, moment: datetime) -> str:
    """The idempotency key of a fire: ``<trigger id>:<UTC milliseconds since the epoch>``."""
    return f"{trigger_id}:{epoch_ms(moment)}"


def number(value: Any, field: str, *, minimum: float | None = None, exclusive: bool = False) -> float:
    """A finite JSON number (booleans refused), optionally bounded below."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{field} must be a finite number", field=field)
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise InvalidInput(f"{field} must be {'>' if exclusive else '>='} {minimum:g}", field=field)
    return float(value)


def check_object(data: Any, path: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """``data`` as a JSON object with only ``allowed`` and all ``required`` members."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{path or 'trigger'} must be a JSON object", field=path or "$")
    for name in sorted(set(data) - allowed):
        raise InvalidInput(f"unknown member {name!r}", field=json_path(path, name))
    for name in sorted(required - set(data)):
        raise InvalidInput(f"missing member {name!r}", field=json_path(path, name))
    return data


def check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidInput(f"{field} must be 1-128 characters of letters, digits, '.', '_' or '-'", field=field)
    return value


def derived_id(kind: str, config: dict[str, Any]) -> str:
    """A stable trigger id: ``<type>-`` + 16 hex digits of SHA-256 over the canonical config JSON."""
    return f"{kind}-{sha256(canonical_json(config)).hex()[:16]}"


@lru_cache(maxsize=256)
def load_zone(name: str) -> tzinfo:
    """The IANA zone ``name`` from the pinned ``tzdata`` package (the OS copy may be older)."""
    if not _ZONE_RE.fullmatch(name) or len(name) > 64:
        raise KeyError(name)
    resource = importlib.resources.files("tzdata").joinpath("zoneinfo", *name.split("/"))
    if not resource.is_file():
        raise KeyError(name)
    with resource.open("rb") as handle:
        return ZoneInfo.from_file(handle, key=name)


def _zone(value: Any, field: str) -> tzinfo:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be an IANA time zone name", field=field)
    try:
        return load_zone(value)
    except (KeyError, ValueError, OSError):
        raise InvalidInput(f"{field}: unknown IANA time zone {value[:64]!r}", field=field) from None


# --------------------------------------------------------------------------- fires


@dataclass(frozen=True)
class Fire:
    """One firing of a trigger.

    ``at`` is the scheduled instant (time triggers) or the observation's instant (observation
    triggers), in UTC. ``missed`` marks a fire delivered late under a :class:`MissedFirePolicy`.
    """

    trigger_id: str
    at: datetime
    reason: str = "schedule"
    value: float | None = None
    missed: bool = False

    @property
    def key(self) -> str:
        """Idempotency key, equal on every host that computes this fire."""
        return fire_key(self.trigger_id, self.at)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "trigger_id": self.trigger_id,
            "at": format_instant(self.at),
            "reason": self.reason,
            "key": self.key,
        }
        if self.value is not None:
            body["value"] = self.value
        if self.missed:
            body["missed"] = True
        return body


# --------------------------------------------------------------------------- exchange calendars


class ExchangeCalendar:
    """The sessions of one exchange over the fixed span, as plain Python data (no pandas when used)."""

    def __init__(self, code: str) -> None:
        import exchange_calendars
        import pandas

        cls = type(exchange_calendars.get_calendar(code, start="2020-01-01", end="2020-01-31"))
        start, end = pandas.Timestamp(CALENDAR_START), pandas.Timestamp(CALENDAR_END)
        if cls.bound_min() is not None:
            start = max(start, cls.bound_min())
        if cls.bound_max() is not None:
            end = min(end, cls.bound_max())
        cal = exchange_calendars.get_calendar(code, start=start, end=end)
        self.code = code
        self.tz: tzinfo = cal.tz
        self.sessions: list[date] = [ts.date() for ts in cal.sessions]
        self.opens: list[datetime] = [ts.to_pydatetime().astimezone(UTC) for ts in cal.opens]
        self.closes: list[datetime] = [ts.to_pydatetime().astimezone(UTC) for ts in cal.closes]
        self._session_set = set(self.sessions)
        self.first, self.last = self.sessions[0], self.sessions[-1]

    def is_session(self, day: date) -> bool:
        return day in self._session_set

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def day_start(self, day: date) -> datetime:
        """The UTC instant at which ``day`` begins in the exchange's zone."""
        return datetime.combine(day, time(), tzinfo=self.tz).astimezone(UTC)


@cache
def exchange_calendar(code: str) -> ExchangeCalendar:
    """The cached calendar of exchange ``code`` (an ISO 10383 MIC such as ``XNYS``)."""
    return ExchangeCalendar(code)


def _calendar_code(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} must be an exchange calendar code such as 'XNYS'", field=field)
    import exchange_calendars

    if value not in exchange_calendars.get_calendar_names(include_aliases=True):
        raise InvalidInput(f"{field}: unknown exchange calendar {value[:32]!r}", field=field)
    return cast(str, exchange_calendars.resolve_alias(value))


def calendar_library_version() -> str:
    from importlib.metadata import version

    return version("exchange_calendars")


# --------------------------------------------------------------------------- triggers


class IdentifiedTrigger(ABC):
    """A trigger with a stable id: explicit, or derived from its configuration (equal for equal ones)."""

    type: ClassVar[str]

    def __init__(self, trigger_id: str | None) -> None:
        self._explicit_id = check_id(trigger_id, "id") if trigger_id is not None else None
        self._derived_id: str | None = None

    @property
    def id(self) -> str:
        """The explicit id, or one derived from the configuration (state excluded)."""
        if self._explicit_id is not None:
            return self._explicit_id
        if self._derived_id is None:  # the configuration never changes after construction
            self._derived_id = derived_id(self.type, self.config())
        return self._derived_id

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The configuration as JSON (with ``type``; without ``id`` and any state)."""


class ScheduleTrigger(IdentifiedTrigger):
    """A time trigger: a deterministic, strictly increasing sequence of UTC instants."""

    def to_dict(self) -> dict[str, Any]:
        body = self.config()
        if self._explicit_id is not None:
            body["id"] = self._explicit_id
        return body

    @abstractmethod
    def next_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after``; None if there is none (e.g. past calendar data)."""

    @abstractmethod
    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest fire at or before ``moment``; None if there is none."""

    def fires_between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        """Every fire ``f`` with ``start <= f < end``, in order (the first ``limit`` if given)."""
        start, end = require_aware(start, "start"), require_aware(end, "end")
        found: list[datetime] = []
        moment = self.next_after(start - _US)
        while moment is not None and moment < end and (limit is None or len(found) < limit):
            found.append(moment)
            moment = self.next_after(moment)
        return found

    def fire(self, moment: datetime, *, missed: bool = False) -> Fire:
        """The :class:`Fire` (with its idempotency key) of the scheduled instant ``moment``."""
        return Fire(self.id, moment.astimezone(UTC), "schedule", None, missed)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


class CronTrigger(ScheduleTrigger):
    """Cron in an IANA time zone, optionally only on an exchange's trading sessions.

    ``expression`` has six fields, seconds first (NCRONTAB: ``0 0 16 * * 1-5``), or five
    (seconds taken as 0). Day-of-month and day-of-week combine as in Vixie cron (either matches
    when both are restricted). ``at="open"``/``"close"`` (needs ``calendar``) fires at the
    session's open/close on the days the expression's day fields match (its second, minute and
    hour fields are then ignored).
    """

    type = "cron"

    def __init__(
        self,
        expression: str,
        timezone: str,
        calendar: str | None = None,
        *,
        at: Literal["cron", "open", "close"] = "cron",
        id: str | None = None,
    ) -> None:
        super().__init__(id)
        self.expression = _cron_expression(expression, "expression")
        self.timezone = timezone
        self.zone = _zone(timezone, "timezone")
        self.calendar = _calendar_code(calendar, "calendar") if calendar is not None else None
        if at not in AT_CHOICES:
            raise InvalidInput(f"at must be one of {', '.join(AT_CHOICES)}", field="at")
        if at != "cron" and self.calendar is None:
            raise InvalidInput(f"at={at!r} needs a calendar", field="at")
        self.at = at
        fields = self.expression.split()
        self._day_expression = "0 0 0 " + " ".join(fields[3:])

    def config(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "expression": self.expression, "timezone": self.timezone}
        if self.calendar is not None:
            body["calendar"] = self.calendar
        if self.at != "cron":
            body["at"] = self.at
        return body

    @classmethod
    def from_dict(cls, data: Any, path: str = "$") -> CronTrigger:
        check_object(
            data, path, {"type", "id", "expression", "timezone", "calendar", "at"}, {"type", "expression", "timezone"}
        )
        _check_type(data, cls.type, path)
        return relabel(
            path,
            lambda: cls(
                data["expression"], data["timezone"], data.get("calendar"), at=data.get("at", "cron"), id=data.get("id")
            ),
        )

    # ---- wall clock <-> instants

    def _wall(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None, fold=0)

    def _instant(self, wall: datetime) -> datetime:
        """The instant a matching wall-clock time fires: its first occurrence, or the gap's end."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if self._wall(first) == wall:
            return first
        other = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        low, high = min(first, other), max(first, other)  # the transition lies between them
        lo, hi = epoch_ms(low) // 1000, -(-epoch_ms(high) // 1000)
        while lo < hi:  # the first whole second whose wall-clock time is past ``wall``
            mid = (lo + hi) // 2
            if self._wall(EPOCH + timedelta(seconds=mid)) > wall:
                hi = mid
            else:
                lo = mid + 1
        return EPOCH + timedelta(seconds=lo)

    def _matches_day(self, moment: datetime) -> bool:
        local = self._wall(moment)
        return croniter.match(self._day_expression, datetime.combine(local.date(), time()), second_at_beginning=True)

    # ---- iteration

    def next_after(self, after: datetime) -> datetime | None:
        after = require_aware(after, "after")
        if self.at != "cron":
            return self._next_session_edge(after)
        cal = exchange_calendar(self.calendar) if self.calendar else None
        floor = after
        iterator = croniter(self.expression, self._wall(after), second_at_beginning=True)
        while True:
            try:
                candidate = self._instant(iterator.get_next(datetime))
            except CroniterBadDateError:
                return None
            if candidate <= floor:
                continue
            if cal is None:
                return candidate
            day = cal.local_date(candidate)
            if day > cal.last:
                return None
            if cal.is_session(day):
                return candidate
            # skip the rest of a non-session day at once
            floor = cal.day_start(day + timedelta(days=1)) - _US
            iterator = croniter(self.expression, self._wall(floor), second_at_beginning=True)

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        moment = require_aware(moment, "moment")
        if self.at != "cron":
            return self._last_session_edge(moment)
        cal = exchange_calendar(self.calendar) if self.calendar else None
        ceiling = moment
        iterator = croniter(self.expression, self._upper_wall(moment), second_at_beginning=True)
        while True:
            try:
                candidate = self._instant(iterator.get_prev(datetime))
            except CroniterBadDateError:
                return None
            if candidate > ceiling:
                continue
            if cal is None:
                return candidate
            day = cal.local_date(candidate)
            if day < cal.first:
                return None
            if cal.is_session(day):
                return candidate
            ceiling = cal.day_start(day) - _US
            iterator = croniter(self.expression, self._upper_wall(ceiling), second_at_beginning=True)

    def _upper_wall(self, moment: datetime) -> datetime:
        """A wall-clock time after every wall-clock time whose fire is at or before ``moment``."""
        local = moment.astimezone(self.zone)
        shift = local.replace(fold=0).utcoffset() - local.replace(fold=1).utcoffset()  # type: ignore[operator]
        extra = shift if local.fold == 1 and shift > timedelta(0) else timedelta(0)
        return local.replace(tzinfo=None, fold=0) + extra + timedelta(seconds=1)

    def _edges(self) -> list[datetime]:
        cal = exchange_calendar(self.calendar)
        return cal.closes if self.at == "close" else cal.opens

    def _next_session_edge(self, after: datetime) -> datetime | None:
        edges = self._edges()
        for index in range(bisect.bisect_right(edges, after), len(edges)):
            if self._matches_day(edges[index]):
                return edges[index]
        return None

    def _last_session_edge(self, moment: datetime) -> datetime | None:
        edges = self._edges()
        for index in range(bisect.bisect_right(edges, moment) - 1, -1, -1):
            if self._matches_day(edges[index]):
                return edges[index]
        return None


class IntervalTrigger(ScheduleTrigger):
    """Every ``seconds`` (at least 1, whole milliseconds), aligned to ``start``: ``start + k * seconds``, k >= 0."""

    type = "interval"
    MAX_SECONDS = 10 * 366 * 86400

    def __init__(self, seconds: float, start: datetime, *, id: str | None = None) -> None:
        super().__init__(id)
        seconds = number(seconds, "seconds", minimum=1)
        if seconds > self.MAX_SECONDS:
            raise InvalidInput(f"seconds must be at most {self.MAX_SECONDS}", field="seconds")
        millis = round(seconds * 1000)
        if abs(millis - seconds * 1000) > 1e-6:
            raise InvalidInput("seconds must be a whole number of milliseconds", field="seconds")
        self.period_us = millis * 1000
        self.start = require_aware(start, "start")
        if self.start.microsecond % 1000:
            raise InvalidInput("start must be a whole millisecond", field="start")
        self._start_us = (self.start - EPOCH) // _US

    @property
    def seconds(self) -> float:
        return self.period_us / 1e6

    def config(self) -> dict[str, Any]:
        seconds: float | int = self.period_us // 10**6 if self.period_us % 10**6 == 0 else self.seconds
        return {"type": self.type, "seconds": seconds, "start": format_instant(self.start)}

    @classmethod
    def from_dict(cls, data: Any, path: str = "$") -> IntervalTrigger:
        check_object(data, path, {"type", "id", "seconds", "start"}, {"type", "seconds", "start"})
        _check_type(data, cls.type, path)
        start = parse_instant(data["start"], json_path(path, "start"))
        return relabel(path, lambda: cls(data["seconds"], start, id=data.get("id")))

    def _at(self, k: int) -> datetime:
        return EPOCH + timedelta(microseconds=self._start_us + k * self.period_us)

    def next_after(self, after: datetime) -> datetime:
        offset = (require_aware(after, "after") - EPOCH) // _US - self._start_us
        return self._at(0 if offset < 0 else offset // self.period_us + 1)

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        offset = (require_aware(moment, "moment") - EPOCH) // _US - self._start_us
        return None if offset < 0 else self._at(offset // self.period_us)


def _cron_expression(value: Any, field: str) -> str:
    """A 5- or 6-field cron expression, normalised to six fields (seconds first)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a cron expression string", field=field)
    fields = value.split()
    if len(fields) not in (5, 6):
        raise InvalidInput(f"{field} must have 6 fields (second minute hour day month weekday) or 5", field=field)
    if len(fields) == 5:
        fields.insert(0, "0")
    for part in fields:  # names are fine; 'R' (random) and 'H' (hashed) would differ between hosts
        if not _FIELD_RE.fullmatch(_NAMES_RE.sub("0", part)):
            raise InvalidInput(f"{field}: unsupported cron field {part[:32]!r}", field=field)
    expression = " ".join(fields)
    try:
        valid = croniter.is_valid(expression, second_at_beginning=True, strict=True)
    except (CroniterError, ValueError):
        valid = False
    if not valid:
        raise InvalidInput(f"{field}: invalid cron expression {value[:64]!r}", field=field)
    return expression


def _check_type(data: dict[str, Any], expected: str, path: str) -> None:
    if data.get("type") != expected:
        raise InvalidInput(f"type must be {expected!r}", field=json_path(path, "type"))


_T = TypeVar("_T")


def relabel(path: str, build: Callable[[], _T]) -> _T:
    """Run ``build``; prefix the ``field`` of an :class:`InvalidInput` it raises with ``path``."""
    try:
        return build()
    except InvalidInput as error:
        if error.field and path and not error.field.startswith(path):
            error.field = json_path(path, error.field)
        raise


def schedule_from_dict(data: Any, path: str = "$") -> ScheduleTrigger:
    """A time trigger from its JSON (``type``: ``cron`` or ``interval``)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == CronTrigger.type:
        return CronTrigger.from_dict(data, path)
    if kind == IntervalTrigger.type:
        return IntervalTrigger.from_dict(data, path)
    check_object(data, path, set(data) if isinstance(data, dict) else set(), {"type"})
    raise InvalidInput("type must be 'cron' or 'interval'", field=json_path(path, "type"))


# --------------------------------------------------------------------------- missed fires


@dataclass(frozen=True)
class MissedFirePolicy:
    """What to do with fires whose instant passed more than ``grace_s`` before they were computed.

    ``skip``: drop them. ``fire_once``: deliver only the latest one. ``fire_all``: deliver them
    all, but at most ``max`` (the latest ``max``). Fires within ``grace_s`` of ``now`` are on time
    and always delivered.
    """

    mode: Literal["skip", "fire_once", "fire_all"] = "fire_once"
    max: int = 100
    grace_s: float = 60.0

    MODES: ClassVar[tuple[str, ...]] = ("skip", "fire_once", "fire_all")
    MAX_MAX: ClassVar[int] = 10_000
    MAX_GRACE_S: ClassVar[float] = 86_400.0

    def __post_init__(self) -> None:
        if self.mode not in self.MODES:
            raise InvalidInput(f"mode must be one of {', '.join(self.MODES)}", field="mode")
        if isinstance(self.max, bool) or not isinstance(self.max, int) or not 1 <= self.max <= self.MAX_MAX:
            raise InvalidInput(f"max must be an integer from 1 to {self.MAX_MAX}", field="max")
        grace = number(self.grace_s, "grace_s", minimum=0)
        if grace > self.MAX_GRACE_S:
            raise InvalidInput(f"grace_s must be at most {self.MAX_GRACE_S:g}", field="grace_s")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"mode": self.mode, "grace_s": self.grace_s}
        if self.mode == "fire_all":
            body["max"] = self.max
        return body

    @classmethod
    def from_dict(cls, data: Any, path: str = "$") -> MissedFirePolicy:
        check_object(data, path, {"mode", "max", "grace_s"}, {"mode"})
        return relabel(path, lambda: cls(data["mode"], data.get("max", 100), data.get("grace_s", 60.0)))


def due_fires(
    trigger: ScheduleTrigger, last_fired: datetime | None, now: datetime, policy: MissedFirePolicy | None = None
) -> list[Fire]:
    """The fires to deliver now: those in ``(last_fired, now]`` after ``policy`` (default fire_once).

    ``last_fired`` is the watermark up to which fires were already handled (the instant of the
    last fire delivered, or when the subscription started); None means "nothing is owed", so only
    on-time fires are returned. Fires at most ``grace_s`` before ``now`` are on time; older ones
    are *missed* (``Fire.missed``) and kept or dropped per policy. Returned in time order; the
    result depends only on the arguments, so hosts agree on it (and on the keys).
    """
    policy = policy or MissedFirePolicy()
    now = require_aware(now, "now")
    cut = now - timedelta(seconds=policy.grace_s)
    floor = cut if last_fired is None else max(require_aware(last_fired, "last_fired"), cut)
    missed: list[Fire] = []
    if last_fired is not None and policy.mode != "skip":
        watermark = require_aware(last_fired, "last_fired")
        limit = 1 if policy.mode == "fire_once" else policy.max
        moment = trigger.last_at_or_before(cut)
        while moment is not None and moment > watermark and len(missed) < limit:
            missed.append(trigger.fire(moment, missed=True))
            moment = trigger.last_at_or_before(moment - _US)
        missed.reverse()
    on_time = [trigger.fire(moment) for moment in trigger.fires_between(floor + _US, now + _US)]
    return missed + on_time
