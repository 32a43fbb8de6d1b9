"""cron(5) meaning on APScheduler 3: Sunday is 0 and 7, and day-of-month OR day-of-week."""

from __future__ import annotations

import datetime as dt

import pytest

from dccd.cron import cron_trigger, weekday_field

MONDAY = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)  # 2024-01-01 was a Monday


def fires(expr: str, n: int = 6, start: dt.datetime = MONDAY) -> list[str]:
    """The next ``n`` fire times of ``expr`` from ``start`` (inclusive), as 'Mon 2024-01-01 00:05'."""
    trigger, out, t = cron_trigger(expr), [], start
    for _ in range(n):
        nxt = trigger.get_next_fire_time(None, t)
        assert nxt is not None
        out.append(nxt.strftime("%a %Y-%m-%d %H:%M"))
        t = nxt + dt.timedelta(seconds=1)
    return out


@pytest.mark.parametrize("expr", ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 * * SUN"])
def test_sunday_is_0_and_7(expr: str) -> None:
    """Weekday 0 and 7 are Sunday as in cron(5) (APScheduler's from_crontab would say Monday)."""
    assert fires(expr, 2) == ["Sun 2024-01-07 00:00", "Sun 2024-01-14 00:00"]


def test_weekday_ranges_lists_and_steps() -> None:
    """Ranges, lists and steps count from Sunday=0 like cron(5)."""
    assert weekday_field("1-5") == "mon,tue,wed,thu,fri"
    assert weekday_field("*/2") == "sun,tue,thu,sat"
    assert weekday_field("5-7") == "sun,fri,sat"
    assert weekday_field("2/3") == "tue,fri"
    assert weekday_field("0,3,sat") == "sun,wed,sat"
    assert weekday_field("*") == "*"
    assert fires("30 9 * * 1-5", 6) == [
        "Mon 2024-01-01 09:30",
        "Tue 2024-01-02 09:30",
        "Wed 2024-01-03 09:30",
        "Thu 2024-01-04 09:30",
        "Fri 2024-01-05 09:30",
        "Mon 2024-01-08 09:30",
    ]


def test_day_of_month_or_weekday() -> None:
    """With both day fields restricted the job fires when either matches (cron(5)), not only when both do."""
    assert fires("0 0 13 * fri", 4) == [
        "Fri 2024-01-05 00:00",
        "Fri 2024-01-12 00:00",
        "Sat 2024-01-13 00:00",
        "Fri 2024-01-19 00:00",
    ]


def test_plain_schedules() -> None:
    """Minute/hour schedules fire where cron(5) says, in UTC."""
    assert fires("5 * * * *", 3) == ["Mon 2024-01-01 00:05", "Mon 2024-01-01 01:05", "Mon 2024-01-01 02:05"]
    assert fires("5 0 * * *", 2) == ["Mon 2024-01-01 00:05", "Tue 2024-01-02 00:05"]
    assert fires("0 0 29 2 *", 2) == ["Thu 2024-02-29 00:00", "Tue 2028-02-29 00:00"]


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("* * * *", "is not a cron expression: it has 4 fields, not 5"),
        ("0 0 * * 8", "is not a cron expression: '8' is not a weekday (0-7 or sun-sat)"),
        ("0 0 * * 5-1", "is not a cron expression: '5-1' is a backwards range"),
        ("0 0 * * */0", "is not a cron expression: '*/0' has a bad step"),
        ("0 0 31 4 *", "never fires (no such date)"),
        ("0 25 * * *", "is not a cron expression: error validating expression '25'"),
    ],
)
def test_rejects(expr: str, why: str) -> None:
    """Malformed or never-firing expressions raise ValueError naming the expression."""
    with pytest.raises(ValueError) as info:
        cron_trigger(expr)
    assert str(info.value).startswith(f"{expr!r} {why}")
