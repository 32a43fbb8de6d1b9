"""The web UI in a real browser: Debian's chromium, headless, driven by playwright, against a real ``dccd serve``
subprocess streaming from the fake exchanges' process (:mod:`tests.fake.serve`), over a lake that holds a year of
1m bars (525,600) for binance BTC/USDT.

Each screen is screenshotted at 1024, 1400 and 1920 px into ``$DCCD_ARTIFACTS`` (default
``tmp/artifacts/browser`` under the repository, not committed) and checked for layout: no element sticks out of
its panel, no panel out of the page. The console must stay free of errors (except the HTTP error responses
a test provokes on purpose). First paint of the dashboard and the time to chart the year are printed, not asserted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from dccd.domain import DatasetId, DataType, Span, Symbol
from dccd.storage.lake import Lake
from dccd.storage.writer import Provenance
from tests.fake.serve import EXCHANGES

playwright_sync = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).parents[2]
CHROMIUM = os.environ.get("DCCD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("DCCD_ARTIFACTS", ROOT / "tmp" / "artifacts" / "browser"))
WIDTHS = (1024, 1400, 1920)
YEAR_START_S = 1_672_531_200  # 2023-01-01T00:00Z; the fake tape (live trades) starts where the year ends
YEAR_BARS = 525_600
GAP = (YEAR_BARS - 800, YEAR_BARS - 770)  # 30 bars missing on the last day: the chart marks the gap
pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's package)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_year(root: Path) -> None:
    """A year of 1m bars of binance BTC/USDT ending at the fake tape's start, with one 30-bar hole."""
    ts, o, h, lo, c, v = [], [], [], [], [], []
    price = 390.0
    for i in range(YEAR_BARS):
        if GAP[0] <= i < GAP[1]:
            continue
        # waves around the tape's price (~390), so the live bars continue the stored ones
        open_, close = price, 390.0 + 15.0 * math.sin(i / 1301.0) + 3.0 * math.sin(i / 97.0) + 0.5 * math.sin(i * 1.7)
        ts.append((YEAR_START_S + 60 * i) * 1_000_000_000)
        o.append(open_)
        c.append(close)
        h.append(max(open_, close) + 0.3)
        lo.append(min(open_, close) - 0.3)
        v.append(100.0 + (i % 60))
        price = close
    n = len(ts)
    table = pa.table(
        {"ts": pa.array(ts, pa.int64()), "open": o, "high": h, "low": lo, "close": c, "volume": v,
         "quote_volume": pa.nulls(n, pa.float64()), "trades": pa.nulls(n, pa.int64())}
    )  # fmt: skip
    ds = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.OHLC, Span.parse("1m"))
    Lake(root).write_table(ds, table, Provenance("test", "rest"))


@dataclass
class Ui:
    base: str
    http: httpx.Client
    page: Any
    console: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def goto(self, hash_: str) -> None:
        self.page.goto(self.base + "/" + hash_)

    def errors(self, allow: tuple[str, ...] = ()) -> list[str]:
        out = [m for m in self.console if not any(a in m for a in allow)]
        self.console.clear()
        return out

    def probe(self, expr: str) -> Any:
        return self.page.evaluate(f"() => window.dccd && {expr}")

    def wait(self, expr: str, timeout_s: float = 20.0) -> Any:
        self.page.wait_for_function(f"() => window.dccd && ({expr})", timeout=timeout_s * 1000)
        return self.probe(expr)


LAYOUT_JS = """
() => {
  const bad = [];
  const vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw + 1) bad.push("page scrolls sideways: " + document.documentElement.scrollWidth + " > " + vw);
  for (const panel of document.querySelectorAll(".screen:not([hidden]) .panel")) {
    if (panel.closest("[hidden]")) continue;
    const p = panel.getBoundingClientRect();
    if (p.width === 0) continue;
    if (p.right > vw + 1) bad.push("panel " + (panel.querySelector("h2") || panel).textContent.slice(0, 30) + " ends at " + p.right + " > " + vw);
    for (const e of panel.querySelectorAll("*")) {
      if (e.closest(".scroll") && !e.classList.contains("scroll")) continue;  // inside a scroll box: it scrolls
      if (e.closest(".chart")) continue;  // the chart library's canvases (sized by autoSize to their box)
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.right > p.right + 1 || r.left < p.left - 1) bad.push(e.tagName + "#" + e.id + "." + e.className + " [" + r.left + "," + r.right + "] outside panel [" + p.left + "," + p.right + "]");
    }
  }
  // a table's last column (the actions) must be visible without scrolling at 1400 px and wider
  if (vw >= 1400) for (const s of document.querySelectorAll(".screen:not([hidden]) .scroll")) {
    if (s.scrollWidth > s.clientWidth + 1) bad.push("table in " + (s.closest(".panel").querySelector("h2") || {}).textContent + " scrolls sideways at " + vw + " px");
  }
  return bad;
}
"""


