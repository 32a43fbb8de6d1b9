"""Inventory: rows, ranges, sizes and exact gaps, matching dccd.domain.gaps."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dccd.domain import BookLevel, Candle, DatasetId, DataType, Span, Trade, missing_bars, missing_ids
from dccd.domain.timeutil import NS_PER_HOUR, NS_PER_MIN, parse_iso_ns
from dccd.storage import Lake

from .helpers import (
    BOOK,
    BTC,
    FUNDING,
    NOW,
    OHLC_1M,
    OI,
    PROV,
    T0,
    TRADES,
    bars,
    corrupt,
    funding,
    oi,
    parts_of,
    trades,
)


@pytest.mark.parametrize("label", ["1m", "1h", "1w", "1M"])
def test_bar_gaps_equal_the_domain_reference(tmp_path: Path, label: str) -> None:
    """Missing bars over overlapping parts and several partitions equal missing_bars() exactly."""
    span = Span.parse(label)
    ds = DatasetId("binance", BTC, DataType.OHLC, span)
    rnd = random.Random(label)
    opens = [span.align_up(parse_iso_ns("2023-11-20"))]
    for _ in range(150):
        opens.append(span.next(opens[-1]))
    kept = [t for t in opens if rnd.random() > 0.2]
    lake = Lake(tmp_path)
    for chunk in (kept[:90], kept[60:]):  # overlap: dedup needed
        lake.write(ds, [Candle(t, 1, 2, 0.5, 1, 1) for t in chunk], PROV, now_ns=NOW + 20 * 365 * 24 * NS_PER_HOUR)
    (inv,) = lake.inventory(ds)
    assert inv.gap_kind == "ts" and inv.gaps == missing_bars(kept, span) and inv.gaps
    assert (inv.rows, inv.first_ts, inv.last_ts) == (len(kept), kept[0], kept[-1])


def test_inventory_reports_sizes_parts_and_partitions(tmp_path: Path) -> None:
    """Bytes, parts and partitions come from the files; rows count each key once."""
    lake = Lake(tmp_path)
    res1 = lake.write(OHLC_1M, bars(parse_iso_ns("2024-01-31T23:00"), 120), PROV, now_ns=NOW)
    res2 = lake.write(OHLC_1M, bars(parse_iso_ns("2024-01-31T23:30"), 10), PROV, now_ns=NOW)
    (inv,) = lake.inventory()
    assert (inv.exchange, inv.symbol, inv.data_type, inv.span) == ("binance", "BTC/USDT", "ohlc", "1m")
    assert inv.rows == 120 and inv.parts == 3 and inv.partitions == 2
    assert inv.bytes == sum(p.bytes for p in res1.parts + res2.parts)
    assert inv.gaps == []


def test_funding_gaps_at_a_regular_cadence(tmp_path: Path) -> None:
    """Funding every 8 h with two prints missing gives those two half-open gaps."""
    step = 8 * NS_PER_HOUR
    Lake(tmp_path).write(FUNDING, funding(T0, 30, step, skip=(4, 11)), PROV, now_ns=NOW)
    (inv,) = Lake(tmp_path).inventory(FUNDING)
    assert inv.gap_kind == "ts" and inv.gaps == [(T0 + 4 * step, T0 + 5 * step), (T0 + 11 * step, T0 + 12 * step)]


def test_irregular_cadence_computes_no_gaps_and_says_why(tmp_path: Path) -> None:
    """When no step dominates, OI gaps are not guessed: gap_kind is None with a note."""
    steps = [0, 5, 7, 20, 21, 40, 41, 43, 90]
    Lake(tmp_path).write(OI, oi(T0, [s * NS_PER_MIN for s in steps]), PROV, now_ns=NOW)
    (inv,) = Lake(tmp_path).inventory(OI)
    assert inv.gap_kind is None and inv.gaps == [] and "irregular cadence" in inv.gap_note
    assert inv.rows == len(steps)


def test_trade_id_gaps_are_inclusive_ranges(tmp_path: Path) -> None:
    """Missing sequential trade ids are reported as inclusive (lo, hi) ranges; duplicates count once."""
    lake = Lake(tmp_path)
    kept = [t for t in trades(100, 200) if int(t.id or 0) not in (120, 121, 122, 250)]
    lake.write(TRADES, kept[:150], PROV, now_ns=NOW)
    lake.write(TRADES, [*kept[100:], Trade(T0, None, 1.0, 1.0), Trade(T0, None, 1.0, 1.0)], PROV, now_ns=NOW)
    lake.write(TRADES, [Trade(T0, None, 1.0, 1.0)], PROV, now_ns=NOW)
    (inv,) = lake.inventory(TRADES)
    ids = [int(t.id or 0) for t in kept]
    assert inv.gap_kind == "id" and inv.gaps == missing_ids(ids) == [(120, 122), (250, 250)]
    assert inv.rows == len(kept) + 1


@pytest.mark.parametrize(("ids", "note"), [(["a1", "b2", "c3"], "not integers"), ([None, None], "no ids")])
def test_trade_ids_without_integers_give_no_id_gaps(tmp_path: Path, ids: list[str | None], note: str) -> None:
    """Non-integer or absent ids are not turned into fake gaps, even on an exchange with sequential ids."""
    Lake(tmp_path).write(TRADES, [Trade(T0 + i, tid, 1.0, 1.0 + i) for i, tid in enumerate(ids)], PROV, now_ns=NOW)
    (inv,) = Lake(tmp_path).inventory(TRADES)
    assert inv.gap_kind is None and note in inv.gap_note and inv.gap_ranges == []


def test_book_rows_and_note(tmp_path: Path) -> None:
    """Books count distinct (ts, side, price) rows and compute no gaps."""
    lake = Lake(tmp_path)
    lvls = [BookLevel(T0, "bid", 1.0, 1.0), BookLevel(T0, "ask", 2.0, 1.0)]
    lake.write(BOOK, lvls, PROV, now_ns=NOW)
    lake.write(BOOK, [*lvls, BookLevel(T0 + 1, "ask", 2.0, 1.0)], PROV, now_ns=NOW)
    (inv,) = lake.inventory(BOOK)
    assert inv.rows == 3 and inv.gap_kind is None and inv.last_ts == T0 + 1


def test_inventory_lists_every_dataset_and_skips_corrupt_parts(tmp_path: Path) -> None:
    """All datasets appear once; a corrupt part is listed in skipped and not counted."""
    lake = Lake(tmp_path)
    lake.write(OHLC_1M, bars(T0, 10), PROV, now_ns=NOW)
    lake.write(OHLC_1M, bars(T0 + 10 * NS_PER_MIN, 10), PROV, now_ns=NOW)
    lake.write(TRADES, trades(0, 3), PROV, now_ns=NOW)
    corrupt(parts_of(tmp_path, OHLC_1M)[1])
    (tmp_path / "trades" / "exchange=binance" / "junk").mkdir()
    invs = {i.data_type: i for i in lake.inventory()}
    assert set(invs) == {"ohlc", "trades"}
    assert invs["ohlc"].rows == 10 and len(invs["ohlc"].skipped) == 1


async def test_async_inventory(tmp_path: Path) -> None:
    """ainventory works from Trio."""
    lake = Lake(tmp_path)
    await lake.awrite(OHLC_1M, bars(T0, 3, skip=(1,)), PROV, now_ns=NOW)
    (inv,) = await lake.ainventory()
    assert inv.gaps == [(T0 + NS_PER_MIN, T0 + 2 * NS_PER_MIN)]
