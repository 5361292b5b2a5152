"""Two kinds of duration, each named, and one display format."""

from __future__ import annotations

import pytest

from planfleet.durations import (
    format_minutes,
    format_seconds,
    parse_wall_seconds,
    parse_work_minutes,
)


@pytest.mark.parametrize(("text", "minutes"), [
    (45, 45.0), ("45", 45.0), ("45m", 45.0), ("2h", 120.0), ("1h30m", 90.0), ("90 min", 90.0),
    ("1d", 480.0), ("1w", 2400.0), ("1.5h", 90.0), ("0", 0.0), ("1d 2h", 600.0)])
def test_work_time_a_day_is_eight_hours(text, minutes):
    assert parse_work_minutes(text) == minutes


@pytest.mark.parametrize(("text", "seconds"), [
    (30, 30.0), ("30", 30.0), ("45s", 45.0), ("30m", 1800.0), ("2h", 7200.0),
    ("1d", 86400.0), ("1w", 7 * 86400.0), ("1h30m", 5400.0), ("1.5d", 129600.0)])
def test_wall_clock_a_day_is_twenty_four_hours(text, seconds):
    assert parse_wall_seconds(text) == seconds


def test_the_same_text_differs_only_by_its_kind():
    assert parse_work_minutes("1d") * 60 == 8 * 3600
    assert parse_wall_seconds("1d") == 24 * 3600


@pytest.mark.parametrize("bad", ["", "soon", "1x", "-5", "h", True, None, [1], float("inf")])
def test_bad_durations_say_what_they_are(bad):
    with pytest.raises(ValueError, match="timeout"):
        parse_wall_seconds(bad, "timeout")


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (0.25, "0.25s"), (45, "45s"), (12.5, "12.5s"), (60, "1m"), (750, "12m30s"),
    (5400, "1h30m"), (36000, "10h"), (180000, "50h"), (None, "")])
def test_one_display_format(seconds, shown):
    assert format_seconds(seconds) == shown


def test_minutes_show_as_seconds_do():
    assert format_minutes(600) == "10h" == format_seconds(36000)
    assert format_minutes(90) == "1h30m"