def shoot(ui: Ui, name: str) -> None:
    """Screenshots of the current screen at each width, each checked for layout."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems = {}
    for w in WIDTHS:
        ui.page.set_viewport_size({"width": w, "height": 900})
        ui.page.wait_for_timeout(250)
        ui.page.screenshot(path=str(ARTIFACTS / f"{name}-{w}.png"))
        bad = ui.page.evaluate(LAYOUT_JS)
        if bad:
            problems[w] = bad[:5]
    ui.page.set_viewport_size({"width": 1400, "height": 900})
    assert problems == {}, f"{name}: {problems}"


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    tmp = tmp_path_factory.mktemp("browser")
    lake, cfg, port = tmp / "lake", tmp / "fake.yaml", free_port()
    t0 = time.monotonic()
    write_year(lake)
    print(f"\nwrote {YEAR_BARS - (GAP[1] - GAP[0]):,} 1m bars in {time.monotonic() - t0:.1f} s")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake.serve", "--rate", "10", "--config-out", str(cfg), "--data", str(lake),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    serve: subprocess.Popen[str] | None = None
    stack = contextlib.ExitStack()
    try:
        assert fake.stdout is not None
        json.loads(fake.stdout.readline())
        log = stack.enter_context((tmp / "serve.log").open("w"))
        serve = subprocess.Popen(
            [str(Path(sys.executable).parent / "dccd"), "serve", "--config", str(cfg)],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        http = stack.enter_context(httpx.Client(base_url=base, timeout=10.0))
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        pw = stack.enter_context(playwright_sync.sync_playwright())
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        stack.callback(browser.close)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(20_000)
        u = Ui(base, http, page)
        page.on(
            "console",
            lambda m: u.console.append(f"{m.text} {m.location.get('url', '')}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: u.console.append(f"pageerror: {e}"))
        yield u
        print("\nUI figures: " + ", ".join(f"{k} {v:,.0f} ms" for k, v in u.figures.items()))
    finally:
        stack.close()
        if serve is not None:  # the lake is thrown away: no need to wait for the streams' stop-time refills
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(5)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        fake.terminate()
        fake.wait(10)
        if fake.stdout is not None:
            fake.stdout.close()


def test_dashboard_shows_streams_and_exchanges(ui: Ui) -> None:
    """Streams with state, msg/s and last message age; each exchange reachable; first paint measured."""
    ui.goto("#/dashboard")
    ui.page.wait_for_function("() => document.querySelectorAll('#dash-streams tr').length >= 2")
    fcp = ui.page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
    ui.figures["dashboard first contentful paint"] = fcp or -1
    ui.page.wait_for_function(
        "() => [...document.querySelectorAll('#dash-streams tr')].every(tr => Number(tr.children[5].textContent) > 0)"
    )
    rows = ui.page.eval_on_selector_all(
        "#dash-streams tr", "trs => trs.map(tr => [...tr.children].map(td => td.textContent))"
    )
    assert {r[1] for r in rows} == set(EXCHANGES)
    assert all(r[4] == "connected" and float(r[5]) > 0 for r in rows), rows
    ui.page.wait_for_function(
        "() => [...document.querySelectorAll('#dash-exchanges tr')].filter(tr => tr.children[1].textContent.startsWith('yes')).length === 7"
    )
    shoot(ui, "dashboard")
    assert ui.errors() == []


def test_the_forming_bar_moves_with_live_trades(ui: Ui) -> None:
    """Live trades of the fake (after the stored year) arrive as forming bars: the newest bar changes."""
    ui.goto("#/chart?exchange=binance&symbol=BTC/USDT&span=1m")
    ui.wait("window.dccd.chart.forming >= 1")
    before = ui.probe("window.dccd.chart.forming")
    last = ui.probe("window.dccd.chart.lastForming")
    ui.wait(f"window.dccd.chart.forming >= {before + 3}")
    now = ui.probe("window.dccd.chart.lastForming")
    assert now["time"] >= YEAR_START_S + 60 * YEAR_BARS  # after the stored bars
    assert (now["time"], now["close"], now["high"], now["low"]) != (
        last["time"],
        last["close"],
        last["high"],
        last["low"],
    )
    ui.page.wait_for_function("() => document.querySelectorAll('#tape tr').length >= 5")  # the trades tape
    assert ui.errors() == []


def test_chart_renders_stored_bars_pages_back_and_charts_the_year(ui: Ui) -> None:
    """The chart loads the newest page of stored bars with the gap marked, pages older bars on scroll, shows OHLCV
    under the crosshair, and loads all 525,570 bars (timed)."""
    ui.goto("#/chart?exchange=binance&symbol=BTC/USDT&span=1m")
    ui.wait("window.dccd.chart.loads.length >= 1")
    first = ui.probe("window.dccd.chart.loads[0]")
    assert first["bars"] == 5000 - (GAP[1] - GAP[0])
    assert ui.wait("window.dccd.chart.markers >= 1") >= 1  # the inventory's gap
    ui.page.locator("#chart").hover(position={"x": 300, "y": 200})
    legend = ui.page.locator("#ch-legend").inner_text()
    assert all(k in legend for k in ("O ", "H ", "L ", "C ", "V ", "Z")), legend
    box = ui.page.locator("#chart").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    ui.page.mouse.move(cx, cy)
    for _ in range(25):  # zoom out as far as the chart goes
        ui.page.mouse.wheel(0, 400)
    for _ in range(4):  # then drag towards the past: older pages load when the oldest bar comes into view
        ui.page.mouse.move(box["x"] + 60, cy)
        ui.page.mouse.down()
        ui.page.mouse.move(box["x"] + box["width"] - 80, cy, steps=8)
        ui.page.mouse.up()
    ui.wait("window.dccd.chart.olderPages >= 1")
    assert ui.probe("window.dccd.chart.bars") >= 2 * first["bars"]
    shoot(ui, "chart")
    t0 = time.monotonic()
    ui.page.click("#ch-all")
    ui.wait("window.dccd.chart.loads.some(l => l.all)", timeout_s=60)
    wall_ms = (time.monotonic() - t0) * 1000
    year = ui.probe("window.dccd.chart.loads.find(l => l.all)")
    assert year["bars"] == YEAR_BARS - (GAP[1] - GAP[0])
    ui.figures["year of 1m bars: fetch + parse + build"] = year["fetchMs"]
    ui.figures["year of 1m bars: setData"] = year["setDataMs"]
    ui.figures["year of 1m bars: charted (in page)"] = year["totalMs"]
    ui.figures["year of 1m bars: click to charted"] = wall_ms
    ui.page.screenshot(path=str(ARTIFACTS / "chart-year-1400.png"))
    assert ui.errors() == []


def test_a_backfill_started_from_the_ui_shows_progress_then_its_bars_on_the_chart(ui: Ui) -> None:
    ui.goto("#/runs")
    ui.page.select_option("#bf-exchange", "coinbase")
    ui.page.fill("#bf-symbols", "BTC/USD")
    ui.page.fill("#bf-span", "1m")
    ui.page.fill("#bf-start", "2024-01-01T00:00Z")
    ui.page.fill("#bf-end", "2024-01-01T02:00Z")
    ui.page.click("#bf button[type=submit]")
    ui.page.wait_for_function(
        "() => document.querySelector('#run-detail dl') && document.querySelector('#run-detail').textContent.includes('succeeded')",
        timeout=30_000,
    )
    detail = ui.page.locator("#run-detail").inner_text()
    assert "120 / 120 bars" in detail and "coinbase BTC/USD ohlc 1m" in detail
    width = ui.page.eval_on_selector("#run-detail .bar > div", "e => e.style.width")
    assert width in ("100%", "100.0%")
    shoot(ui, "runs")
    ui.page.click("#run-detail a:has-text('chart it')")
    ui.wait("window.dccd.chart.loads.length >= 1 && document.querySelector('#ch-exchange').value === 'coinbase'")
    ui.page.wait_for_function("() => window.dccd.chart.loads.some(l => l.bars === 120)")
    assert ui.errors() == []


def test_a_failed_run_shows_its_error(ui: Ui) -> None:
    """A backfill of a symbol the exchange does not list fails; the run's error text is shown."""
    ui.goto("#/runs")
    ui.page.select_option("#bf-exchange", "binance")
    ui.page.fill("#bf-symbols", "ETH/USDT")
    ui.page.fill("#bf-start", "2024-01-01T00:00Z")
    ui.page.fill("#bf-end", "2024-01-01T01:00Z")
    ui.page.click("#bf button[type=submit]")
    ui.page.wait_for_selector("#run-detail .error", timeout=30_000)
    assert (
        ui.page.locator("#run-detail .error").inner_text()
        == "error: binance: symbol ETH/USDT is not listed (3 markets listed)"
    )
    ui.page.select_option("#runs-state", "failed")
    ui.page.wait_for_function(
        "() => [...document.querySelectorAll('#runs tr')].some(tr => tr.textContent.includes('ETH/USDT is not listed'))"
    )
    # A bad request never starts a run: its one-line error sits under the form.
    ui.page.fill("#bf-span", "7m")
    ui.page.click("#bf button[type=submit]")
    ui.page.wait_for_function("() => document.querySelector('#bf-msg').textContent.startsWith('span:')")
    assert "err" in ui.page.get_attribute("#bf-msg", "class")
    assert ui.errors(allow=("status of 400",)) == []


