"""Deterministic synthetic market data for the fake Binance (pure functions, O(1) per row).

A market's trade tape starts at its listing time with trade id 0. Trades come
in *groups*: ``trades_per_ms`` consecutive ids share one millisecond, one
price and one side (one aggregate trade, id = group number), and a group
happens every ``every_ms``. Inside a *hole* ``[lo_ms, hi_ms)`` nothing trades
and no bar exists: the tape's clock skips the hole, ids stay consecutive.

Bars are synthetic per (market, span, open time), except their trade count,
which is the exact number of tape trades in the bar. Prices and quantities are
integers in 1e-8 units rendered as Binance's 8-decimal strings, so sums are exact.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from dccd.domain.spans import Span
from dccd.domain.timeutil import NS_PER_MS
from tests.fake import tape

UNIT = 10**8
_M64 = (1 << 64) - 1


def _step(base_units: int) -> int:
    """Price jitter step: 1e-3 of the base for BTC-sized prices, scaled down so cheap markets stay positive."""
    return min(100_000, max(1, base_units // 1_000_000))


def dec8(units: int) -> str:
    """``units * 1e-8`` as an 8-decimal string (``123`` -> ``'0.00000123'``)."""
    q, r = divmod(units, UNIT)
    return f"{q}.{r:08d}"


_D = '"%d.%08d"'  # one 8-decimal string field, formatted from divmod(units, UNIT)
_KLINE_ROW = "[%d," + ",".join([_D] * 5) + ",%d," + _D + ",%d," + _D + "," + _D + ',"0"]'
_TRADE_ROW = (
    '{"id":%d,"price":' + _D + ',"qty":' + _D + ',"quoteQty":' + _D + ',"time":%d,"isBuyerMaker":%s,"isBestMatch":true}'
)


def mix(x: int) -> int:
    """splitmix64: a well-spread 64-bit hash of an integer."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@dataclass(frozen=True)
class FakeMarket:
    """One listed market of the fake exchange."""

    native: str
    base: str
    quote: str
    listed_ms: int
    status: str = "TRADING"
    price_units: int = 30_000 * UNIT
    trades_per_ms: int = 3
    every_ms: int = 250


