"""The built-in scanners: ``relative_volume``, ``breakout``, ``technical``.

Each compiles to one DuckDB statement over ``bars`` (the newest bars of every symbol of the universe,
see :mod:`dccd.scan.engine`): no per-symbol Python loop. A signal is about the newest bar of a symbol.

Window rule (DuckDB 2.0.1 bug, see ANALYTICS.md): two window functions over the same ``PARTITION BY``
with different ``ORDER BY`` followed by a filter fail with ``PhysicalWindow::GetPartitionData``; so every
window over ``(exchange, symbol)`` here is ordered by ``ts`` ascending, and the newest bar is found by
``ts = last_ts`` (never a descending ``row_number``). ``tests/scan/test_builtin.py`` keeps a test that
would catch the bug. Per-symbol tails that need no window (RVOL, Donchian) are ``list`` aggregates.

Recursive indicators (EMA, MACD, Wilder RSI/ATR) are folded with ``list_reduce`` over the tail of
bars each symbol has in ``bars``; a tail of K bars leaves a seeding error of about (1 − α)^K, so the
tail is sized for (1 − α)^K < 1e-10 (1e-12 for MACD) (:func:`settle_bars`), TA-Lib's "unstable period".
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
import pyarrow as pa

from dccd.domain.timeutil import NS_PER_S

from .contract import ScanContext, ScannerBase

DAY_S = 86_400
EPS = 1e-10
"""Seed weight left in a recursive average: its relative error is about this × (seed − value)/value."""
MACD_EPS = 1e-12
"""MACD is a small difference of two averages of the price: its seed error is ~20× larger relative to it."""
TECHNICAL_CONDITIONS = (
    "rsi_oversold",
    "rsi_overbought",
    "ema_cross_up",
    "ema_cross_down",
    "macd_cross_up",
    "macd_cross_down",
    "bb_squeeze",
)
_W = "WINDOW w AS (PARTITION BY exchange, symbol ORDER BY ts)"


def settle_bars(alpha: float, eps: float = EPS) -> int:
    """Bars after which a seed's weight in a recursive average of factor ``alpha`` is below ``eps``."""
    return math.ceil(math.log(eps) / math.log(1.0 - alpha))


def _q(x: float) -> str:
    return repr(float(x))


def _rows(n: int) -> str:
    return f"w ROWS BETWEEN {int(n)} PRECEDING AND 1 PRECEDING"


class RelativeVolumeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Parameters of ``relative_volume``."""

    lookback: int = 20
    """N: bars averaged before the newest one."""
    min_rvol: float = 2.0
    """A hit needs RVOL ≥ this."""
    at_time_days: int = 20
    """Days averaged for RVOL-at-time (0: not computed; only for spans below 1d)."""
    min_rvol_at_time: float | None = None
    """If set, a hit also needs RVOL-at-time ≥ this."""


class RelativeVolume(ScannerBase):
    """Relative volume: the newest bar's volume over the mean volume of the N bars before it.

    ``rvol = V_t / mean(V_{t-N..t-1})`` (N = ``lookback``, 20; the N previous bars must be stored).
    RVOL-at-time: the cumulative volume since the UTC day start up to the newest bar, over the mean of
    that same cumulative volume at the same time-of-day offset on the previous ``at_time_days`` days
    that have a bar there (null until that many days are stored). Values: ``volume``, ``mean_volume``,
    ``rvol``, ``cum_volume``, ``rvol_at_time``.
    """

    name = "relative_volume"
    version = "1"
    Config = RelativeVolumeConfig

    def tail_bars(self, config: Any, span_s: int) -> int:
        """N + 1 bars, or the ``at_time_days`` + 1 days RVOL-at-time needs."""
        c: RelativeVolumeConfig = config
        at_time = (c.at_time_days + 1) * (DAY_S // span_s) if c.at_time_days and span_s < DAY_S else 0
        return max(c.lookback + 1, at_time)

    def scan(self, ctx: ScanContext, config: Any) -> pa.Table:
        """One statement: the volume windows, the last bar per symbol, the threshold."""
        c: RelativeVolumeConfig = config
        n, d, day = int(c.lookback), int(c.at_time_days), DAY_S * NS_PER_S
        at_time = d > 0 and ctx.span_ns < day
        span = ctx.span_ns
        sql = f"""