def test_a_running_backfill_can_be_cancelled_from_its_detail(ui: Ui) -> None:
    """A day of trades (864,000 from the fake) is still paging when Cancel is clicked: the run ends cancelled."""
    ui.goto("#/runs")
    ui.page.select_option("#bf-exchange", "binance")
    ui.page.fill("#bf-symbols", "BTC/USDT")
    ui.page.select_option("#bf-type", "trades")
    ui.page.fill("#bf-start", "2024-01-01T00:00Z")
    ui.page.fill("#bf-end", "2024-01-02T00:00Z")
    ui.page.click("#bf button[type=submit]")
    ui.page.locator("#run-detail button", has_text="Cancel run").click()
    ui.page.wait_for_function("() => document.querySelector('#run-detail dd.state-cancelled') !== null", timeout=30_000)
    assert ui.page.inner_text("#run-action-msg") in ("cancelled", "")
    ui.page.select_option("#bf-type", "ohlc")
    assert ui.errors() == []


def test_a_bad_symbol_in_live_trades_shows_the_error(ui: Ui) -> None:
    ui.goto("#/streams")
    ui.page.wait_for_function("() => document.querySelectorAll('#streams tr').length >= 2")
    ui.page.fill("#lt-symbol", "BTCUSDT")
    ui.page.click("#lt-go")
    ui.page.wait_for_function("() => document.querySelector('#lt-msg').textContent !== ''")
    assert ui.page.inner_text("#lt-msg").startswith("symbol: 'BTCUSDT' is not a symbol")
    assert ui.page.inner_text("#lt-state") == "error"
    ui.page.fill("#lt-symbol", "DOGE/USDT")  # well formed, but nothing records it
    ui.page.click("#lt-go")
    ui.page.wait_for_function("() => document.querySelector('#lt-msg').textContent.includes('no running stream')")
    ui.page.fill("#lt-symbol", "BTC/USDT")
    ui.page.click("#lt-go")
    ui.page.wait_for_function("() => document.querySelectorAll('#trades tr').length >= 3")
    assert ui.page.inner_text("#lt-msg") == ""
    shoot(ui, "streams")
    assert ui.errors(allow=("status of 400",)) == []


