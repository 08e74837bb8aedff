"""Cron expressions and their ticks in a time zone, as cron runs them across DST.

Five fields (minute hour day-of-month month day-of-week) or a shortcut
(@hourly ...). Day-of-month and day-of-week, when both are restricted, match
either (Vixie cron). Across daylight-saving changes, like cron:

- a local time skipped by the spring-forward jump fires once, at the jump;
- a local time that occurs twice in the fall-back hour fires once (the first)
  for a job at a fixed hour, and at both for a job whose hour is ``*``, whose
  ticks are about elapsed time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SHORTCUTS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _DAYS))
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
"""The most days each month can have (February: in a leap year)."""
_SEARCH_DAYS = 366 * 8  # enough for Feb 29 (every 4 years, 8 across a skipped century)


class CronError(ValueError):
    """A cron expression or time zone is wrong; the message names the part."""


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool
    every_hour: bool

    def matches_day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        return dom and dow


def parse(expression: str) -> Cron:
    text = SHORTCUTS.get(expression.strip().lower(), expression)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"cron {expression!r} must have five fields (minute hour day-of-month "
                        "month day-of-week) or be @hourly, @daily, @weekly, @monthly, @yearly")
    sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    dom_restricted, dow_restricted = parts[2] != "*", parts[4] != "*"
    # With both restricted either matches (Vixie), so only day-of-month alone can rule
    # out every day: refuse that here rather than fail at every scheduling pass.
    if not (dom_restricted and dow_restricted) and not any(
            d <= _MONTH_DAYS[m - 1] for m in sets[3] for d in sets[2]):
        raise CronError(f"cron {expression!r} never fires: day-of-month {parts[2]!r} does not "
                        f"occur in month {parts[3]!r}")
    return Cron(expression=expression, minutes=sets[0], hours=sets[1], days=sets[2],
                months=sets[3], weekdays=weekdays, dom_restricted=dom_restricted,
                dow_restricted=dow_restricted, every_hour=parts[1] == "*")


def _field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = lo, hi
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = _value(a, names), _value(b, names)
            else:
                start = _value(body, names)
                end = hi if step_text else start
        except ValueError:
            raise CronError(f"cron {name} field {text!r}: not a number, range, list or "
                            "step") from None
        if step < 1 or not lo <= start <= hi or not lo <= end <= hi or start > end:
            raise CronError(f"cron {name} field {text!r}: values must be within {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: dict[str, int]) -> int:
    return names[text] if text in names else int(text)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # OSError: some tzdata releases raise IsADirectoryError for a region ("America").
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as UTC or "
                        "Europe/Paris") from None


def _instants(cron: Cron, local: datetime, tz: ZoneInfo) -> list[datetime]:
    """The UTC instants at which one local wall-clock tick fires (1 or 2 of them)."""
    first = local.replace(tzinfo=tz, fold=0)
    second = local.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local:
        return [_jump_instant(local, tz)]  # skipped by a spring-forward jump
    both = sorted([first.astimezone(UTC), second.astimezone(UTC)])
    return both if cron.every_hour else both[:1]  # repeated by a fall-back


def _jump_instant(local: datetime, tz: ZoneInfo) -> datetime:
    """The instant a spring-forward gap containing ``local`` ends."""
    probe = local
    while True:
        probe += timedelta(minutes=1)
        aware = probe.replace(tzinfo=tz)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == probe:
            return aware.astimezone(UTC)


def next_tick(cron: Cron, tz: ZoneInfo, after: datetime) -> datetime:
    """The first tick strictly after ``after`` (aware), as an aware UTC datetime."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    # Start an hour early in local time: a fall-back may put ticks there after `after`.
    start = (after.astimezone(tz) - timedelta(hours=2)).replace(tzinfo=None)
    day = start.date()
    for _ in range(_SEARCH_DAYS):
        if cron.matches_day(day):
            found: list[datetime] = []
            for hour in sorted(cron.hours):
                for minute in sorted(cron.minutes):
                    local = datetime(day.year, day.month, day.day, hour, minute)
                    if local < start:
                        continue
                    found.extend(t for t in _instants(cron, local, tz) if t > after)
                if found:
                    return min(found)
        day += timedelta(days=1)
    raise CronError(f"cron {cron.expression!r} never fires (e.g. 30 February)")


def ticks_between(cron: Cron, tz: ZoneInfo, after: datetime, until: datetime,
                  limit: int = 1000) -> list[datetime]:
    """Ticks in (after, until], oldest first, at most ``limit`` (the newest kept)."""
    out: list[datetime] = []
    t = after
    while True:
        t = next_tick(cron, tz, t)
        if t > until:
            return out
        out.append(t)
        if len(out) > limit:
            out.pop(0)
