"""Lake inspection for planners: stored bar times, a trades range's extent and ids, the last stored trade."""

from __future__ import annotations

from pathlib import Path

from dccd.domain import Trade
from dccd.domain.plan import StoredTrades
from dccd.domain.timeutil import NS_PER_MIN
from dccd.storage import Lake

from .helpers import NOW, OHLC_1M, PROV, T0, TRADES, bars, trades

MS = 1_000_000


def test_stored_ts_lists_sorted_bar_times_of_the_range(tmp_path: Path) -> None:
    """Bars stored in [start, end) come back sorted, with the holes left out."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0 + 5 * NS_PER_MIN, 5), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0, 5, skip=(2,)), PROV, now_ns=NOW)
    got = lake.stored_ts(OHLC_1M, T0 + NS_PER_MIN, T0 + 7 * NS_PER_MIN)
    assert got == [T0 + i * NS_PER_MIN for i in (1, 3, 4, 5, 6)]
    assert lake.stored_ts(OHLC_1M, T0 + 20 * NS_PER_MIN, None) == []


def test_stored_trades_gives_the_range_extent_and_its_sorted_integer_ids(tmp_path: Path) -> None:
    """Extent and ids of the stored trades in range; a non-integer id makes ids None; an empty range is None."""
    lake = Lake(tmp_path)
    lake.write(TRADES, [t for t in trades(10, 10) if t.id not in ("13", "14")], PROV, now_ns=NOW)
    got = lake.stored_trades(TRADES, T0 + 11 * MS, T0 + 19 * MS)
    assert got == StoredTrades(T0 + 11 * MS, T0 + 18 * MS, (11, 12, 15, 16, 17, 18))
    assert lake.stored_trades(TRADES, T0 + 30 * MS, None) is None
    lake.write(TRADES, [Trade(T0 + 12 * MS, "x-1", 1.0, 1.0, "buy")], PROV, now_ns=NOW)
    stored = lake.stored_trades(TRADES, None, None)
    assert stored is not None and stored.ids is None


def test_the_last_trade_is_the_highest_id_at_the_newest_time_with_its_instant_ids(tmp_path: Path) -> None:
    """A resume starts after the highest id of the newest instant; every id stored at that instant is known."""
    lake = Lake(tmp_path)
    assert lake.last_trade(TRADES) is None
    same = [Trade(T0 + 5 * MS, str(i), 1.0, 1.0, "sell") for i in (7, 9, 8)]
    lake.write(TRADES, [*trades(0, 5), *same], PROV, now_ns=NOW)
    last = lake.last_trade(TRADES)
    assert last is not None and (last.ts, last.id) == (T0 + 5 * MS, "9")
    assert lake.trade_ids_at(TRADES, T0 + 5 * MS) == frozenset({"7", "8", "9"})
    assert lake.trade_ids_at(TRADES, T0 + 6 * MS) == frozenset()
