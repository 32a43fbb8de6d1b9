"""Parsing one day of Bybit, BitMEX and OKX archive trades: dccd's column-wise parsers vs a per-row Python parse.

Run: ``python tests/bench/archive_venues.py [--rows-per-day 864000]``.

Each venue's day file is built once from the fake tape (tests/fake/archive_venues.py: a Bybit
derivatives day with decimal-second times, a Bybit spot day, a BitMEX all-symbol day of three
symbols with one of them asked for, an OKX Beijing day), written to disk, then parsed in its own
subprocess (so each peak RSS is that parse's alone), side by side:

- ``dccd``: the adapter's ``parse_archive`` on the file path (pyarrow's CSV reader on the
  decompressed stream, vectorised exact timestamp parsing, no per-row Python);
- ``per-row``: the straightforward alternative with the standard library: ``csv.reader`` over
  ``gzip``/``zipfile`` text, each row's time parsed exactly with integer arithmetic, price and
  amount with ``float``, rows kept as tuples (no lake table at the end, so it does less work).

Both must produce the same number of rows. Figures: seconds, rows/s, peak RSS (MB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATE = "2024-01-02"


def build(out: Path, rows_per_day: int) -> dict[str, str]:
    """Write the four day files (thinned to ``rows_per_day`` tape trades); returns {case: path}."""
    sys.path.insert(0, str(ROOT))
    from tests.fake import archive_venues as av

    every = max(1, 864_000 // rows_per_day)
    files = {
        "bybit-linear": (f"BTCUSDT{DATE}.csv.gz", av.bybit_linear_file("BTCUSDT", DATE, every=every, rpi=True)),
        "bybit-spot": (f"BTCUSDT_{DATE}.csv.gz", av.bybit_spot_file("BTCUSDT", DATE, every=every)),
        "bitmex": (f"{DATE.replace('-', '')}.csv.gz", av.bitmex_trade_file(DATE, av.BITMEX_SYMBOLS, every=every * 3)),
        "okx": (f"BTC-USDT-trades-{DATE}.zip", av.okx_trades_file("BTC-USDT", DATE, every=every)),
    }
    paths = {}
    for case, (name, data) in files.items():
        path = out / name
        path.write_bytes(data)
        paths[case] = str(path)
    return paths


def child(case: str, how: str, path: str) -> None:
    """Child mode: parse ``path`` once (``how`` = dccd | per-row); print rows, seconds, peak RSS."""
    import time

    run = prepare_dccd(case) if how == "dccd" else parse_rows  # imports and set-up are not timed
    t0 = time.perf_counter()
    rows = run(case, path)
    dt = time.perf_counter() - t0
    rss = peak_rss_mb()
    print(json.dumps({"rows": rows, "s": dt, "rss_mb": rss}))


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``: unlike ``ru_maxrss`` it does not inherit the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare_dccd(case: str) -> Callable[[str, str], int]:
    """The archive adapter's parse of ``case``'s file, everything imported and resolved beforehand."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dccd.domain.records import DataType
    from dccd.domain.symbols import Symbol
    from dccd.domain.timeutil import parse_iso_ns
    from dccd.sources.archive import Granularity, get_archive

    exchange, symbol, lo = {
        "bybit-linear": ("bybit", Symbol("BTC", "USDT", "perp"), parse_iso_ns(DATE)),
        "bybit-spot": ("bybit", Symbol("BTC", "USDT"), parse_iso_ns(DATE)),
        "bitmex": ("bitmex", Symbol("BTC", "USD", "perp"), parse_iso_ns(DATE)),
        "okx": ("okx", Symbol("BTC", "USDT"), parse_iso_ns(DATE) - 8 * 3600 * 10**9),
    }[case]
    archive = get_archive(exchange)
    assert archive is not None
    f = archive.archive_file(symbol, DataType.TRADES, None, Granularity.DAILY, lo)
    pc.extract_regex(pa.array(["1.5"]), r"^(?P<s>\d+)")  # pyarrow's kernels are registered on first use

    def run(_case: str, path: str) -> int:
        return int(archive.parse_archive(f, path).num_rows)

    return run


def parse_rows(case: str, path: str) -> int:
    import csv
    import datetime as dt
    import gzip
    import io
    import zipfile

    if path.endswith(".zip"):
        z = zipfile.ZipFile(path)
        text: io.TextIOBase = io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8", errors="replace")
    else:
        text = io.TextIOWrapper(gzip.open(path), encoding="utf-8")  # noqa: SIM115 (read to the end below)
    reader = csv.reader(text)
    next(reader)
    out = []
    if case == "bybit-linear":
        for r in reader:
            s, _, f = r[0].partition(".")
            out.append((int(s) * 10**9 + int(f.ljust(9, "0")[:9] or 0), r[6], float(r[4]), float(r[3]), r[2].lower()))
    elif case == "bybit-spot":
        for r in reader:
            out.append((int(r[1]) * 10**6, r[0], float(r[2]), float(r[3]), r[4]))
    elif case == "bitmex":
        epoch = dt.datetime(1970, 1, 1)
        for r in reader:
            if r[1] != "XBTUSD":
                continue
            head, _, frac = r[0].partition(".")
            t = dt.datetime.strptime(head, "%Y-%m-%dD%H:%M:%S") - epoch
            ns = (t.days * 86_400 + t.seconds) * 10**9 + int(frac.ljust(9, "0"))
            out.append((ns, r[6], float(r[4]), float(r[8]), r[2].lower()))
    else:
        for r in reader:
            out.append((int(r[5]) * 10**6, r[1], float(r[3]), float(r[4]), r[2]))
    return len(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows-per-day", type=int, default=864_000, help="tape trades per symbol-day (max 864000)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "HOW", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        paths = build(Path(tmp), args.rows_per_day)
        print(f"{'case':<14}{'how':<9}{'rows':>10}{'seconds':>9}{'rows/s':>12}{'RSS MB':>8}  file MB")
        for case, path in paths.items():
            counts = set()
            for how in ("dccd", "per-row"):
                cmd = [sys.executable, __file__, "--child", case, how, path]
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
                counts.add(res["rows"])
                size = Path(path).stat().st_size / 1e6
                print(f"{case:<14}{how:<9}{res['rows']:>10,}{res['s']:>9.2f}{res['rows'] / res['s']:>12,.0f}{res['rss_mb']:>8.0f}  {size:.1f}")  # fmt: skip
            assert len(counts) == 1, f"{case}: row counts differ {counts}"


if __name__ == "__main__":
    main()