, _v AS (
    SELECT exchange, symbol, max(ts) AS ts, list(volume ORDER BY ts) AS v
    FROM bars WHERE ts > last_ts - {(n + 1) * span} GROUP BY exchange, symbol),
_rv AS (
    SELECT exchange, symbol, ts, v[len(v)] AS volume, list_avg(list_slice(v, 1, len(v) - 1)) AS mean_volume,
        len(v) - 1 AS n_prev
    FROM _v),
_cum AS (
    SELECT exchange, symbol, ts // {day} AS d, last_ts // {day} AS today, sum(volume) AS cum
    FROM bars WHERE {str(at_time).lower()} AND ts % {day} <= last_ts % {day} AND ts // {day} >= last_ts // {day} - {d}
    GROUP BY exchange, symbol, d, today),
_at AS (
    SELECT exchange, symbol, max(cum) FILTER (WHERE d = today) AS cum_volume,
        avg(cum) FILTER (WHERE d < today) AS mean_cum, count(*) FILTER (WHERE d < today) AS n_days
    FROM _cum GROUP BY exchange, symbol)
SELECT r.exchange, r.symbol, r.ts, r.volume, r.mean_volume, r.volume / r.mean_volume AS rvol, a.cum_volume,
    CASE WHEN a.n_days = {d} AND a.mean_cum > 0 THEN a.cum_volume / a.mean_cum END AS rvol_at_time
FROM _rv r LEFT JOIN _at a ON a.exchange = r.exchange AND a.symbol = r.symbol
WHERE r.n_prev = {n} AND r.mean_volume > 0 AND r.volume / r.mean_volume >= {_q(c.min_rvol)}
"""
        if c.min_rvol_at_time is not None:
            sql += f" AND rvol_at_time >= {_q(c.min_rvol_at_time)}"
        return ctx.query(sql)  # type: ignore[attr-defined]


class BreakoutConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Parameters of ``breakout``."""

    lookback: int = 20
    """N: the Donchian channel of the N bars before the newest (55 for the slow system)."""
    direction: Literal["both", "up", "down"] = "both"
    """``up``: breakouts only, ``down``: breakdowns only."""
    min_rvol: float | None = None
    """If set, a hit also needs the newest bar's RVOL (over ``rvol_lookback`` bars) ≥ this."""
    rvol_lookback: int = 20


