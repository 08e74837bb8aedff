"""Cron ticks across month ends, leap years and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfleet.cron import CronError, next_tick, parse, ticks_between, zone


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def local_ticks(expr: str, tz: str, start: datetime, end: datetime) -> list[str]:
    z = zone(tz)
    return [t.astimezone(z).strftime("%Y-%m-%d %H:%M %Z")
            for t in ticks_between(parse(expr), z, start, end)]


def test_hourly_and_shortcuts() -> None:
    assert next_tick(parse("@hourly"), zone("UTC"), utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1,
                                                                                   11, 0)
    assert next_tick(parse("@daily"), zone("UTC"), utc(2026, 1, 1, 0, 0)) == utc(2026, 1, 2)
    assert next_tick(parse("*/15 * * * *"), zone("UTC"), utc(2026, 1, 1, 10, 7)) == utc(
        2026, 1, 1, 10, 15)


@pytest.mark.parametrize(("alias", "after", "ticks"), [
    # 2026-01-07 is a Wednesday
    ("@weekly", utc(2026, 1, 7, 12), [utc(2026, 1, 11), utc(2026, 1, 18)]),
    ("@monthly", utc(2026, 1, 7, 12), [utc(2026, 2, 1), utc(2026, 3, 1)]),
    ("@yearly", utc(2026, 1, 7, 12), [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ("@annually", utc(2026, 1, 1), [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ("@midnight", utc(2026, 1, 7, 12), [utc(2026, 1, 8), utc(2026, 1, 9)]),
    ("@WEEKLY", utc(2026, 1, 11), [utc(2026, 1, 18), utc(2026, 1, 25)]),
])
def test_weekly_monthly_and_yearly_aliases(alias: str, after: datetime,
                                           ticks: list[datetime]) -> None:
    cron = parse(alias)
    first = next_tick(cron, zone("UTC"), after)
    assert [first, next_tick(cron, zone("UTC"), first)] == ticks


def test_aliases_tick_at_local_midnight() -> None:
    # Sunday 2026-01-11 00:00 in Paris is Saturday 23:00 UTC
    assert next_tick(parse("@weekly"), zone("Europe/Paris"), utc(2026, 1, 7)) == utc(
        2026, 1, 10, 23)
    assert next_tick(parse("@monthly"), zone("Europe/Paris"), utc(2026, 1, 7)) == utc(
        2026, 1, 31, 23)


def test_month_ends_and_leap_years() -> None:
    end_of_month = parse("0 12 31 * *")
    assert next_tick(end_of_month, zone("UTC"), utc(2026, 4, 1)) == utc(2026, 5, 31, 12)
    leap = parse("0 0 29 2 *")
    assert next_tick(leap, zone("UTC"), utc(2026, 3, 1)) == utc(2028, 2, 29)
    assert next_tick(parse("0 0 1 * *"), zone("UTC"), utc(2026, 12, 31, 23, 59)) == utc(2027,
                                                                                       1, 1)


def test_day_of_month_or_day_of_week_as_vixie_cron() -> None:
    # the 13th, or any Friday
    ticks = local_ticks("0 0 13 * fri", "UTC", utc(2026, 2, 1), utc(2026, 2, 28))
    assert ticks == ["2026-02-06 00:00 UTC", "2026-02-13 00:00 UTC",
                     "2026-02-20 00:00 UTC", "2026-02-27 00:00 UTC"]
    assert local_ticks("0 0 * * 7", "UTC", utc(2026, 3, 1), utc(2026, 3, 8)) == [
        "2026-03-08 00:00 UTC"], "7 is Sunday too"


def test_spring_forward_skipped_hour_fires_once_at_the_jump() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT
    daily = local_ticks("30 2 * * *", "America/New_York", utc(2026, 3, 7), utc(2026, 3, 10))
    assert daily == ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"]
    quarter = local_ticks("*/15 * * * *", "America/New_York", utc(2026, 3, 8, 6, 40),
                          utc(2026, 3, 8, 7, 20))
    assert quarter == ["2026-03-08 01:45 EST", "2026-03-08 03:00 EDT", "2026-03-08 03:15 EDT"]


def test_fall_back_repeated_hour_fixed_hour_fires_once_hourly_fires_twice() -> None:
    # New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST
    daily = local_ticks("30 1 * * *", "America/New_York", utc(2026, 10, 31), utc(2026, 11, 3))
    assert daily == ["2026-10-31 01:30 EDT", "2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]
    hourly = local_ticks("30 * * * *", "America/New_York", utc(2026, 11, 1, 4),
                         utc(2026, 11, 1, 8))
    assert hourly == ["2026-11-01 00:30 EDT", "2026-11-01 01:30 EDT", "2026-11-01 01:30 EST",
                      "2026-11-01 02:30 EST"]


@pytest.mark.parametrize(("expr", "message"), [
    ("* * *", "five fields"),
    ("61 * * * *", "minute field '61'"),
    ("* 24 * * *", "hour field"),
    ("* * 0 * *", "day-of-month field"),
    ("* * * foo *", "month field 'foo'"),
    ("*/0 * * * *", "minute field"),
])
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse(expr)


def test_unknown_timezone_and_impossible_dates() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")
    with pytest.raises(CronError, match="never fires"):
        next_tick(parse("0 0 30 2 *"), zone("UTC"), utc(2026, 1, 1))


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1),
                    timezones=st.just(UTC)),
       st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
       st.sampled_from(["*/7 * * * *", "0 */3 * * *", "30 1 * * *", "0 0 1 * *",
                        "15 2 * * 0"]))
def test_next_tick_is_after_and_strictly_increasing(after: datetime, tz: str, expr: str) -> None:
    cron, z = parse(expr), zone(tz)
    t1 = next_tick(cron, z, after)
    t2 = next_tick(cron, z, t1)
    assert after < t1 < t2
    assert t1.second == 0 and t1.microsecond == 0