def test_jobs_can_be_created_run_now_and_deleted(ui: Ui) -> None:
    ui.goto("#/jobs")
    ui.page.select_option("#job-exchange", "binance")
    ui.page.fill("#job-symbols", "BTC/USDT")
    ui.page.fill("#job-span", "1h")
    ui.page.fill("#job-start", "2024-01-01T00:00Z")
    ui.page.fill("#job-every", "1d")
    ui.page.click("#job-form button[type=submit]")
    ui.page.wait_for_function("() => document.querySelector('#job-form-msg').textContent.startsWith('created')")
    row = ui.page.locator("#jobs tr", has_text="api")
    assert "every 1d" in row.inner_text() and "never ran" in row.inner_text()
    row.locator("button", has_text="Run now").click()
    ui.page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs .msg')].some(m => m.textContent.startsWith('started'))"
    )
    ui.page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs tr')].some(tr => /succeeded|partial|running/.test(tr.textContent) && tr.textContent.includes('api'))",
        timeout=30_000,
    )
    shoot(ui, "jobs")
    ui.page.locator("#jobs tr", has_text="api").locator("button", has_text="Delete").click()
    ui.page.wait_for_function(
        "() => ![...document.querySelectorAll('#jobs tr')].some(tr => tr.children[1].textContent === 'api')"
    )
    assert ui.errors() == []


def test_data_browser_shows_coverage_with_gaps_and_charts_on_click(ui: Ui) -> None:
    ui.goto("#/data")
    row = ui.page.locator("#inventory tr", has_text="ohlc 1m").filter(has_text="binance")
    row.wait_for()
    assert row.locator(".timeline .gap").count() == 1
    shoot(ui, "data")
    row.locator("td").first.click()
    ui.page.wait_for_function(
        "() => location.hash.startsWith('#/chart') && document.querySelector('#ch-span').value === '1m'"
    )
    assert ui.errors() == []


