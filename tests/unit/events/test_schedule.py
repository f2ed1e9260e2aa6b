"""Time triggers: cron across DST in America/New_York, NYSE sessions and early closes from the real
``exchange_calendars`` data, 1 s intervals, idempotency keys, missed-fire policies, JSON formats.
No storage, no mocks: every instant below is computed from the pinned tzdata and calendar library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InvalidInput
from shared.events.schedules import (
    CronTrigger,
    Fire,
    IntervalTrigger,
    MissedFirePolicy,
    calendar_library_version,
    due_fires,
    load_zone,
    schedule_from_dict,
)

NY = load_zone("America/New_York")
ROOT = Path(__file__).resolve().parents[3]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def ny(*parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=NY, fold=fold)


FOUR_PM = "0 0 16 * * 1-5"


# --------------------------------------------------------------------------- cron across DST


def test_four_pm_new_york_across_the_march_2026_change() -> None:
    """DST starts Sunday 2026-03-08: 16:00 EST is 21:00Z before, 16:00 EDT is 20:00Z after."""
    fires = CronTrigger(FOUR_PM, "America/New_York").fires_between(utc(2026, 3, 5), utc(2026, 3, 11))
    assert fires == [utc(2026, 3, 5, 21), utc(2026, 3, 6, 21), utc(2026, 3, 9, 20), utc(2026, 3, 10, 20)]
    assert all(f.astimezone(NY).hour == 16 for f in fires)


def test_four_pm_new_york_across_the_november_2026_change() -> None:
    """DST ends Sunday 2026-11-01: 20:00Z on Friday 10-30, 21:00Z from Monday 11-02."""
    trigger = CronTrigger(FOUR_PM, "America/New_York")
    assert trigger.fires_between(utc(2026, 10, 29), utc(2026, 11, 4)) == [
        utc(2026, 10, 29, 20),
        utc(2026, 10, 30, 20),
        utc(2026, 11, 2, 21),
        utc(2026, 11, 3, 21),
    ]
    assert trigger.next_after(utc(2026, 10, 30, 20)) == utc(2026, 11, 2, 21)
    assert trigger.last_at_or_before(utc(2026, 11, 2, 20, 59)) == utc(2026, 10, 30, 20)


def test_five_field_expression_means_second_zero() -> None:
    five = CronTrigger("0 16 * * 1-5", "America/New_York")
    assert five.expression == FOUR_PM
    assert five.id == CronTrigger(FOUR_PM, "America/New_York").id
    assert five.next_after(utc(2026, 3, 9)) == utc(2026, 3, 9, 20)
    named = CronTrigger("0 0 16 * mar mon-fri", "America/New_York")
    assert named.fires_between(utc(2026, 3, 6), utc(2026, 3, 10)) == [utc(2026, 3, 6, 21), utc(2026, 3, 9, 20)]


def test_nonexistent_local_time_fires_once_at_the_end_of_the_gap() -> None:
    """02:30 does not exist on 2026-03-08 in New York (02:00 EST -> 03:00 EDT): it fires at 03:00 EDT."""
    trigger = CronTrigger("0 30 2 * * *", "America/New_York")
    fires = trigger.fires_between(utc(2026, 3, 7), utc(2026, 3, 10))
    assert fires == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]
    assert fires[1].astimezone(NY) == ny(2026, 3, 8, 3)
    # every time inside the gap collapses into that single fire, together with a real 03:00
    gap = CronTrigger("0 */15 2-3 * * *", "America/New_York").fires_between(utc(2026, 3, 8, 6), utc(2026, 3, 8, 8))
    assert gap == [utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 15), utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 7, 45)]


def test_ambiguous_local_time_fires_once_at_its_first_occurrence() -> None:
    """01:30 happens twice on 2026-11-01 in New York (EDT, then EST): it fires once, at 01:30 EDT."""
    trigger = CronTrigger("0 30 1 * * *", "America/New_York")
    fires = trigger.fires_between(utc(2026, 10, 31), utc(2026, 11, 3))
    assert fires == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # asked from inside the repeated hour (01:10 EST), the next fire is the next day
    assert trigger.next_after(ny(2026, 11, 1, 1, 10, fold=1)) == utc(2026, 11, 2, 6, 30)
    assert trigger.last_at_or_before(ny(2026, 11, 1, 1, 50, fold=1)) == utc(2026, 11, 1, 5, 30)


def test_croniter_alone_would_fire_the_repeated_time_twice() -> None:
    """Why we iterate wall-clock time ourselves: croniter 7 with aware datetimes fires 01:30 twice."""
    it = croniter("0 30 1 * * *", ny(2026, 10, 31, 12), second_at_beginning=True)
    raw = [it.get_next(datetime).astimezone(UTC) for _ in range(2)]
    assert raw == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)]


def test_half_hourly_wall_clock_through_both_changes() -> None:
    trigger = CronTrigger("0 */30 * * * *", "America/New_York")
    assert trigger.fires_between(utc(2026, 3, 8, 6), utc(2026, 3, 8, 8)) == [
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 6, 30),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 7, 30),
    ]
    # the repeated hour 01:00-01:59 fires in its first pass only; 06:00Z-06:59Z (second pass) is quiet
    assert trigger.fires_between(utc(2026, 11, 1, 5), utc(2026, 11, 1, 8)) == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 7),
        utc(2026, 11, 1, 7, 30),
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.datetimes(min_value=datetime(2026, 2, 20), max_value=datetime(2026, 11, 20), timezones=st.just(UTC)),
    st.sampled_from(["0 30 1 * * *", "0 30 2 * * *", "0 */20 * * * *", "0 0 16 * * 1-5", "15 45 1,2 * * *"]),
)
def test_next_after_and_last_at_or_before_agree(moment: datetime, expression: str) -> None:
    """Forward and backward iteration give the same strictly increasing sequence, DST days included."""
    trigger = CronTrigger(expression, "America/New_York")
    nxt = trigger.next_after(moment)
    assert nxt is not None and nxt > moment
    assert trigger.last_at_or_before(nxt) == nxt
    prev = trigger.last_at_or_before(nxt - timedelta(microseconds=1))
    assert prev is not None and prev <= moment
    assert trigger.next_after(prev) == nxt


# --------------------------------------------------------------------------- exchange calendar


def test_nyse_thanksgiving_and_weekend_are_skipped() -> None:
    """2026-11-26 (Thanksgiving) and 2026-11-28/29 (weekend) have no session; '*' day-of-week proves the
    calendar, not the cron expression, skips the weekend."""
    trigger = CronTrigger("0 0 16 * * *", "America/New_York", calendar="XNYS")
    fires = trigger.fires_between(utc(2026, 11, 24), utc(2026, 12, 1))
    assert [f.astimezone(NY).date().isoformat() for f in fires] == [
        "2026-11-24",
        "2026-11-25",
        "2026-11-27",
        "2026-11-30",
    ]
    assert trigger.next_after(utc(2026, 11, 25, 21)) == utc(2026, 11, 27, 21)
    assert trigger.last_at_or_before(utc(2026, 11, 30, 20)) == utc(2026, 11, 27, 21)
    without = CronTrigger("0 0 16 * * *", "America/New_York").fires_between(utc(2026, 11, 24), utc(2026, 12, 1))
    assert len(without) == 7


def test_nyse_other_2026_holidays() -> None:
    trigger = CronTrigger(FOUR_PM, "America/New_York", calendar="XNYS")
    # Good Friday 2026-04-03, Independence Day observed Friday 2026-07-03, Christmas 2026-12-25
    assert trigger.next_after(utc(2026, 4, 2, 21)) == utc(2026, 4, 6, 20)
    assert trigger.next_after(utc(2026, 7, 2, 21)) == utc(2026, 7, 6, 20)
    assert trigger.next_after(utc(2026, 12, 24, 22)) == utc(2026, 12, 28, 21)


def test_early_close_with_at_close() -> None:
    """The day after Thanksgiving 2026 closes at 13:00 New York (18:00Z); other sessions at 16:00."""
    trigger = CronTrigger("0 0 16 * * *", "America/New_York", calendar="XNYS", at="close")
    fires = trigger.fires_between(utc(2026, 11, 24), utc(2026, 12, 1))
    assert fires == [utc(2026, 11, 24, 21), utc(2026, 11, 25, 21), utc(2026, 11, 27, 18), utc(2026, 11, 30, 21)]
    assert fires[2].astimezone(NY) == ny(2026, 11, 27, 13)
    # the plain cron time on that day is still 16:00: only at="close" follows the early close
    plain = CronTrigger("0 0 16 * * *", "America/New_York", calendar="XNYS")
    assert plain.next_after(utc(2026, 11, 26)) == utc(2026, 11, 27, 21)
    # Christmas Eve 2026 is an early close too; the day fields still filter (Thursdays only)
    thursdays = CronTrigger("0 0 0 * * 4", "America/New_York", calendar="XNYS", at="close")
    assert thursdays.next_after(utc(2026, 12, 20)) == utc(2026, 12, 24, 18)
    assert thursdays.last_at_or_before(utc(2026, 12, 24, 17)) == utc(2026, 12, 17, 21)


def test_at_open_and_close_across_dst() -> None:
    opens = CronTrigger("0 0 0 * * *", "America/New_York", calendar="XNYS", at="open")
    assert opens.fires_between(utc(2026, 3, 6), utc(2026, 3, 10)) == [utc(2026, 3, 6, 14, 30), utc(2026, 3, 9, 13, 30)]


def test_calendar_alias_is_canonical_and_library_is_pinned() -> None:
    assert CronTrigger(FOUR_PM, "America/New_York", calendar="NYSE").calendar == "XNYS"
    pinned = (ROOT / "requirements.txt").read_text("utf-8").split()
    assert f"exchange_calendars=={calendar_library_version()}" in pinned


# --------------------------------------------------------------------------- intervals


def test_one_second_interval_over_ten_seconds_fires_ten_times() -> None:
    start = utc(2026, 11, 30, 12)
    trigger = IntervalTrigger(1, start)
    fires = trigger.fires_between(start, start + timedelta(seconds=10))
    assert len(fires) == 10
    assert fires == [start + timedelta(seconds=k) for k in range(10)]
    # any 10 s window holds 10 fires, aligned to start whatever the window's offset
    shifted = trigger.fires_between(
        start + timedelta(milliseconds=300), start + timedelta(seconds=10, milliseconds=300)
    )
    assert len(shifted) == 10 and shifted[0] == start + timedelta(seconds=1)
    assert trigger.fires_between(start, start + timedelta(days=365), limit=3) == fires[:3]


def test_interval_alignment_and_bounds() -> None:
    start = utc(2026, 1, 1)
    trigger = IntervalTrigger(2.5, start)
    assert trigger.next_after(start - timedelta(days=1)) == start
    assert trigger.next_after(start) == start + timedelta(seconds=2.5)
    assert trigger.last_at_or_before(start - timedelta(microseconds=1)) is None
    assert trigger.last_at_or_before(start + timedelta(seconds=7)) == start + timedelta(seconds=5)
    for bad in (0, 0.5, -1, 1.0005, True, float("nan"), "1"):
        with pytest.raises(InvalidInput) as info:
            IntervalTrigger(bad, start)  # type: ignore[arg-type]
        assert info.value.field == "seconds"


# --------------------------------------------------------------------------- idempotency keys


def test_keys_are_equal_across_independent_trigger_objects() -> None:
    a = CronTrigger(FOUR_PM, "America/New_York", calendar="XNYS")
    b = schedule_from_dict(
        {"timezone": "America/New_York", "type": "cron", "calendar": "XNYS", "expression": "0 16 * * 1-5"}
    )
    assert a is not b and a.id == b.id
    window = (utc(2026, 11, 1), utc(2026, 12, 1))
    keys_a = [a.fire(f).key for f in a.fires_between(*window)]
    keys_b = [b.fire(f).key for f in b.fires_between(*window)]
    assert keys_a == keys_b and len(set(keys_a)) == len(keys_a) == 20
    assert keys_a[0] == f"{a.id}:{int(utc(2026, 11, 2, 21).timestamp()) * 1000}"
    # a different configuration is a different trigger
    assert CronTrigger(FOUR_PM, "America/Chicago").id != a.id
    # an explicit id (e.g. the subscription's) replaces the derived one
    named = IntervalTrigger(1, utc(2026, 1, 1), id="sub-42")
    assert named.fire(utc(2026, 1, 1, 0, 0, 3)).key == "sub-42:1767225603000"
    assert IntervalTrigger.from_dict(named.to_dict()).fire(utc(2026, 1, 1, 0, 0, 3)).key == "sub-42:1767225603000"


def test_fire_to_dict() -> None:
    fire = Fire("sub-1", utc(2026, 11, 27, 18), missed=True)
    assert fire.to_dict() == {
        "trigger_id": "sub-1",
        "at": "2026-11-27T18:00:00.000Z",
        "reason": "schedule",
        "key": "sub-1:1795802400000",
        "missed": True,
    }


# --------------------------------------------------------------------------- missed fires


MINUTELY = IntervalTrigger(60, utc(2026, 1, 1), id="m")


def instants(fires: list[Fire]) -> list[tuple[datetime, bool]]:
    return [(f.at, f.missed) for f in fires]


def test_on_time_fires_are_always_due() -> None:
    now = utc(2026, 1, 1, 10, 0, 30)
    for mode in MissedFirePolicy.MODES:
        assert instants(due_fires(MINUTELY, utc(2026, 1, 1, 9, 59), now, MissedFirePolicy(mode))) == [
            (utc(2026, 1, 1, 10), False)
        ]
    # nothing is due twice: the next tick, with the watermark moved, returns nothing
    assert due_fires(MINUTELY, utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 0, 59)) == []


def test_missed_fire_policies_after_downtime() -> None:
    """Down from 10:00:30 to 10:10:30: fires 10:01..10:09 are missed (grace 60 s), 10:10 is on time."""
    last, now = utc(2026, 1, 1, 10), utc(2026, 1, 1, 10, 10, 30)
    on_time = [(utc(2026, 1, 1, 10, 10), False)]
    assert instants(due_fires(MINUTELY, last, now, MissedFirePolicy("skip"))) == on_time
    assert (
        instants(due_fires(MINUTELY, last, now, MissedFirePolicy("fire_once")))
        == [(utc(2026, 1, 1, 10, 9), True)] + on_time
    )
    assert (
        instants(due_fires(MINUTELY, last, now, MissedFirePolicy("fire_all")))
        == [(utc(2026, 1, 1, 10, k), True) for k in range(1, 10)] + on_time
    )
    assert (
        instants(due_fires(MINUTELY, last, now, MissedFirePolicy("fire_all", max=3)))
        == [(utc(2026, 1, 1, 10, k), True) for k in (7, 8, 9)] + on_time
    )
    # a wider grace turns missed fires into on-time ones
    assert len(due_fires(MINUTELY, last, now, MissedFirePolicy("skip", grace_s=300))) == 5
    # default policy is fire_once; no watermark means nothing is owed
    assert instants(due_fires(MINUTELY, last, now)) == [(utc(2026, 1, 1, 10, 9), True)] + on_time
    assert instants(due_fires(MINUTELY, None, now)) == on_time
    # a watermark ahead of now (clock skew between hosts) owes nothing
    assert due_fires(MINUTELY, now + timedelta(seconds=5), now) == []


def test_missed_fires_skip_market_holidays_and_agree_across_hosts() -> None:
    """Down over Thanksgiving: the missed fires are sessions only; two hosts compute the same keys."""
    policy = MissedFirePolicy("fire_all", max=10)
    host_a = CronTrigger(FOUR_PM, "America/New_York", calendar="XNYS", at="close")
    host_b = CronTrigger.from_dict(host_a.to_dict())
    last, now = utc(2026, 11, 24, 21), utc(2026, 11, 30, 12)
    due_a = due_fires(host_a, last, now, policy)
    assert instants(due_a) == [(utc(2026, 11, 25, 21), True), (utc(2026, 11, 27, 18), True)]
    assert [f.key for f in due_a] == [f.key for f in due_fires(host_b, last, now, policy)]


def test_missed_fire_policy_json() -> None:
    policy = MissedFirePolicy.from_dict({"mode": "fire_all", "max": 5, "grace_s": 10})
    assert policy == MissedFirePolicy("fire_all", 5, 10)
    assert MissedFirePolicy.from_dict(policy.to_dict()) == policy
    for body, field in [
        ({"mode": "later"}, "$.mode"),
        ({"mode": "fire_all", "max": 0}, "$.max"),
        ({"mode": "skip", "grace_s": -1}, "$.grace_s"),
        ({"mode": "skip", "x": 1}, "$.x"),
        ({}, "$.mode"),
    ]:
        with pytest.raises(InvalidInput) as info:
            MissedFirePolicy.from_dict(body)
        assert info.value.field == field


# --------------------------------------------------------------------------- JSON and validation


def test_json_round_trip() -> None:
    for trigger in (
        CronTrigger(FOUR_PM, "America/New_York", calendar="XNYS", at="close"),
        CronTrigger("*/5 * * * *", "Europe/London", id="sub-7"),
        IntervalTrigger(1.5, utc(2026, 1, 1, 0, 0, 0, 250000)),
    ):
        again = schedule_from_dict(trigger.to_dict())
        assert again == trigger and again.id == trigger.id
    assert IntervalTrigger(1, utc(2026, 1, 1)).to_dict() == {
        "type": "interval",
        "seconds": 1,
        "start": "2026-01-01T00:00:00.000Z",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "cron", "expression": "0 0 25 * * *", "timezone": "UTC"}, "$.trigger.expression"),
        ({"type": "cron", "expression": "0 0 0 30 2 *", "timezone": "UTC"}, "$.trigger.expression"),
        ({"type": "cron", "expression": "R 0 16 * * 1-5", "timezone": "UTC"}, "$.trigger.expression"),
        ({"type": "cron", "expression": "@daily", "timezone": "UTC"}, "$.trigger.expression"),
        ({"type": "cron", "expression": "0 0 16 * * 1-5 2026", "timezone": "UTC"}, "$.trigger.expression"),
        ({"type": "cron", "expression": 5, "timezone": "UTC"}, "$.trigger.expression"),
        ({"type": "cron", "expression": FOUR_PM, "timezone": "America/Gotham"}, "$.trigger.timezone"),
        ({"type": "cron", "expression": FOUR_PM, "timezone": "../../etc/passwd"}, "$.trigger.timezone"),
        ({"type": "cron", "expression": FOUR_PM, "timezone": "UTC", "calendar": "XXXX"}, "$.trigger.calendar"),
        ({"type": "cron", "expression": FOUR_PM, "timezone": "UTC", "at": "close"}, "$.trigger.at"),
        ({"type": "cron", "expression": FOUR_PM, "timezone": "UTC", "calendar": "XNYS", "at": "noon"}, "$.trigger.at"),
        ({"type": "cron", "expression": FOUR_PM}, "$.trigger.timezone"),
        ({"type": "cron", "expression": FOUR_PM, "timezone": "UTC", "id": "a b"}, "$.trigger.id"),
        ({"type": "cron", "expression": FOUR_PM, "timezone": "UTC", "every": 1}, "$.trigger.every"),
        ({"type": "interval", "seconds": 1, "start": "2026-01-01T00:00:00"}, "$.trigger.start"),
        ({"type": "interval", "seconds": 1, "start": "yesterday"}, "$.trigger.start"),
        ({"type": "interval", "seconds": 0.25, "start": "2026-01-01T00:00:00Z"}, "$.trigger.seconds"),
        ({"type": "weekly"}, "$.trigger.type"),
        ({}, "$.trigger.type"),
        ([], "$.trigger"),
    ],
)
def test_invalid_triggers_name_the_json_path(body: object, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        schedule_from_dict(body, path="$.trigger")
    assert info.value.field == field
    assert info.value.problem()["field"] == field


def test_naive_datetimes_are_refused() -> None:
    trigger = CronTrigger(FOUR_PM, "America/New_York")
    with pytest.raises(InvalidInput) as info:
        trigger.next_after(datetime(2026, 1, 1))
    assert info.value.field == "after"
    with pytest.raises(InvalidInput):
        IntervalTrigger(1, datetime(2026, 1, 1))