@dataclass
class Tape:
    """Trades and bars of one market, with holes (``[lo_ms, hi_ms)`` ascending, disjoint)."""

    market: FakeMarket
    holes: Sequence[tuple[int, int]] = ()
    _los: list[int] = field(init=False)
    _shift: list[int] = field(init=False)  # total hole length before hole k

    def __post_init__(self) -> None:
        holes = sorted(self.holes)
        for (_, hi), (lo, _) in itertools.pairwise(holes):
            if lo < hi:
                raise ValueError(f"holes overlap: {holes}")
        self.holes = holes
        self._los = [lo for lo, _ in holes]
        self._shift = [0]
        for lo, hi in holes:
            self._shift.append(self._shift[-1] + hi - lo)
        self._seed = mix(sum(ord(ch) << (8 * k) for k, ch in enumerate(self.market.native)))

    # --- time <-> tape clock (the tape clock has the holes squeezed out) ---

    def _to_real(self, v_ms: int) -> int:
        r = v_ms
        for lo, hi in self.holes:
            if r >= lo:
                r += hi - lo
        return r

    def _to_tape(self, t_ms: int) -> tuple[int, bool]:
        """Tape time of real ``t_ms`` and whether ``t_ms`` lies inside a hole."""
        k = bisect.bisect_right(self._los, t_ms)  # holes starting at or before t
        if k and t_ms < self.holes[k - 1][1]:
            lo = self.holes[k - 1][0]
            return lo - self._shift[k - 1], True
        return t_ms - self._shift[k], False

    def in_hole(self, t_ms: int) -> bool:
        """True when ``t_ms`` lies in a hole."""
        return self._to_tape(t_ms)[1]

    # --- trade groups ---

    def group_ms(self, g: int) -> int:
        """Real time of trade group ``g``."""
        return self._to_real(self.market.listed_ms + g * self.market.every_ms)

    def first_group_at(self, t_ms: int) -> int:
        """First group at or after ``t_ms`` (0 before the listing)."""
        v, _ = self._to_tape(t_ms)
        return max(0, -(-(v - self.market.listed_ms) // self.market.every_ms))

    def last_group_at(self, t_ms: int) -> int:
        """Last group at or before ``t_ms`` (-1 when none)."""
        v, inside = self._to_tape(t_ms)
        if inside:
            v -= 1  # the tape instant of a hole belongs to the hole's end
        if v < self.market.listed_ms:
            return -1
        return (v - self.market.listed_ms) // self.market.every_ms

    def head_id(self, now_ms: int) -> int:
        """Last trade id at or before ``now_ms`` (-1 when none yet)."""
        g = self.last_group_at(now_ms)
        k = self.market.trades_per_ms
        return g * k + k - 1 if g >= 0 else -1

    def trade_count(self, lo_ms: int, hi_ms: int) -> int:
        """Trades with time in ``[lo_ms, hi_ms]``."""
        if self.holes:
            first, last = self.first_group_at(lo_ms), self.last_group_at(hi_ms)
        else:  # the common case, inlined: this runs once per bar
            m = self.market
            first = max(0, -(-(lo_ms - m.listed_ms) // m.every_ms))
            last = (hi_ms - m.listed_ms) // m.every_ms if hi_ms >= m.listed_ms else -1
        return max(0, last - first + 1) * self.market.trades_per_ms

    def price(self, g: int) -> int:
        """Price of group ``g`` (1e-8 units)."""
        return self.market.price_units + (mix(self._seed ^ g) % 200_001 - 100_000) * _step(self.market.price_units)

    def qty(self, i: int) -> int:
        """Quantity of trade ``i`` (1e-8 units)."""
        return (mix(self._seed ^ (i << 1) ^ 0x5555) % 1_000_000 + 1) * 100

    def buyer_maker(self, g: int) -> bool:
        """isBuyerMaker of group ``g``."""
        return bool(mix(self._seed ^ g ^ 0xABCDEF) & 1)

    def trades_json(self, first: int, last: int) -> list[str]:
        """``/api/v3/historicalTrades`` rows of trades ``first..last`` (inclusive)."""
        k = self.market.trades_per_ms
        out: list[str] = []
        for g in range(first // k, last // k + 1):
            p, t = self.price(g), self.group_ms(g)
            bm = "true" if self.buyer_maker(g) else "false"
            pq = divmod(p, UNIT)
            for i in range(max(first, g * k), min(last, g * k + k - 1) + 1):
                q = self.qty(i)
                out.append(_TRADE_ROW % (i, *pq, *divmod(q, UNIT), *divmod(p * q // UNIT, UNIT), t, bm))
        return out

    def agg_json(self, g: int) -> str:
        """``/api/v3/aggTrades`` row of group ``g`` (aggregate id = group number)."""
        k = self.market.trades_per_ms
        first = g * k
        q = sum(self.qty(i) for i in range(first, first + k))
        bm = "true" if self.buyer_maker(g) else "false"
        return (
            f'{{"a":{g},"p":"{dec8(self.price(g))}","q":"{dec8(q)}","f":{first},"l":{first + k - 1},'
            f'"T":{self.group_ms(g)},"m":{bm},"M":true}}'
        )

    # --- bars ---

    def bar_opens(self, span: Span, start_ms: int | None, end_ms: int | None, limit: int, now_ms: int) -> list[int]:
        """Open times (ms) Binance's klines would return, ascending, at most ``limit``."""
        first = span.align(self.market.listed_ms * NS_PER_MS)
        last = span.align(now_ms * NS_PER_MS)
        if end_ms is not None:
            last = min(last, span.align(end_ms * NS_PER_MS))
        out: list[int] = []
        if start_ms is not None:
            t = max(first, span.align_up(start_ms * NS_PER_MS))
            while t <= last and len(out) < limit:
                k = bisect.bisect_right(self._los, t // NS_PER_MS)
                if k and t // NS_PER_MS < self.holes[k - 1][1]:
                    t = span.align_up(self.holes[k - 1][1] * NS_PER_MS)
                    continue
                out.append(t // NS_PER_MS)
                t = span.next(t)
            return out
        t = last
        while t >= first and len(out) < limit:
            k = bisect.bisect_right(self._los, t // NS_PER_MS)
            if k and t // NS_PER_MS < self.holes[k - 1][1]:
                t = span.align(self.holes[k - 1][0] * NS_PER_MS - 1)
                continue
            out.append(t // NS_PER_MS)
            t = span.add(t, -1)
        return out[::-1]

    def kline_json(self, span: Span, open_ms: int, now_ms: int) -> str:
        """The 12-column klines row of the bar opening at ``open_ms`` (the live bar counts trades up to now)."""
        close_ms = span.next(open_ms * NS_PER_MS) // NS_PER_MS - 1
        h = mix(self._seed ^ (open_ms * 31 + span.seconds))
        base, step = self.market.price_units, _step(self.market.price_units)
        o = base + (h % 200_001 - 100_000) * step
        c = base + ((h >> 18) % 200_001 - 100_000) * step
        hi = max(o, c) + ((h >> 36) % 1000) * step
        lo = min(o, c) - ((h >> 46) % 1000) * step
        v = ((h >> 8) % 10_000_000 + 1) * 1000
        taker = v * ((h >> 24) % 101) // 100
        n = self.trade_count(open_ms, min(close_ms, now_ms))
        qv, tq = v * c // UNIT, taker * c // UNIT
        return _KLINE_ROW % (
            open_ms,
            *divmod(o, UNIT),
            *divmod(hi, UNIT),
            *divmod(lo, UNIT),
            *divmod(c, UNIT),
            *divmod(v, UNIT),
            close_ms,
            *divmod(qv, UNIT),
            n,
            *divmod(taker, UNIT),
            *divmod(tq, UNIT),
        )

    # --- book ---

    def depth_json(self, now_ms: int, limit: int) -> str:
        """``/api/v3/depth`` body around the last trade price; ``lastUpdateId`` grows with time."""
        g = max(0, self.last_group_at(now_ms))
        mid = self.price(g)
        tick = 1_000_000  # 0.01
        update_id = 1_000_000 + (now_ms - self.market.listed_ms) // 10
        bids = ",".join(
            f'["{dec8(mid - k * tick)}","{dec8((mix(self._seed ^ k ^ update_id) % 1000 + 1) * 1_000_000)}"]'
            for k in range(1, limit + 1)
        )
        asks = ",".join(
            f'["{dec8(mid + k * tick)}","{dec8((mix(self._seed ^ -k ^ update_id) % 1000 + 1) * 1_000_000)}"]'
            for k in range(1, limit + 1)
        )
        return f'{{"lastUpdateId":{update_id},"bids":[{bids}],"asks":[{asks}]}}'


def _units(text: str) -> int:
    """An 8-decimal string back to 1e-8 units."""
    whole, _, frac = text.partition(".")
    return int(whole) * UNIT + int(frac.ljust(8, "0")[:8])


class SharedTape(Tape):
    """The trade tape of :mod:`tests.fake.tape` (also pushed by the fake WebSocket), served over REST.

    One trade per group (``a == t`` for aggregates, as on the WebSocket fake),
    trade ``i`` at ``TAPE_EPOCH_MS + i * TAPE_STEP_MS``; bars are built from
    those trades (the bar holding ``now`` is cut at the head, like a live bar).
    No holes: a gap is what a dropped WebSocket misses, and REST fills it.
    """

    def __init__(self, native: str, base: str, quote: str, status: str = "TRADING") -> None:
        market = FakeMarket(
            native, base, quote, tape.TAPE_EPOCH_MS, status, trades_per_ms=1, every_ms=tape.TAPE_STEP_MS
        )
        super().__init__(market, ())

    def price(self, g: int) -> int:
        return _units(tape.trade_at(self.market.native, g).price)

    def trades_json(self, first: int, last: int) -> list[str]:
        out = []
        for i in range(max(0, first), last + 1):
            t = tape.trade_at(self.market.native, i)
            bm = "true" if t.is_buyer_maker else "false"
            out.append(
                f'{{"id":{i},"price":"{t.price}","qty":"{t.qty}","quoteQty":"{t.quote_qty}",'
                f'"time":{t.time_ms},"isBuyerMaker":{bm},"isBestMatch":true}}'
            )
        return out

    def agg_json(self, g: int) -> str:
        t = tape.trade_at(self.market.native, g)
        bm = "true" if t.is_buyer_maker else "false"
        return f'{{"a":{g},"p":"{t.price}","q":"{t.qty}","f":{g},"l":{g},"T":{t.time_ms},"m":{bm},"M":true}}'

    def depth_json(self, now_ms: int, limit: int) -> str:
        """The book the fake WebSocket's diff-depth events build up to the head (see :func:`tape.depth_book`)."""
        update_id, bids = tape.depth_book(self.market.native, self.head_id(now_ms))
        best = sorted(bids.items(), key=lambda kv: _units(kv[0]), reverse=True)[:limit]
        rows = ",".join(f'["{p}","{q}"]' for p, q in best)
        return f'{{"lastUpdateId":{update_id},"bids":[{rows}],"asks":[]}}'

    def kline_json(self, span: Span, open_ms: int, now_ms: int) -> str:
        close_ms = span.next(open_ms * NS_PER_MS) // NS_PER_MS - 1
        c = tape.candle_at(self.market.native, close_ms + 1 - open_ms, open_ms, self.head_id(now_ms))
        if c is None:  # bar_opens only yields bars that hold tape trades
            raise AssertionError(f"no tape trade in the bar opening at {open_ms}")
        taker = taker_quote = 0
        for i in range(c.first_id, c.last_id + 1):
            t = tape.trade_at(self.market.native, i)
            if not t.is_buyer_maker:
                taker += _units(t.qty)
                taker_quote += _units(t.quote_qty)
        return (
            f'[{open_ms},"{c.open}","{c.high}","{c.low}","{c.close}","{c.volume}",{close_ms},"{c.quote_volume}",'
            f'{c.trades},"{dec8(taker)}","{dec8(taker_quote)}","0"]'
        )
