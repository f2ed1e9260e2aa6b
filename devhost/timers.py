"""Timer triggers: NCRONTAB schedules (six fields, seconds first) or TimeSpan intervals.

Each timer function gets a thread that sleeps until the next occurrence, invokes the
function with a ``func.TimerRequest`` and computes the following occurrence only after
the invocation returns, so a timer never overlaps itself (occurrences missed while it
ran are skipped, as in the Functions host). Schedules are evaluated in UTC, or in the
IANA time zone named by the ``WEBSITE_TIME_ZONE`` setting.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from azure.functions.timer import TimerRequest
from croniter import croniter

from devhost.catalog import FunctionInfo
from devhost.errors import DevHostError
from devhost.invocation import Invoker
from devhost.settings import parse_timespan

log = logging.getLogger("devhost")

PAST_DUE_AFTER = 1.0  # seconds late after which an invocation is reported as past due


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment``."""


class CronSchedule:
    """An NCRONTAB expression: ``{second} {minute} {hour} {day} {month} {day-of-week}``."""

    def __init__(self, expression: str, zone: tzinfo = UTC) -> None:
        if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
            raise DevHostError(
                f"'{expression}' is not a valid NCRONTAB expression (six fields, seconds first, e.g. '0 */5 * * * *')"
            )
        self.expression = expression
        self.zone = zone

    def next_after(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.zone)
        return croniter(self.expression, local, second_at_beginning=True).get_next(datetime)

    def __str__(self) -> str:
        return self.expression


class IntervalSchedule:
    """A TimeSpan schedule (``hh:mm:ss``): every interval, counted from the previous occurrence."""

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise DevHostError("a TimeSpan timer schedule must be positive")
        self.interval = timedelta(seconds=interval)

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    def __str__(self) -> str:
        return str(self.interval)


def parse_schedule(expression: str, zone_name: str | None = None) -> Schedule:
    """A :class:`CronSchedule`, or an :class:`IntervalSchedule` for ``hh:mm:ss``."""
    expression = expression.strip()
    if ":" in expression and " " not in expression:
        return IntervalSchedule(parse_timespan(expression))
    zone: tzinfo = UTC
    if zone_name:
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise DevHostError(f"WEBSITE_TIME_ZONE '{zone_name}' is not an IANA time zone") from None
    return CronSchedule(expression, zone)


class TimerRunner:
    """Runs one timer function on its own thread until :meth:`stop`."""

    def __init__(self, function: FunctionInfo, invoker: Invoker) -> None:
        self.function = function
        self.invoker = invoker
        self.schedule = parse_schedule(str(function.trigger.get("schedule", "")), os.environ.get("WEBSITE_TIME_ZONE"))
        self.run_on_startup = bool(function.trigger.get("runOnStartup", False))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"devhost-timer-{function.name}", daemon=True)
        self._last: datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (an invocation in progress is allowed to finish)."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    def _run(self) -> None:
        now = _utcnow()
        if self.run_on_startup:
            self._fire(now, self.schedule.next_after(now), past_due=False)
        due = self.schedule.next_after(now)
        while not self._stopping.is_set():
            if not self._sleep_until(due):
                return
            late = (_utcnow() - due).total_seconds()
            following = self.schedule.next_after(due)
            self._fire(due, following, past_due=late > PAST_DUE_AFTER)
            now = _utcnow()
            due = following if following > now else self.schedule.next_after(now)

    def _sleep_until(self, due: datetime) -> bool:
        """Sleep until the wall clock reaches ``due``; False if stopped first."""
        while True:
            remaining = due.timestamp() - time.time()
            if remaining <= 0:
                return True
            if self._stopping.wait(remaining):
                return False

    def _fire(self, due: datetime, following: datetime, *, past_due: bool) -> None:
        now = _utcnow()
        request = TimerRequest(
            past_due=past_due,
            schedule_status={"Last": _iso(self._last or due), "Next": _iso(following), "LastUpdated": _iso(now)},
            schedule={"AdjustForDST": True},
        )
        self._last = due
        log.debug("Executing 'Functions.%s' (Reason='Timer fired at %s')", self.function.name, _iso(now))
        try:
            self.invoker.invoke_blocking(self.function, request)
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", self.function.name)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
