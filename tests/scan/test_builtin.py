"""The built-in scanners on synthetic lakes: exactly the planted symbols, and TA-Lib's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import msgspec
import numpy as np
import pytest
import talib

from dccd.scan.builtin import TECHNICAL_CONDITIONS, Technical
from dccd.scan.engine import Context, LakeBars, ScanSpec, connect, prepare, run_scan, run_scans, select_datasets
from tests.scan import synth

N = 1500  # bars per generated series (cut points lie after TA-Lib's and our unstable periods)
HOUR = synth.HOUR_NS


def _symbols(result: object) -> set[str]:
    return {h["symbol"] for h in result.hits}  # type: ignore[attr-defined]


def test_relative_volume_finds_the_planted_spikes(tmp_path: Path) -> None:
    """Only the symbols whose newest bar trades ≥ min_rvol × the mean of the 20 before are hits."""
    planted = {"SPK1/USDT", "SPK2/USDT"}
    for i, sym in enumerate(["SPK1/USDT", "SPK2/USDT", "CALM1/USDT", "CALM2/USDT", "EDGE/USDT"]):
        b = synth.walk(200, seed=i, vol_sigma=0.05)
        if sym in planted:
            b["volume"][-1] = 3.0 * b["volume"][-21:-1].mean()
        if sym == "EDGE/USDT":  # just under the threshold: no hit
            b["volume"][-1] = 1.99 * b["volume"][-21:-1].mean()
        synth.write(tmp_path, "binance", sym, b)
    res = run_scan(tmp_path, ScanSpec("relative_volume", params={"min_rvol": 2.0, "at_time_days": 0}))
    assert _symbols(res) == planted
    assert res.symbols == 5
    hit = next(h for h in res.hits if h["symbol"] == "SPK1/USDT")
    assert hit["rvol"] == pytest.approx(3.0, rel=1e-12)
    assert hit["ts"] == synth.T0_NS + 199 * HOUR


def test_rvol_at_time_is_cumulative_volume_against_the_same_offset_on_previous_days(tmp_path: Path) -> None:
    """RVOL-at-time = today's cumulative volume to the newest bar's hour ÷ the mean of the last N days' at that hour."""
    days, n_days = 8, 5
    b = synth.walk(days * 24 + 10, seed=3)  # the newest bar is 09:00 on day 8
    synth.write(tmp_path, "binance", "BTC/USDT", b)
    res = run_scan(tmp_path, ScanSpec("relative_volume", params={"min_rvol": 0.0, "at_time_days": n_days}))
    [hit] = res.hits
    v = b["volume"]
    today = v[days * 24 : days * 24 + 10].sum()
    prev = [v[d * 24 : d * 24 + 10].sum() for d in range(days - n_days, days)]
    assert hit["cum_volume"] == pytest.approx(today, rel=1e-12)
    assert hit["rvol_at_time"] == pytest.approx(today / np.mean(prev), rel=1e-12)
    res = run_scan(tmp_path, ScanSpec("relative_volume", params={"min_rvol": 0.0, "at_time_days": days + 1}))
    assert res.hits[0]["rvol_at_time"] is None  # fewer days stored than asked


def _previous(x: np.ndarray, n: int, fn: Any) -> np.ndarray:
    """``fn`` over the ``n`` values before each position (nan until there are ``n``)."""
    out = np.full(len(x), np.nan)
    out[n:] = fn(np.lib.stride_tricks.sliding_window_view(x, n)[:-1], axis=1)
    return out