class Breakout(ScannerBase):
    """Donchian breakout: the newest close above the highest high of the N bars before it (N = 20).

    Breakdown: the close below their lowest low. ``direction`` picks one or both; with ``min_rvol`` a
    hit must also trade RVOL ≥ k (volume over the mean of the ``rvol_lookback`` bars before). The N
    previous bars must be stored. Values: ``direction`` (``up``/``down``), ``close``,
    ``channel_high``, ``channel_low``, ``rvol``.
    """

    name = "breakout"
    version = "1"
    Config = BreakoutConfig

    def tail_bars(self, config: Any, span_s: int) -> int:
        """The channel and the RVOL window, plus the newest bar."""
        c: BreakoutConfig = config
        return max(c.lookback, c.rvol_lookback) + 1

    def scan(self, ctx: ScanContext, config: Any) -> pa.Table:
        """One statement: channel windows, the last bar per symbol, the crossing."""
        c: BreakoutConfig = config
        n, r = int(c.lookback), int(c.rvol_lookback)
        up = "close > channel_high" if c.direction in ("both", "up") else "false"
        down = "close < channel_low" if c.direction in ("both", "down") else "false"
        confirm = f" AND rvol >= {_q(c.min_rvol)}" if c.min_rvol is not None else ""
        m = max(n, r)
        sql = f"""
, _l AS (
    SELECT exchange, symbol, max(ts) AS ts, list(high ORDER BY ts) AS h, list(low ORDER BY ts) AS lo,
        list(close ORDER BY ts) AS c, list(volume ORDER BY ts) AS v
    FROM bars WHERE ts > last_ts - {(m + 1) * ctx.span_ns} GROUP BY exchange, symbol),
_b AS (
    SELECT exchange, symbol, ts, c[len(c)] AS close, len(c) - 1 AS n_prev,
        list_max(list_slice(h, len(h) - {n}, len(h) - 1)) AS channel_high,
        list_min(list_slice(lo, len(lo) - {n}, len(lo) - 1)) AS channel_low,
        CASE WHEN len(v) > {r} THEN v[len(v)] / nullif(list_avg(list_slice(v, len(v) - {r}, len(v) - 1)), 0) END
            AS rvol
    FROM _l)
SELECT exchange, symbol, ts, CASE WHEN {up} THEN 'up' ELSE 'down' END AS direction,
    close, channel_high, channel_low, rvol
FROM _b WHERE n_prev >= {n} AND (({up}) OR ({down})){confirm}
"""
        return ctx.query(sql)  # type: ignore[attr-defined]


class TechnicalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Parameters of ``technical``."""

    conditions: tuple[str, ...] = TECHNICAL_CONDITIONS
    """Which conditions make hits (any of them; one signal row per condition met)."""
    rsi_period: int = 14
    rsi_oversold: float = 30.0
    rsi_overbought: float = 70.0
    ema_fast: int = 20
    ema_slow: int = 50
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_k: float = 2.0
    squeeze_lookback: int = 120
    """A squeeze is a Bollinger width below its lowest of this many bars before."""
    atr_period: int = 14

    def __post_init__(self) -> None:
        bad = [c for c in self.conditions if c not in TECHNICAL_CONDITIONS]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a condition ({' '.join(TECHNICAL_CONDITIONS)})")
        for key in ("rsi_period", "ema_fast", "ema_slow", "macd_fast", "macd_slow", "macd_signal", "atr_period"):
            if getattr(self, key) < 2:
                raise ValueError(f"{key} must be at least 2")


class Technical(ScannerBase):
    """Technical conditions on the newest bar, with TA-Lib's definitions.

    - RSI (Wilder, 14): average gain and loss seeded by the SMA of the first 14 changes, then
      ``avg = (avg·(n−1) + x)/n``; ``rsi = 100·gain/(gain+loss)``; oversold < 30, overbought > 70.
    - EMA cross (20/50): ``ema = ema + 2/(n+1)·(close − ema)`` (seeded by the first close of the tail);
      a cross is a sign change of ``fast − slow`` between the previous and the newest bar.
    - MACD (12/26/9): ``macd = ema12 − ema26``, ``signal = ema9(macd)``, ``hist = macd − signal``; a
      cross is a sign change of ``hist``.
    - Bollinger (20, 2σ): SMA20 ± 2 population σ; ``bb_width = (upper − lower)/mid``; a squeeze is a
      width below the lowest of the ``squeeze_lookback`` (120) bars before.
    - ATR (Wilder, 14): Wilder average of ``TR = max(H − L, |H − C₋₁|, |L − C₋₁|)`` seeded by the SMA of
      the first 14 TRs (a value, not a condition).

    Values: ``signal`` (the condition), ``close``, ``rsi``, ``ema_fast``, ``ema_slow``, ``macd``,
    ``macd_signal``, ``macd_hist``, ``bb_upper``, ``bb_mid``, ``bb_lower``, ``bb_width``, ``atr``.
    Recursive values equal TA-Lib's (to ~1e-11 relative) once a symbol holds :meth:`tail_bars` bars.
    """

    name = "technical"
    version = "1"
    Config = TechnicalConfig

    def tail_bars(self, config: Any, span_s: int) -> int:
        """Enough bars for every recursive average to forget its seed (see :func:`settle_bars`)."""
        c: TechnicalConfig = config
        return 1 + max(
            c.rsi_period + settle_bars(1 / c.rsi_period),
            c.atr_period + settle_bars(1 / c.atr_period),
            settle_bars(2 / (c.ema_slow + 1)),
            settle_bars(2 / (max(c.macd_slow, c.macd_fast) + 1), MACD_EPS)
            + settle_bars(2 / (c.macd_signal + 1), MACD_EPS),
            c.bb_period + c.squeeze_lookback,
        )

    def indicators_sql(self, config: Any, span_ns: int) -> str:
        """The ``SELECT`` (after ``bars_sql``) of every indicator on each symbol's newest bar."""
        return self._ctes(config, span_ns) + " SELECT * FROM _ind"

    def _ctes(self, config: Any, span: int) -> str:
        c: TechnicalConfig = config
        nr, na, nb, sq = int(c.rsi_period), int(c.atr_period), int(c.bb_period), int(c.squeeze_lookback)
        kf, ks = 2 / (c.ema_fast + 1), 2 / (c.ema_slow + 1)
        mf, ms, mg = 2 / (c.macd_fast + 1), 2 / (c.macd_slow + 1), 2 / (c.macd_signal + 1)
        return f"""
, _bb AS (
    SELECT exchange, symbol, ts,
        avg(close) OVER (w ROWS BETWEEN {nb - 1} PRECEDING AND CURRENT ROW) AS bb_mid,
        stddev_pop(close) OVER (w ROWS BETWEEN {nb - 1} PRECEDING AND CURRENT ROW) AS bb_sd,
        count(*) OVER (w ROWS BETWEEN {nb - 1} PRECEDING AND CURRENT ROW) AS bb_n,
        ts = last_ts AS is_last
    FROM bars WHERE ts > last_ts - {(nb + sq + 1) * span} {_W}),
_bw AS (
    SELECT *, CASE WHEN bb_n = {nb} THEN 2 * {_q(c.bb_k)} * bb_sd / bb_mid END AS bb_width,
        min(CASE WHEN bb_n = {nb} THEN 2 * {_q(c.bb_k)} * bb_sd / bb_mid END) OVER ({_rows(sq)}) AS width_low,
        count(bb_n = {nb} OR NULL) OVER ({_rows(sq)}) AS width_n
    FROM _bb {_W}),
_x AS (
    SELECT exchange, symbol, ts, close::DOUBLE AS close, close - lag(close) OVER w AS d,
        greatest(high - low, abs(high - lag(close) OVER w), abs(low - lag(close) OVER w))::DOUBLE AS tr
    FROM bars {_W}),
_l AS (
    SELECT exchange, symbol, list(close ORDER BY ts) AS c,
        list(greatest(d, 0.0)::DOUBLE ORDER BY ts) FILTER (WHERE d IS NOT NULL) AS g,
        list(greatest(-d, 0.0)::DOUBLE ORDER BY ts) FILTER (WHERE d IS NOT NULL) AS ls,
        list(tr ORDER BY ts) FILTER (WHERE d IS NOT NULL) AS tr
    FROM _x GROUP BY exchange, symbol),
_r AS MATERIALIZED (
    SELECT exchange, symbol, c[len(c)] AS close,
        list_reduce(list_slice(g, {nr + 1}, len(g)), lambda acc, x: (acc * {nr - 1} + x) / {nr},
            list_avg(list_slice(g, 1, {nr}))) AS avg_gain,
        list_reduce(list_slice(ls, {nr + 1}, len(ls)), lambda acc, x: (acc * {nr - 1} + x) / {nr},
            list_avg(list_slice(ls, 1, {nr}))) AS avg_loss,
        list_reduce(list_slice(tr, {na + 1}, len(tr)), lambda acc, x: (acc * {na - 1} + x) / {na},
            list_avg(list_slice(tr, 1, {na}))) AS atr,
        list_reduce(list_slice(c, 2, len(c)),
            lambda acc, x: {{'f': acc.f + {_q(kf)} * (x - acc.f), 's': acc.s + {_q(ks)} * (x - acc.s),
                            'mf': acc.mf + {_q(mf)} * (x - acc.mf), 'ms': acc.ms + {_q(ms)} * (x - acc.ms),
                            'g': acc.g + {_q(mg)} * ((acc.mf + {_q(mf)} * (x - acc.mf))
                                                     - (acc.ms + {_q(ms)} * (x - acc.ms)) - acc.g)}},
            {{'f': c[1], 's': c[1], 'mf': c[1], 'ms': c[1], 'g': 0.0::DOUBLE}}) AS e,
        len(c) AS n_bars
    FROM _l),
_ind AS (
SELECT b.exchange, b.symbol, b.ts, r.close,
    CASE WHEN r.avg_gain + r.avg_loss = 0 THEN 0.0 ELSE 100 * r.avg_gain / (r.avg_gain + r.avg_loss) END AS rsi,
    r.e.f AS ema_fast, r.e.s AS ema_slow,
    (r.e.f - {_q(kf)} * r.close) / {_q(1 - kf)} - (r.e.s - {_q(ks)} * r.close) / {_q(1 - ks)} AS ema_prev_diff,
    r.e.mf - r.e.ms AS macd, r.e.g AS macd_signal, r.e.mf - r.e.ms - r.e.g AS macd_hist,
    (r.e.mf - {_q(mf)} * r.close) / {_q(1 - mf)} - (r.e.ms - {_q(ms)} * r.close) / {_q(1 - ms)}
        - (r.e.g - {_q(mg)} * (r.e.mf - r.e.ms)) / {_q(1 - mg)} AS macd_prev_hist,
    b.bb_mid + {_q(c.bb_k)} * b.bb_sd AS bb_upper, b.bb_mid, b.bb_mid - {_q(c.bb_k)} * b.bb_sd AS bb_lower,
    b.bb_width, b.width_low, b.width_n, r.atr, r.n_bars
FROM _bw b JOIN _r r ON b.exchange = r.exchange AND b.symbol = r.symbol
WHERE b.is_last)
"""

    def scan(self, ctx: ScanContext, config: Any) -> pa.Table:
        """One statement: indicators per symbol, then one row per condition met."""
        c: TechnicalConfig = config
        need = 1 + max(c.rsi_period, c.atr_period, c.macd_slow, c.ema_slow, c.bb_period)
        tests = {
            "rsi_oversold": f"rsi < {_q(c.rsi_oversold)}",
            "rsi_overbought": f"rsi > {_q(c.rsi_overbought)}",
            "ema_cross_up": "ema_prev_diff <= 0 AND ema_fast - ema_slow > 0",
            "ema_cross_down": "ema_prev_diff >= 0 AND ema_fast - ema_slow < 0",
            "macd_cross_up": "macd_prev_hist <= 0 AND macd_hist > 0",
            "macd_cross_down": "macd_prev_hist >= 0 AND macd_hist < 0",
            "bb_squeeze": f"width_n = {int(c.squeeze_lookback)} AND bb_width < width_low",
        }
        cases = ", ".join(f"CASE WHEN {tests[k]} THEN '{k}' END" for k in c.conditions)
        sql = (
            self._ctes(config, ctx.span_ns)
            + f", _sig AS (SELECT *, unnest(list_filter([{cases}]::VARCHAR[], lambda x: x IS NOT NULL)) AS signal"
            f" FROM _ind WHERE n_bars >= {need})"
            " SELECT exchange, symbol, ts, signal, close, rsi, ema_fast, ema_slow, macd, macd_signal, macd_hist,"
            " bb_upper, bb_mid, bb_lower, bb_width, atr FROM _sig"
        )
        return ctx.query(sql)  # type: ignore[attr-defined]
