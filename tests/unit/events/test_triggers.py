"""Observation triggers: threshold crossings with hysteresis, deviation + heartbeat, persisted state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InvalidInput
from shared.events.schedules import CronTrigger, IntervalTrigger
from shared.events.triggers import DeviationHeartbeatTrigger, ThresholdTrigger, trigger_from_dict

T0 = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def feed(trigger, values: list[float], step: float = 1.0) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """Evaluate ``values`` one ``step`` apart; (index, reason) of each fire."""
    fired = []
    for index, value in enumerate(values):
        fire = trigger.evaluate(value, at(index * step))
        if fire is not None:
            fired.append((index, fire.reason))
    return fired


# --------------------------------------------------------------------------- threshold


def test_oil_above_40_fires_once_per_crossing_with_hysteresis() -> None:
    """Above 40 fires once; dips to 39.9 and 39.6 do not re-arm (hysteresis 0.5); 39.4 re-arms."""
    oil = ThresholdTrigger(40, "above", 0.5)
    values = [38.0, 40.2, 41.0, 39.9, 40.3, 39.6, 40.8, 39.4, 39.8, 40.1, 40.5]
    assert feed(oil, values) == [(1, "threshold_crossed"), (9, "threshold_crossed")]


def test_threshold_level_itself_is_not_a_crossing_and_zero_hysteresis() -> None:
    trigger = ThresholdTrigger(40, "above")
    assert feed(trigger, [40.0, 40.0001, 40.0, 40.5, 39.0, 41.0]) == [
        (1, "threshold_crossed"),
        (3, "threshold_crossed"),
        (5, "threshold_crossed"),
    ]


def test_threshold_below() -> None:
    rate = ThresholdTrigger(2.0, "below", hysteresis=0.25)
    assert feed(rate, [2.1, 1.9, 2.2, 1.8, 2.25, 1.99]) == [(1, "threshold_crossed"), (5, "threshold_crossed")]


def test_threshold_first_observation_past_level_fires() -> None:
    trigger = ThresholdTrigger(40, "above", 0.5)
    fire = trigger.evaluate(42, T0)
    assert fire is not None and fire.value == 42.0 and fire.at == T0 and fire.reason == "threshold_crossed"


def test_threshold_state_survives_persistence_between_observations() -> None:
    """Persist after every observation (as a host does) and resume from JSON: same fires."""
    values = [38.0, 40.2, 41.0, 39.9, 40.3, 39.6, 40.8, 39.4, 39.8, 40.1, 40.5]
    trigger = ThresholdTrigger(40, "above", 0.5, id="oil-40")
    fired = []
    for index, value in enumerate(values):
        trigger = ThresholdTrigger.from_dict(json.loads(json.dumps(trigger.to_dict())))
        fire = trigger.evaluate(value, at(index))
        if fire:
            fired.append((index, fire.key))
    assert fired == [(1, f"oil-40:{int(at(1).timestamp() * 1000)}"), (9, f"oil-40:{int(at(9).timestamp() * 1000)}")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=35, max_value=45, allow_nan=False), min_size=1, max_size=60))
def test_threshold_never_fires_twice_without_rearming(values: list[float]) -> None:
    """Between two fires the value always went back to level - hysteresis or below."""
    trigger = ThresholdTrigger(40, "above", 0.5)
    fired = [i for i, _ in feed(trigger, values)]
    for first, second in zip(fired, fired[1:], strict=False):
        assert min(values[first + 1 : second]) <= 39.5
    for index in fired:
        assert values[index] > 40


# --------------------------------------------------------------------------- deviation + heartbeat


def test_first_observation_always_fires_then_deviation() -> None:
    feed_ = DeviationHeartbeatTrigger(0.01, 3600)  # 1 %, hourly heartbeat
    assert feed_.due(T0) is None  # nothing observed, nothing to report
    assert feed_.evaluate(2000.0, at(0)).reason == "first"
    assert feed_.evaluate(2015.0, at(10)) is None  # 0.75 %
    assert feed_.evaluate(1985.0, at(20)) is None  # 0.75 % the other way
    fire = feed_.evaluate(2020.0, at(30))  # exactly 1 % -> fires (>=)
    assert fire is not None and fire.reason == "deviation" and fire.value == 2020.0
    assert feed_.last_reported == 2020.0
    assert feed_.evaluate(2030.0, at(40)) is None  # measured from 2020 now, ~0.5 %
    assert feed_.evaluate(1999.0, at(50)).reason == "deviation"  # -1.04 %


def test_heartbeat_on_observation_and_on_time_check() -> None:
    feed_ = DeviationHeartbeatTrigger(0.005, 60)
    feed_.evaluate(100.0, at(0))
    assert feed_.next_due() == at(60)
    assert feed_.evaluate(100.1, at(59)) is None
    hb = feed_.evaluate(100.2, at(60))  # 60 s since the last report
    assert hb is not None and (hb.reason, hb.at, hb.value) == ("heartbeat", at(60), 100.2)
    # no observations for a while: due() reports the newest value on the heartbeat grid
    assert feed_.due(at(119.999)) is None
    due = feed_.due(at(125))
    assert due is not None and (due.reason, due.at, due.value) == ("heartbeat", at(120), 100.2)
    assert feed_.due(at(130)) is None  # not twice
    # a long outage collapses missed heartbeats into one, at the latest grid instant
    late = feed_.due(at(120 + 60 * 5 + 7))
    assert late is not None and late.at == at(420)
    assert feed_.next_due() == at(480)


def test_heartbeat_keys_agree_between_hosts_checking_at_different_moments() -> None:
    a = DeviationHeartbeatTrigger(0.005, 60)
    a.evaluate(100.0, at(0))
    b = DeviationHeartbeatTrigger.from_dict(a.to_dict())
    assert a.due(at(60.2)).key == b.due(at(61.9)).key


def test_deviation_beats_heartbeat_and_zero_reference() -> None:
    feed_ = DeviationHeartbeatTrigger(0.005, 60)
    feed_.evaluate(100.0, at(0))
    assert feed_.evaluate(101.0, at(90)).reason == "deviation"
    zero = DeviationHeartbeatTrigger(0.5, 3600)
    zero.evaluate(0.0, at(0))
    assert zero.evaluate(0.0, at(1)) is None
    assert zero.evaluate(-0.001, at(2)).reason == "deviation"


def test_stale_and_duplicate_observations_do_not_fire_twice() -> None:
    feed_ = DeviationHeartbeatTrigger(0.01, 60)
    feed_.evaluate(100.0, at(10))
    assert feed_.evaluate(200.0, at(5)) is None  # older than what was seen: ignored
    assert feed_.last_value == 100.0
    first = feed_.evaluate(102.0, at(20))
    assert first is not None and feed_.evaluate(102.0, at(20)) is None  # redelivered
    threshold = ThresholdTrigger(40)
    assert threshold.evaluate(41, at(10)) is not None
    assert threshold.evaluate(30, at(9)) is None and threshold.armed is False


def test_observation_trigger_json_round_trip_and_ids() -> None:
    fresh = trigger_from_dict({"type": "deviation_heartbeat", "deviation_fraction": 0.005, "heartbeat_s": 3600})
    assert isinstance(fresh, DeviationHeartbeatTrigger) and fresh.last_reported is None
    fresh.evaluate(1900.5, at(0))
    resumed = trigger_from_dict(fresh.to_dict())
    assert resumed.to_dict() == fresh.to_dict() and resumed.id == fresh.id
    assert resumed.id == DeviationHeartbeatTrigger(0.005, 3600).id  # state is not part of the id
    assert ThresholdTrigger(40, "above", 0.5).id != ThresholdTrigger(40, "below", 0.5).id
    assert fresh.to_dict()["state"] == {
        "last_reported": 1900.5,
        "last_reported_at": "2026-11-30T14:30:00.000Z",
        "last_value": 1900.5,
        "last_at": "2026-11-30T14:30:00.000Z",
    }
    # the one entry point also reads time triggers
    assert isinstance(
        trigger_from_dict({"type": "interval", "seconds": 1, "start": "2026-01-01T00:00:00Z"}), IntervalTrigger
    )
    assert isinstance(
        trigger_from_dict({"type": "cron", "expression": "0 0 16 * * 1-5", "timezone": "America/New_York"}), CronTrigger
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "threshold"}, "$.trigger.level"),
        ({"type": "threshold", "level": "40"}, "$.trigger.level"),
        ({"type": "threshold", "level": True}, "$.trigger.level"),
        ({"type": "threshold", "level": 40, "direction": "up"}, "$.trigger.direction"),
        ({"type": "threshold", "level": 40, "hysteresis": -1}, "$.trigger.hysteresis"),
        ({"type": "threshold", "level": 40, "state": {"armed": "yes"}}, "$.trigger.state.armed"),
        ({"type": "threshold", "level": 40, "state": {"armed": True, "last_at": "noon"}}, "$.trigger.state.last_at"),
        ({"type": "threshold", "level": 40, "state": []}, "$.trigger.state"),
        ({"type": "deviation_heartbeat", "deviation_fraction": 0, "heartbeat_s": 60}, "$.trigger.deviation_fraction"),
        ({"type": "deviation_heartbeat", "deviation_fraction": 0.01, "heartbeat_s": 0.5}, "$.trigger.heartbeat_s"),
        ({"type": "deviation_heartbeat", "deviation_fraction": 0.01}, "$.trigger.heartbeat_s"),
        (
            {
                "type": "deviation_heartbeat",
                "deviation_fraction": 0.01,
                "heartbeat_s": 60,
                "state": {"last_reported": 1.0},
            },
            "$.trigger.state.last_reported",
        ),
        ({"type": "deviation_heartbeat", "deviation_fraction": 0.01, "heartbeat_s": 60, "level": 3}, "$.trigger.level"),
        ({"type": "deviation_heartbeat", "deviation_fraction": 0.01, "heartbeat_s": 60, "id": ""}, "$.trigger.id"),
        ({"type": "price"}, "$.trigger.type"),
    ],
)
def test_invalid_observation_triggers_name_the_json_path(body: object, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        trigger_from_dict(body, path="$.trigger")
    assert info.value.field == field


def test_invalid_observations_are_refused() -> None:
    trigger = ThresholdTrigger(40)
    for value in (float("nan"), float("inf"), "41", None, True):
        with pytest.raises(InvalidInput) as info:
            trigger.evaluate(value, T0)  # type: ignore[arg-type]
        assert info.value.field == "value"
    with pytest.raises(InvalidInput) as info:
        trigger.evaluate(41, datetime(2026, 1, 1))
    assert info.value.field == "at"
    with pytest.raises(InvalidInput) as info:
        ThresholdTrigger.from_dict({"type": "deviation_heartbeat", "deviation_fraction": 0.1, "heartbeat_s": 60})
    assert info.value.field == "$.type"
