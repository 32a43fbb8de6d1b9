"""Time expressions of the config and the API: durations (``every: 15m``) and window bounds
(ISO date/datetime, ``-30d``, ``now``, ``last``, ``origin``)."""

from __future__ import annotations

import re

from dccd.domain.timeutil import GENESIS_NS, NS_PER_S, history_problem, parse_iso_ns

# fullmatch everywhere: `$` would accept a trailing newline (YAML block scalars end in one).
_DURATION = re.compile(r"(?P<n>[0-9]{1,15})(?P<unit>s|m|h|d|w)")
# At most 15 digits: more is no moment anyway, and int() of a 100 KB digit string is slow (or refused).
_RELATIVE = re.compile(r"-(?P<n>[0-9]{1,15})(?P<unit>s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_s(text: str) -> int:
    """``90s``/``15m``/``1h``/``1d``/``1w`` to seconds.

    Raises:
        ValueError: not a positive duration.
    """
    m = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if m is None or int(m.group("n")) == 0:
        raise ValueError(f"{shown(text)} is not a positive duration (e.g. 90s 15m 1h 1d 1w)")
    return int(m.group("n")) * _UNIT_S[m.group("unit")]


def _relative_ns(text: str, now_ns: int) -> int | None:
    m = _RELATIVE.fullmatch(text)
    return None if m is None else now_ns - int(m.group("n")) * _UNIT_S[m.group("unit")] * NS_PER_S


def shown(text: object, limit: int = 64) -> str:
    """``repr(text)``, cut to ``limit`` characters: user input echoed in a one-line error stays short."""
    if isinstance(text, str) and len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _bound_ns(text: str, now_ns: int, usage: str, too_early: str = "") -> int:
    """A start/end expression as ns, checked to be a moment of exchange history (never an int64 overflow)."""
    if not isinstance(text, str):
        raise ValueError(f"{shown(text)} is not {usage}")
    ns = _relative_ns(text, now_ns)
    if ns is None:
        try:
            ns = parse_iso_ns(text)
        except ValueError:
            raise ValueError(f"{shown(text)} is not {usage}") from None
    problem = history_problem(ns, now_ns)
    if problem is not None:
        raise ValueError(f"{shown(text)} {problem}{too_early if ns < GENESIS_NS else ''}")
    return ns


def resolve_start(text: str | None, now_ns: int) -> int | str | None:
    """Resolve a start bound: ISO -> ns, ``-30d`` -> now - 30 d, ``last``/``origin`` kept.

    A time must lie between 2009-01-03 and one day after ``now_ns``
    (:func:`~dccd.domain.timeutil.history_problem`).

    Raises:
        ValueError: not a valid start (one line naming the value).
    """
    if text is None or text in ("last", "origin"):
        return text
    usage = "a start (ISO date/datetime, -30d, last or origin)"
    return _bound_ns(text, now_ns, usage, "; use origin for the exchange's first data")


def resolve_end(text: str | None, now_ns: int) -> int:
    """Resolve an end bound: None/``now`` -> now, ``-1h`` -> now - 1 h, ISO -> ns.

    Same range as :func:`resolve_start`.

    Raises:
        ValueError: not a valid end (one line naming the value).
    """
    if text is None or text == "now":
        return now_ns
    return _bound_ns(text, now_ns, "an end (ISO date/datetime, -1h or now)")


def is_relative(text: str) -> bool:
    """True for a bound relative to now (``now``, ``-30d``), whose distance to another such bound is fixed."""
    return text == "now" or _RELATIVE.fullmatch(text) is not None