def _donchian(b: dict[str, np.ndarray], n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    return _previous(b["high"], n, np.max), _previous(b["low"], n, np.min)


def _cut_where(mask: np.ndarray, seed: int, lo: int = 1200) -> int:
    """A series length whose newest bar is one where ``mask`` holds (deterministic per seed)."""
    idx = np.flatnonzero(mask[lo:]) + lo
    assert len(idx), "the generated walk never meets the condition"
    return int(idx[seed % len(idx)]) + 1


def test_breakout_finds_planted_breakouts_and_breakdowns_only(tmp_path: Path) -> None:
    """Hits are the series whose newest close crosses the previous 20 bars' channel, with their direction."""
    expect: dict[str, str] = {}
    for i in range(9):
        b = synth.walk(N, seed=100 + i)
        hi, lo = _donchian(b)
        c = b["close"]
        kind = ("up", "down", "none")[i % 3]
        mask = {"up": c > hi, "down": c < lo, "none": (c <= hi) & (c >= lo)}[kind]
        sym = f"{kind.upper()}{i}/USDT"
        synth.write(tmp_path, "binance", sym, synth.cut(b, _cut_where(mask, i)))
        if kind != "none":
            expect[sym] = kind
    res = run_scan(tmp_path, ScanSpec("breakout"))
    assert {h["symbol"]: h["direction"] for h in res.hits} == expect
    res = run_scan(tmp_path, ScanSpec("breakout", params={"direction": "up"}))
    assert {h["symbol"] for h in res.hits} == {s for s, k in expect.items() if k == "up"}


def test_breakout_rvol_confirmation_drops_quiet_breakouts(tmp_path: Path) -> None:
    """With min_rvol, a breakout on ordinary volume is not a hit; the same on 3× volume is."""
    b = synth.walk(N, seed=7)
    hi, _ = _donchian(b)
    end = _cut_where(b["close"] > hi, 0)
    quiet, loud = synth.cut(b, end), synth.cut(b, end)
    loud["volume"] = loud["volume"].copy()
    loud["volume"][-1] = 3 * loud["volume"][-21:-1].mean()
    quiet["volume"] = quiet["volume"].copy()
    quiet["volume"][-1] = 1.0 * quiet["volume"][-21:-1].mean()
    synth.write(tmp_path, "binance", "LOUD/USDT", loud)
    synth.write(tmp_path, "binance", "QUIET/USDT", quiet)
    assert _symbols(run_scan(tmp_path, ScanSpec("breakout"))) == {"LOUD/USDT", "QUIET/USDT"}
    assert _symbols(run_scan(tmp_path, ScanSpec("breakout", params={"min_rvol": 2.0}))) == {"LOUD/USDT"}


def _reference(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TA-Lib's indicators (and the conditions on them) at every bar of a full series."""
    c, h, lo = b["close"], b["high"], b["low"]
    ef, es = talib.EMA(c, 20), talib.EMA(c, 50)
    macd, sig, hist = talib.MACD(c, 12, 26, 9)
    up, mid, dn = talib.BBANDS(c, 20, 2, 2, 0)
    width = (up - dn) / mid
    low = _previous(width, 120, np.min)  # nan while a window holds a nan width: never a squeeze
    rsi = talib.RSI(c, 14)
    diff = ef - es
    prev_diff, prev_hist = np.roll(diff, 1), np.roll(hist, 1)
    return {
        "rsi": rsi,
        "ema_fast": ef,
        "ema_slow": es,
        "macd": macd,
        "macd_signal": sig,
        "macd_hist": hist,
        "bb_upper": up,
        "bb_mid": mid,
        "bb_lower": dn,
        "bb_width": width,
        "atr": talib.ATR(h, lo, c, 14),
        "rsi_oversold": rsi < 30,
        "rsi_overbought": rsi > 70,
        "ema_cross_up": (prev_diff <= 0) & (diff > 0),
        "ema_cross_down": (prev_diff >= 0) & (diff < 0),
        "macd_cross_up": (prev_hist <= 0) & (hist > 0),
        "macd_cross_down": (prev_hist >= 0) & (hist < 0),
        "bb_squeeze": width < low,
    }


@pytest.mark.parametrize("condition", TECHNICAL_CONDITIONS)
def test_technical_finds_exactly_the_planted_condition(tmp_path: Path, condition: str) -> None:
    """Per condition: series cut where TA-Lib says it holds are hits, series cut where it does not are not."""
    planted = set()
    drift = {"rsi_oversold": -0.002, "rsi_overbought": 0.002}.get(condition, 0.0)
    for i in range(6):
        b = synth.walk(N, seed=1000 + 17 * i, drift=drift if i < 3 else 0.0)
        ref = _reference(b)
        mask = ref[condition] if i < 3 else ~ref[condition]
        sym = f"T{i}/USDT"
        synth.write(tmp_path, "okx", sym, synth.cut(b, _cut_where(mask, i)))
        if i < 3:
            planted.add(sym)
    res = run_scan(tmp_path, ScanSpec("technical", params={"conditions": [condition]}))
    assert _symbols(res) == planted
    assert {h["signal"] for h in res.hits} == {condition}


def test_technical_values_equal_talib_after_the_unstable_period(tmp_path: Path) -> None:
    """Every indicator on each symbol's newest bar equals TA-Lib's within 1e-9 relative."""
    series = {}
    for i in range(6):
        b = synth.walk(N - 37 * i, seed=i, drift=(i - 3) * 0.0005)
        series[f"V{i}/USDT"] = b
        synth.write(tmp_path, "binance", f"V{i}/USDT", b)
    p = prepare(ScanSpec("technical"))
    tail = p.scanner.tail_bars(p.config, 3600)
    assert tail < N - 37 * 5  # the tail, not the whole series, is what the scan folds
    bars = LakeBars(tmp_path, select_datasets(tmp_path, p.spec.universe, p.span), p.span, tail, p.spec.universe)
    con = connect()
    bars.load(con)
    rows = Context(con, bars, tail).query(Technical().indicators_sql(p.config, HOUR)).to_pylist()
    assert len(rows) == 6
    for row in rows:
        ref = _reference(series[row["symbol"]])
        for key in ("rsi", "ema_fast", "ema_slow", "macd", "macd_signal", "macd_hist", "atr"):
            assert row[key] == pytest.approx(ref[key][-1], rel=1e-9, abs=0), (row["symbol"], key)
        for key in ("bb_upper", "bb_mid", "bb_lower", "bb_width"):
            assert row[key] == pytest.approx(ref[key][-1], rel=1e-9, abs=0), (row["symbol"], key)


def test_duplicate_bars_are_read_newest_write_wins(tmp_path: Path) -> None:
    """A bar written twice (a re-fetch) is scanned once, with its newest values."""
    b = synth.walk(100, seed=5)
    synth.write(tmp_path, "binance", "DUP/USDT", b)
    again = synth.cut(b, 100)
    again["volume"] = again["volume"].copy()
    again["volume"][-1] = 10 * b["volume"][-21:-1].mean()
    synth.write(tmp_path, "binance", "DUP/USDT", again)
    [hit] = run_scan(tmp_path, ScanSpec("relative_volume", params={"at_time_days": 0})).hits
    assert hit["rvol"] == pytest.approx(10.0, rel=1e-12)


def test_universe_filters_exchanges_quotes_symbols_and_quote_volume(tmp_path: Path) -> None:
    """Only series the universe admits are read: exchange, quote currency, explicit symbols, 24 h quote volume."""
    for ex, sym, scale in [
        ("binance", "A/USDT", 1.0),
        ("binance", "B/BTC", 1.0),
        ("okx", "C/USDT", 1.0),
        ("binance", "D/USDT", 0.001),
    ]:
        b = synth.walk(50, seed=len(sym))
        b["volume"] = b["volume"] * scale
        synth.write(tmp_path, ex, sym, b)

    def scanned(**uni: object) -> int:
        spec = msgspec.convert({"scanner": "relative_volume", "params": {"min_rvol": 0.0}, "universe": uni}, ScanSpec)
        return len(run_scan(tmp_path, spec).hits)

    assert scanned() == 4
    assert scanned(exchanges=["okx"]) == 1
    assert scanned(quotes=["USDT"]) == 3
    assert scanned(symbols=["A/USDT", "C/USDT"]) == 2
    assert scanned(min_quote_volume=1_000_000.0) == 3  # D trades ~2,400 USDT a day


def test_multi_timeframe_confirm_keeps_hits_that_also_hit_on_the_other_span(tmp_path: Path) -> None:
    """A 1h spike counts only for symbols whose 1d series also hits its condition; its values join the hit."""
    for i, sym in enumerate(["X/USDT", "Y/USDT"]):
        b = synth.walk(60, seed=i, vol_sigma=0.05)
        b["volume"][-1] = 5 * b["volume"][-21:-1].mean()
        synth.write(tmp_path, "binance", sym, b)
        d = synth.walk(60, seed=10 + i, vol_sigma=0.05)
        if sym == "X/USDT":
            d["volume"][-1] = 5 * d["volume"][-21:-1].mean()
        synth.write(tmp_path, "binance", sym, d, span="1d", span_ns=86_400 * 10**9)
    spec = ScanSpec(
        "relative_volume",
        params={"at_time_days": 0},
        confirm=[ScanSpec("relative_volume", span="1d", params={"min_rvol": 3.0})],
    )
    [hit] = run_scan(tmp_path, spec).hits
    assert hit["symbol"] == "X/USDT"
    assert hit["relative_volume@1d.rvol"] == pytest.approx(5.0, rel=1e-12)


def test_three_scanners_share_one_read(tmp_path: Path) -> None:
    """run_scans answers each scanner as run_scan does on its own."""
    for i in range(4):
        synth.write(tmp_path, "binance", f"S{i}/USDT", synth.walk(800, seed=i))
    specs = [
        ScanSpec(n, params=({"min_rvol": 0.5} if n == "relative_volume" else {}))
        for n in ("relative_volume", "breakout", "technical")
    ]
    together = run_scans(tmp_path, specs)
    alone = [run_scan(tmp_path, s) for s in specs]
    for a, b in zip(together, alone, strict=True):
        assert [(h["symbol"], h.get("signal")) for h in a.hits] == [(h["symbol"], h.get("signal")) for h in b.hits]
        for ha, hb in zip(a.hits, b.hits, strict=True):  # parallel sums may differ in the last bit
            assert ha == {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for k, v in hb.items()}
    assert len(together[0].hits) == 4


def test_window_shape_of_the_builtins_survives_duckdb_window_bug(tmp_path: Path) -> None:
    """Two windows on one partition, one ordering, then a last-bar filter over read_parquet: the shape the
    built-ins use to dodge DuckDB 2.0.1's PhysicalWindow bug (a descending row_number beside them fails)."""
    for i in range(3):
        synth.write(tmp_path, "binance", f"W{i}/USDT", synth.walk(80, seed=i))
    files = sorted(str(p) for p in tmp_path.rglob("part-*.parquet"))
    con = duckdb.connect()
    sql = (
        "WITH b AS (SELECT filename AS f, ts, close FROM read_parquet($files, filename=true)),"
        " w AS (SELECT f, ts, close - lag(close) OVER w AS d, lead(ts) OVER w IS NULL AS is_last"
        " FROM b WINDOW w AS (PARTITION BY f ORDER BY ts))"
        " SELECT count(*), count(d) FROM w WHERE is_last"
    )
    assert con.sql(sql, params={"files": files}).fetchall() == [(3, 3)]
    # and the scanners' own statements over the same lake
    spec = ScanSpec("technical", params={"rsi_oversold": 101.0, "conditions": ["rsi_oversold"]})
    assert _symbols(run_scan(tmp_path, spec)) == {"W0/USDT", "W1/USDT", "W2/USDT"}
