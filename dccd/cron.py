"""Standard 5-field cron (UTC) on top of APScheduler 3 triggers.

APScheduler 3's ``CronTrigger.from_crontab`` differs from cron(5) in two ways
that silently move a schedule: its numeric weekdays start at Monday (cron:
0 and 7 are Sunday, so ``0 0 * * 0`` would run on Mondays), and when both
day-of-month and day-of-week are restricted it requires both (cron: either).
:func:`cron_trigger` gives cron(5) meaning: weekdays are translated to names
and the two day fields are OR-combined as Vixie cron does.
"""

from __future__ import annotations

import datetime as dt

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_PROBE_FROM = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _day(token: str) -> int:
    if token.isdigit() and token.isascii() and int(token) <= 7:
        return int(token)
    if token.lower() in _DAYS:
        return _DAYS.index(token.lower())
    raise ValueError(f"{token!r} is not a weekday (0-7 or sun-sat)")


def weekday_field(field: str) -> str:
    """Translate a cron(5) day-of-week field to APScheduler's (weekday names).

    Raises:
        ValueError: not a day-of-week field.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        base, slash, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and step_text.isascii() else 0
        if slash and step == 0:
            raise ValueError(f"{item!r} has a bad step (a positive integer after /)")
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, hi = _day(a), _day(b)
        else:
            lo = _day(base)
            hi = 7 if slash else lo  # "2/3" means 2-7/3, as in Vixie cron
        if lo > hi:
            raise ValueError(f"{item!r} is a backwards range")
        days.update(d % 7 for d in range(lo, hi + 1, step or 1))
    return ",".join(_DAYS[d] for d in sorted(days))


def cron_trigger(expr: str, timezone: str = "UTC") -> BaseTrigger:
    """A trigger firing as cron(5) would for ``minute hour day month weekday``.

    Raises:
        ValueError: ``'<expr>' is not a cron expression: <why>`` or ``... never fires``.
    """
    fields = expr.split() if isinstance(expr, str) else []
    try:
        if len(fields) != 5:
            n = len(fields)
            raise ValueError(f"it has {n} field{'' if n == 1 else 's'}, not 5 (minute hour day month weekday)")
        minute, hour, day, month, weekday = fields
        dow = weekday_field(weekday)

        def make(day_f: str, dow_f: str) -> CronTrigger:
            return CronTrigger(minute=minute, hour=hour, day=day_f, month=month, day_of_week=dow_f, timezone=timezone)

        trigger: BaseTrigger
        if day.startswith("*") or weekday.startswith("*"):
            trigger = make(day, dow)
        else:
            trigger = OrTrigger([make(day, "*"), make("*", dow)])
    except ValueError as exc:
        why = " ".join(str(exc).split())
        raise ValueError(f"{expr!r} is not a cron expression: {why[:1].lower()}{why[1:]}") from None
    if trigger.get_next_fire_time(None, _PROBE_FROM) is None:
        raise ValueError(f"{expr!r} never fires (no such date)")
    return trigger