def test_scanners_screen_runs_a_scan_or_says_it_is_unavailable(ui: Ui) -> None:
    """With issue 16's API: a scan from the form shows its hits and the chart marks them; without: says so."""
    has_scanners = "/api/v1/scanners" in ui.http.get("/schema/openapi.json").json()["paths"]
    ui.goto("#/scanners")
    if not has_scanners:
        ui.page.wait_for_function(
            "() => document.querySelector('#scan-unavailable-msg').textContent.includes('not available')"
        )
        shoot(ui, "scanners")
        assert ui.errors() == []
        return
    ui.page.wait_for_function("() => document.querySelectorAll('#scan-name option').length > 0")
    ui.page.select_option("#scan-name", "relative_volume")
    ui.page.fill("#scan-span", "1m")
    ui.page.fill("#scan-exchanges", "binance")
    ui.page.fill("#scan-symbols", "BTC/USDT")
    # The year's last stored bar has volume 159 over a mean of 148.5 for the 20 before it: rvol 1.07.
    ui.page.fill("#scan-p-min_rvol", "1.05")
    ui.page.click("#scan-form button[type=submit]")
    ui.page.wait_for_function("() => /succeeded/.test(document.querySelector('#scan-msg').textContent)", timeout=60_000)
    assert "relative_volume 1m: 1 hits in 1 symbols" in ui.page.inner_text("#scan-msg")
    hit = ui.page.locator("#signals tr", has_text="relative_volume").filter(has_text="binance").first
    hit.wait_for()
    assert "2023-12-31T23:59" in hit.inner_text() and "rvol" in hit.inner_text()
    shoot(ui, "scanners")
    hit.click()  # to the chart, which marks the hit
    ui.page.wait_for_function("() => location.hash.startsWith('#/chart')")
    ui.wait("window.dccd.chart.signalMarkers >= 1")
    ui.page.screenshot(path=str(ARTIFACTS / "chart-signal-1400.png"))
    assert ui.errors() == []


def test_snapshots_screen_lists_them_when_the_server_has_them(ui: Ui) -> None:
    """With issue 17's API the Snapshots tab lists ``GET /api/v1/snapshots``; without it the tab is hidden."""
    has = "/api/v1/snapshots" in ui.http.get("/schema/openapi.json").json()["paths"]
    ui.goto("#/dashboard")
    ui.page.wait_for_function("() => document.querySelectorAll('#dash-streams tr').length > 0")
    assert ui.page.is_visible("#nav-snapshots") == has
    if not has:
        return
    ui.page.click("#nav-snapshots")
    expected = len(ui.http.get("/api/v1/snapshots").json())
    ui.page.wait_for_function(
        f"() => document.querySelectorAll('#snapshots tr').length === {expected} && "
        "(document.querySelector('#snap-msg').textContent !== '' || " + str(expected) + " > 0)"
    )
    shoot(ui, "snapshots")
    assert ui.errors() == []


def test_screens_and_rows_are_reachable_by_keyboard(ui: Ui) -> None:
    """Tab reaches the nav links, Enter opens a screen, and Enter on a focused run row opens its detail."""
    ui.goto("#/dashboard")
    ui.page.wait_for_function("() => document.querySelectorAll('#dash-streams tr').length > 0")
    ui.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(60):  # from wherever the focus starts, through the page (and around) to the Runs link
        ui.page.keyboard.press("Tab")
        if ui.page.evaluate("() => document.activeElement.dataset.screen") == "runs":
            break
    else:
        raise AssertionError("Tab never reached the Runs link")
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_function("() => !document.querySelector('#screen-runs').hidden")
    ui.page.wait_for_function("() => document.querySelectorAll('#runs tr').length > 0")
    ui.page.focus("#runs tr")
    ui.page.keyboard.press("Enter")
    ui.page.wait_for_function("() => document.querySelector('#run-detail dl') !== null")
    assert ui.errors() == []


def test_schema_page_renders_offline(ui: Ui) -> None:
    """/schema shows the API (Swagger UI from the installed package) with no request leaving this server."""
    outside: list[str] = []
    ui.page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(ui.base) else None)
    ui.page.goto(ui.base + "/schema")
    ui.page.wait_for_function("() => document.querySelectorAll('.opblock-summary-path').length >= 20")
    paths = ui.page.eval_on_selector_all(
        ".opblock-summary-path", "es => es.map(e => e.textContent.replace(/\\u200b/g, ''))"
    )
    assert "/api/v1/backfills" in paths
    assert outside == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ui.page.screenshot(path=str(ARTIFACTS / "schema-1400.png"))
    assert ui.errors() == []
