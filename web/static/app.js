// dccd web UI: a plain client of the HTTP API (no build step, no framework). Screens are hash routes.
"use strict";
(() => {
const $ = (id) => document.getElementById(id);
const T0 = performance.now();
// State the browser tests read (window.dccd); nothing else uses it.
const probe = { firstPaintMs: null, chart: { bars: 0, loads: [], forming: 0, lastForming: null, markers: 0 }, errors: [] };
window.dccd = probe;

const SPAN_S = { "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400,
  "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400, "3d": 259200, "1w": 604800, "1M": 2592000 };
const PAGE_BARS = 5000;
const MAX_TAPE = 80;

function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; }
function td(text, cls) { return el("td", text, cls); }
function isoNs(ns) { if (ns === null || ns === undefined) return ""; return new Date(Number(ns) / 1e6).toISOString().replace(".000Z", "Z"); }
function shortNs(ns) { return ns ? isoNs(ns).slice(5, 19).replace("T", " ") : ""; } // MM-DD hh:mm:ss (UTC), for tables
function isoS(s) { return new Date(s * 1000).toISOString().replace(".000Z", "Z"); }
function short(id) { return String(id || "").slice(0, 12); }
function fmtNum(x, digits) { if (x === null || x === undefined || Number.isNaN(x)) return ""; return Number(x).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 8 : digits }); }
function slug(sym) { return sym.replace("/", "-").replace(":perp", "-PERP").toUpperCase(); }
function say(target, text, isError) { const m = $(target); if (!m) return; m.textContent = text || ""; m.className = "msg" + (isError ? " err" : ""); }
function ago(ms) { if (ms === null) return "never"; const s = ms / 1000; if (s < 1) return "<1 s"; if (s < 120) return s.toFixed(0) + " s"; if (s < 7200) return (s / 60).toFixed(0) + " min"; return (s / 3600).toFixed(1) + " h"; }

// ---- API -------------------------------------------------------------------------------------------------------
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("dccd-token") || "";
tokenInput.addEventListener("input", () => { if (tokenInput.value) sessionStorage.setItem("dccd-token", tokenInput.value); else sessionStorage.removeItem("dccd-token"); });

class ApiError extends Error { constructor(status, message) { super(message); this.status = status; } }
async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const t = tokenInput.value; if (t && method !== "GET") headers["Authorization"] = "Bearer " + t;
  let r;
  try { r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }); }
  catch (e) { throw new ApiError(0, "server unreachable: " + e.message); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, data.error || ("HTTP " + r.status));
  return data;
}

// An EventSource whose HTTP errors are read and shown (an EventSource alone only says "error" and gives up).
function sse(url, { state, msg, onOpen, handlers }) {
  const es = new EventSource(url);
  const setState = (text, cls) => { if (state) { $(state).textContent = text; $(state).className = "badge" + (cls ? " " + cls : ""); } };
  setState("connecting");
  es.onopen = () => { setState("live", "ok"); if (onOpen) onOpen(); };
  es.onerror = async () => {
    if (es.readyState !== EventSource.CLOSED) { setState("reconnecting", "warn"); return; }
    const ctl = new AbortController(); const timer = setTimeout(() => ctl.abort(), 5000);
    let text = "the server closed the stream";
    try {
      const r = await fetch(url, { headers: { "Accept": "application/json" }, signal: ctl.signal });
      if (!r.ok) { const d = await r.json().catch(() => ({})); text = d.error || ("HTTP " + r.status); } else ctl.abort();
    } catch (e) { if (e.name !== "AbortError") text = "server unreachable"; }
    clearTimeout(timer);
    setState("error", "bad"); if (msg) say(msg, text, true);
  };
  for (const [name, fn] of Object.entries(handlers || {})) es.addEventListener(name, (e) => { try { fn(JSON.parse(e.data)); } catch (err) { console.warn(name, err); } });
  return es;
}

// Optional routes (scanners, signals, snapshots) are looked up in the OpenAPI document once, so the page never
// requests a route this server does not have.
let routesPromise = null;
function hasRoute(path) {
  if (!routesPromise) routesPromise = fetch("/schema/openapi.json").then((r) => r.json()).then((d) => new Set(Object.keys(d.paths || {}))).catch(() => new Set());
  return routesPromise.then((paths) => paths.has(path));
}

// ---- shared lists ----------------------------------------------------------------------------------------------
let exchanges = [];
let inventory = [];
async function loadExchanges() {
  exchanges = await api("GET", "/api/v1/exchanges");
  for (const id of ["bf-exchange", "lt-exchange", "st-exchange", "job-exchange"]) {
    const sel = $(id); const keep = sel.value; sel.replaceChildren(...exchanges.map((x) => el("option", x.name))); if (keep) sel.value = keep;
  }
}
async function loadInventoryList() { inventory = await api("GET", "/api/v1/inventory"); return inventory; }

// ---- router ----------------------------------------------------------------------------------------------------
const screens = {};
let current = null;
function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "dashboard";
  const [name, query] = hash.split("?");
  const screen = screens[name] ? name : "dashboard";
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== "screen-" + screen;
  for (const a of document.querySelectorAll("nav a")) { a.classList.toggle("active", a.dataset.screen === screen); if (a.dataset.screen === screen) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current"); }
  if (current && current !== screen && screens[current].leave) screens[current].leave();
  current = screen;
  screens[screen].enter(new URLSearchParams(query || ""));
}
window.addEventListener("hashchange", route);

// ---- header: readiness and the events feed ---------------------------------------------------------------------
async function loadReady() {
  try { const r = await fetch("/ready"); const d = await r.json(); $("ready").textContent = d.ready ? "ready" : "not ready: " + d.reasons.join("; "); $("ready").title = $("ready").textContent; $("ready").className = "badge " + (d.ready ? "ok" : "bad"); }
  catch (e) { $("ready").textContent = "server unreachable"; $("ready").className = "badge bad"; }
}
const eventHandlers = { run_progressed: [], run_state_changed: [], run_logged: [], part_written: [], lagged: [] };
function onEvent(name, fn) { eventHandlers[name].push(fn); }
function watchEvents() {
  const es = new EventSource("/api/v1/events");
  es.onopen = () => { $("events-state").textContent = "events: live"; $("events-state").className = "badge ok"; };
  es.onerror = () => { $("events-state").textContent = "events: reconnecting"; $("events-state").className = "badge warn"; };
  for (const name of Object.keys(eventHandlers)) es.addEventListener(name, (e) => { const m = JSON.parse(e.data); for (const fn of eventHandlers[name]) fn(m); });
}

// ---- dashboard -------------------------------------------------------------------------------------------------
const rates = new Map(); // stream id -> {messages, at}
let dashTimer = null;
function streamRow(s, cols) {
  const tr = el("tr");
  const prev = rates.get(s.id); const now = performance.now();
  let rate = "";
  if (prev && now > prev.at) rate = fmtNum((s.messages - prev.messages) / ((now - prev.at) / 1000), 1);
  rates.set(s.id, { messages: s.messages, at: now });
  const age = s.last_data_ns ? Date.now() - Number(s.last_data_ns) / 1e6 : null;
  const cells = { id: td(short(s.id)), exchange: td(s.exchange), symbols: td((s.symbols || []).join(", ")), type: td(s.type + (s.span ? " " + s.span : "")),
    state: td(s.state, "state-" + s.state), rate: td(rate, "num"), age: td(s.state === "stopped" ? "" : ago(age), "num"), messages: td(fmtNum(s.messages), "num"),
    rows: td(fmtNum(s.rows), "num"), reconnects: td(fmtNum(s.reconnects), "num"), error: td(s.error || "", "wrap err") };
  tr.append(...cols.map((c) => cells[c]));
  return tr;
}
async function dashRefresh() {
  try {
    const list = await api("GET", "/api/v1/streams");
    $("dash-streams").replaceChildren(...list.map((s) => streamRow(s, ["id", "exchange", "symbols", "type", "state", "rate", "age", "reconnects"])));
    say("dash-streams-msg", list.length ? "" : "no live recordings (start one in Streams)");
  } catch (e) { $("dash-streams").replaceChildren(); say("dash-streams-msg", e.message, true); }
  try {
    const runs = await api("GET", "/api/v1/runs?limit=8");
    $("dash-runs").replaceChildren(...runs.map((r) => { const tr = el("tr", null, "clickable"); tr.tabIndex = 0; tr.append(td(short(r.run_id)), td(dataset(r)), td(r.state, "state-" + r.state), td(fmtNum(r.rows_written), "num")); const go = () => { location.hash = "#/runs?run=" + r.run_id; }; tr.addEventListener("click", go); tr.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); }); return tr; }));
    say("dash-runs-msg", runs.length ? "" : "no runs yet");
  } catch (e) { say("dash-runs-msg", e.message, true); }
}
let reachChecked = false;
async function dashExchanges() {
  try { if (!exchanges.length) await loadExchanges(); } catch (e) { say("dash-exchanges-msg", e.message, true); return; }
  const rows = exchanges.map((x) => {
    const tr = el("tr"); const reach = td(x.error ? x.error : "checking…", x.error ? "wrap err" : "");
    const ws = x.capabilities.filter((c) => c.transport === "ws").map((c) => c.data_type);
    tr.append(td(x.name), reach, td([...new Set(ws)].join(", ")));
    if (!x.error) {
      api("GET", "/api/v1/exchanges/" + encodeURIComponent(x.name) + "/symbols")
        .then((list) => { reach.textContent = "yes (" + list.length + " markets)"; reach.className = "state-succeeded"; })
        .catch((e) => { reach.textContent = "no: " + e.message; reach.className = "wrap state-failed"; });
    }
    return tr;
  });
  $("dash-exchanges").replaceChildren(...rows);
  reachChecked = true;
}
screens.dashboard = {
  enter() {
    dashRefresh(); if (!reachChecked) dashExchanges();
    clearInterval(dashTimer); dashTimer = setInterval(dashRefresh, 2000);
  },
  leave() { clearInterval(dashTimer); },
};
function dataset(r) { return [r.exchange, r.symbol, r.data_type, r.span].filter(Boolean).join(" "); }

// ---- chart -----------------------------------------------------------------------------------------------------
const LWC = window.LightweightCharts;
const chartState = { chart: null, candles: null, volume: null, times: [], bars: [], vols: [], ds: null, first: null, loading: false, exhausted: false, live: null, tape: null, signals: [], gaps: [] };
function ensureChart() {
  if (chartState.chart) return chartState.chart;
  if (!LWC) { say("ch-msg", "the chart library is not installed on the server: pip install 'dccd[ui]' (lightweight-charts)", true); return null; }
  const chart = LWC.createChart($("chart"), {
    autoSize: true,
    layout: { background: { color: "#182029" }, textColor: "#d8e0e8" },
    grid: { vertLines: { color: "#222c38" }, horzLines: { color: "#222c38" } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#2a3542" },
    rightPriceScale: { borderColor: "#2a3542" },
    crosshair: { mode: LWC.CrosshairMode.Normal },
  });
  chartState.candles = chart.addCandlestickSeries({ upColor: "#3fb950", downColor: "#f85149", borderVisible: false, wickUpColor: "#3fb950", wickDownColor: "#f85149" });
  chartState.volume = chart.addHistogramSeries({ priceFormat: { type: "volume" }, priceScaleId: "vol" });
  chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  chartState.candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
  chart.subscribeCrosshairMove((p) => {
    const bar = p && p.seriesData ? p.seriesData.get(chartState.candles) : null;
    const vol = p && p.seriesData ? p.seriesData.get(chartState.volume) : null;
    showLegend(bar, vol);
  });
  chart.timeScale().subscribeVisibleLogicalRangeChange((range) => { if (range && range.from < 20) loadOlder(); });
  chartState.chart = chart;
  return chart;
}
function showLegend(bar, vol) {
  const lg = $("ch-legend");
  if (!bar) { const n = chartState.bars.length; bar = n ? chartState.bars[n - 1] : null; vol = n ? chartState.vols[n - 1] : null; }
  if (!bar) { lg.replaceChildren(); return; }
  const parts = [["", isoS(bar.time)], ["O ", bar.open], ["H ", bar.high], ["L ", bar.low], ["C ", bar.close], ["V ", vol ? vol.value : ""]];
  lg.replaceChildren(...parts.map(([k, v]) => el("b", k + (typeof v === "number" ? fmtNum(v) : v))));
}
function volBar(time, open, close, volume) { return { time, value: volume, color: close >= open ? "rgba(63,185,80,.45)" : "rgba(248,81,73,.45)" }; }
async function fetchBars(ds, startS, endS) {
  const q = new URLSearchParams({ span: ds.span, format: "columns" });
  if (startS !== null) q.set("start", isoS(startS));
  if (endS !== null) q.set("end", isoS(endS));
  const url = "/api/v1/data/ohlc/" + encodeURIComponent(ds.exchange) + "/" + encodeURIComponent(slug(ds.symbol)) + "?" + q;
  const r = await fetch(url, { headers: { "Accept": "application/json" } });
  if (!r.ok) { const d = await r.json().catch(() => ({})); throw new ApiError(r.status, d.error || ("HTTP " + r.status)); }
  const blocks = await r.json();
  probe.chart.parsedAt = performance.now();
  const times = [], bars = [], vols = [];
  for (const b of blocks) {
    const n = b.ts.length;
    for (let i = 0; i < n; i++) {
      const t = Math.round(b.ts[i] / 1e9);
      times.push(t);
      bars.push({ time: t, open: b.open[i], high: b.high[i], low: b.low[i], close: b.close[i] });
      vols.push(volBar(t, b.open[i], b.close[i], b.volume[i]));
    }
  }
  return { times, bars, vols };
}
function setAll() {
  chartState.candles.setData(chartState.bars);
  chartState.volume.setData(chartState.vols);
  probe.chart.bars = chartState.bars.length;
  applyMarkers();
  showLegend(null);
}
async function loadChart(all) {
  const ds = chartDataset();
  if (!ds) return;
  const chart = ensureChart(); if (!chart) return;
  stopLive();
  say("ch-msg", "");
  chartState.ds = ds; chartState.exhausted = false;
  const span = SPAN_S[ds.span] || 60;
  const firstS = Date.parse(ds.entry.first) / 1000, lastS = Date.parse(ds.entry.last) / 1000;
  chartState.first = firstS;
  const endS = lastS + span;
  const startS = all ? firstS : Math.max(firstS, endS - PAGE_BARS * span);
  const t0 = performance.now();
  $("ch-state").textContent = "loading"; $("ch-state").className = "badge";
  try {
    const got = await fetchBars(ds, startS, endS);
    const fetched = performance.now();
    Object.assign(chartState, got);
    chartState.exhausted = startS <= firstS;
    setAll();
    const set = performance.now();
    chart.timeScale().scrollToRealTime(); // the newest bars in view; every loaded bar is a drag away
    await new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
    const done = performance.now();
    probe.chart.loads.push({ bars: got.bars.length, all: !!all, fetchMs: fetched - t0, setDataMs: set - fetched, totalMs: done - t0 });
    $("ch-info").textContent = fmtNum(got.bars.length) + " bars loaded in " + fmtNum((done - t0) / 1000, 2) + " s" + (all ? " (all stored)" : " (older bars load as you scroll back)");
    $("ch-state").textContent = "loaded"; $("ch-state").className = "badge ok";
    chartState.exhausted = startS <= firstS;
  } catch (e) { say("ch-msg", e.message, true); $("ch-state").textContent = "error"; $("ch-state").className = "badge bad"; return; }
  loadOverlays(ds);
  if ($("ch-live").checked) startLive(ds);
  startTape(ds);
}
async function loadOlder() {
  const ds = chartState.ds;
  if (!ds || chartState.loading || chartState.exhausted || !chartState.times.length) return;
  chartState.loading = true;
  const span = SPAN_S[ds.span] || 60;
  const endS = chartState.times[0];
  const startS = Math.max(chartState.first, endS - PAGE_BARS * span);
  if (startS >= endS) { chartState.exhausted = true; chartState.loading = false; return; }
  try {
    const got = await fetchBars(ds, startS, endS);
    if (ds !== chartState.ds) return;
    chartState.times = got.times.concat(chartState.times);
    chartState.bars = got.bars.concat(chartState.bars);
    chartState.vols = got.vols.concat(chartState.vols);
    const range = chartState.chart.timeScale().getVisibleLogicalRange();
    setAll();
    if (range) chartState.chart.timeScale().setVisibleLogicalRange({ from: range.from + got.bars.length, to: range.to + got.bars.length });
    chartState.exhausted = startS <= chartState.first;
    probe.chart.olderPages = (probe.chart.olderPages || 0) + 1;
    $("ch-info").textContent = fmtNum(chartState.bars.length) + " bars loaded" + (chartState.exhausted ? " (all stored)" : "");
  } catch (e) { say("ch-msg", e.message, true); }
  finally { chartState.loading = false; }
}
function upsertBar(bar, volume) {
  const times = chartState.times; const n = times.length;
  const last = n ? times[n - 1] : -Infinity;
  if (bar.time < last) return false; // older than the newest bar: closed for the chart
  const vb = volBar(bar.time, bar.open, bar.close, volume);
  if (bar.time === last) { chartState.bars[n - 1] = bar; chartState.vols[n - 1] = vb; }
  else { times.push(bar.time); chartState.bars.push(bar); chartState.vols.push(vb); }
  chartState.candles.update(bar); chartState.volume.update(vb);
  probe.chart.bars = chartState.bars.length;
  return true;
}
function startLive(ds) {
  const q = new URLSearchParams({ exchange: ds.exchange, symbol: ds.symbol, span: ds.span });
  chartState.live = sse("/api/v1/live/candles?" + q, { state: "ch-state", msg: "ch-msg", handlers: {
    candles: (list) => { for (const c of list) upsertBar({ time: Math.round(c.ts / 1e9), open: c.open, high: c.high, low: c.low, close: c.close }, c.volume); },
    forming: (f) => {
      const t = Math.round(f.ts / 1e9); const n = chartState.times.length;
      let bar = { time: t, open: f.open, high: f.high, low: f.low, close: f.close }; let vol = f.volume;
      if (!f.complete && n && chartState.times[n - 1] === t) { // the feed saw part of this bar: merge with what we hold
        const held = chartState.bars[n - 1];
        bar = { time: t, open: held.open, high: Math.max(held.high, f.high), low: Math.min(held.low, f.low), close: f.close };
        vol = Math.max(chartState.vols[n - 1].value, f.volume);
      }
      if (upsertBar(bar, vol)) { probe.chart.forming += 1; probe.chart.lastForming = bar; showLegend(null); }
    },
    lagged: () => {},
  } });
}
function stopLive() {
  if (chartState.live) { chartState.live.close(); chartState.live = null; }
  if (chartState.tape) { chartState.tape.close(); chartState.tape = null; }
}
function startTape(ds) {
  $("tape").replaceChildren(); say("tape-msg", "");
  const q = new URLSearchParams({ exchange: ds.exchange, symbol: ds.symbol });
  chartState.tape = sse("/api/v1/live/trades?" + q, { state: "tape-state", msg: "tape-msg", onOpen: () => recordedNote(ds.exchange, ds.symbol, "tape-msg"), handlers: { trades: (list) => addTrades("tape", list, false) } });
}
function addTrades(tbodyId, list, withSide) {
  const tbody = $(tbodyId);
  for (const t of list.slice(-MAX_TAPE)) {
    const tr = el("tr"); const cls = t.side || "";
    tr.append(td(new Date(Number(t.ts) / 1e6).toISOString().slice(11, 23)));
    if (withSide) tr.append(td(t.side || "", cls));
    tr.append(td(fmtNum(t.price), "num " + cls), td(fmtNum(t.amount), "num"));
    tbody.prepend(tr);
  }
  while (tbody.children.length > MAX_TAPE) tbody.lastChild.remove();
}
async function recordedNote(exchange, symbol, msgId) {
  try {
    const streams = await api("GET", "/api/v1/streams");
    const on = streams.some((s) => s.exchange === exchange && s.type === "trades" && s.state !== "stopped" && (s.symbols || []).includes(symbol));
    if (!on) say(msgId, "no running stream records " + exchange + " " + symbol + " trades: nothing will arrive until one is started (Streams)", true);
  } catch (e) { /* the streams route is optional */ }
}
async function loadOverlays(ds) {
  chartState.gaps = []; chartState.signals = [];
  if ($("ch-gaps").checked) {
    for (const g of ds.entry.gap_ranges || []) if (g.unit === "ns" && g.from) chartState.gaps.push({ time: Date.parse(g.from) / 1000, text: "gap " + (g.count === null ? "" : fmtNum(g.count)) });
  }
  if ($("ch-signals").checked && await hasRoute("/api/v1/signals")) {
    try {
      const list = await api("GET", "/api/v1/signals?" + new URLSearchParams({ limit: "1000" }));
      chartState.signals = list.filter((s) => s.exchange === ds.exchange && s.symbol === ds.symbol && (!s.span || s.span === ds.span)).map((s) => ({ time: Math.round(Number(s.ts) / 1e9), text: s.scanner }));
    } catch (e) { if (e.status !== 404) say("ch-msg", "signals: " + e.message, true); }
  }
  applyMarkers();
}
function nearestTime(t) {
  const times = chartState.times; if (!times.length) return null;
  let lo = 0, hi = times.length - 1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (times[mid] <= t) lo = mid; else hi = mid - 1; }
  return times[lo] <= t ? times[lo] : null;
}
function applyMarkers() {
  if (!chartState.candles) return;
  const marks = [];
  for (const g of chartState.gaps) { const t = nearestTime(g.time); if (t !== null) marks.push({ time: t, position: "aboveBar", color: "#f85149", shape: "square", text: g.text }); }
  for (const s of chartState.signals) { const t = nearestTime(s.time); if (t !== null) marks.push({ time: t, position: "belowBar", color: "#d29922", shape: "arrowUp", text: s.text }); }
  marks.sort((a, b) => a.time - b.time);
  chartState.candles.setMarkers(marks);
  probe.chart.markers = marks.length;
  probe.chart.signalMarkers = marks.filter((m) => m.shape === "arrowUp").length;
}
function ohlcDatasets() { return inventory.filter((d) => d.data_type === "ohlc" && d.rows > 0); }
function fillPickers(want) {
  const list = ohlcDatasets();
  const exs = [...new Set(list.map((d) => d.exchange))].sort();
  const exSel = $("ch-exchange"), symSel = $("ch-symbol"), spanSel = $("ch-span");
  const ex = want.exchange && exs.includes(want.exchange) ? want.exchange : (exSel.value && exs.includes(exSel.value) ? exSel.value : exs[0]);
  exSel.replaceChildren(...exs.map((x) => el("option", x))); if (ex) exSel.value = ex;
  const syms = [...new Set(list.filter((d) => d.exchange === ex).map((d) => d.symbol))].sort();
  const sym = want.symbol && syms.includes(want.symbol) ? want.symbol : (syms.includes(symSel.value) ? symSel.value : syms[0]);
  symSel.replaceChildren(...syms.map((x) => el("option", x))); if (sym) symSel.value = sym;
  const spans = list.filter((d) => d.exchange === ex && d.symbol === sym).map((d) => d.span).sort((a, b) => (SPAN_S[a] || 0) - (SPAN_S[b] || 0));
  const sp = want.span && spans.includes(want.span) ? want.span : (spans.includes(spanSel.value) ? spanSel.value : spans[0]);
  spanSel.replaceChildren(...spans.map((x) => el("option", x))); if (sp) spanSel.value = sp;
  if (!list.length) say("ch-msg", "no stored OHLC bars yet: start a backfill (Runs) or a stream");
}
function chartDataset() {
  const ex = $("ch-exchange").value, sym = $("ch-symbol").value, span = $("ch-span").value;
  const entry = ohlcDatasets().find((d) => d.exchange === ex && d.symbol === sym && d.span === span);
  if (!entry) { say("ch-msg", "pick a stored dataset", true); return null; }
  return { exchange: ex, symbol: sym, span, entry };
}
for (const id of ["ch-exchange", "ch-symbol"]) $(id).addEventListener("change", () => fillPickers({}));
$("ch-load").addEventListener("click", () => loadChart(false));
$("ch-all").addEventListener("click", () => loadChart(true));
$("ch-live").addEventListener("change", () => { if (!chartState.ds) return; if ($("ch-live").checked) { if (!chartState.live) startLive(chartState.ds); } else if (chartState.live) { chartState.live.close(); chartState.live = null; $("ch-state").textContent = "paused"; } });
for (const id of ["ch-signals", "ch-gaps"]) $(id).addEventListener("change", () => { if (chartState.ds) loadOverlays(chartState.ds); });
screens.chart = {
  async enter(q) {
    try { await loadInventoryList(); } catch (e) { say("ch-msg", e.message, true); return; }
    const want = { exchange: q.get("exchange"), symbol: q.get("symbol"), span: q.get("span") };
    fillPickers(want);
    const ds = chartDataset.call(null);
    if (ds && (q.get("exchange") || !chartState.ds || chartState.ds.exchange !== ds.exchange || chartState.ds.symbol !== ds.symbol || chartState.ds.span !== ds.span)) loadChart(q.get("all") === "1");
    else if (chartState.ds && !chartState.live && $("ch-live").checked) { startLive(chartState.ds); startTape(chartState.ds); }
  },
  leave() { stopLive(); $("ch-state").textContent = "paused"; $("ch-state").className = "badge"; },
};

// ---- data browser ----------------------------------------------------------------------------------------------
function timeline(d, lo, hi) {
  const box = el("div", null, "timeline"); box.setAttribute("role", "img");
  const f = Date.parse(d.first), l = Date.parse(d.last);
  const pos = (t) => (100 * (t - lo) / Math.max(1, hi - lo));
  const s = el("div", null, "span"); s.style.left = pos(f).toFixed(3) + "%"; s.style.width = Math.max(0.3, pos(l) - pos(f)).toFixed(3) + "%"; box.append(s);
  let n = 0;
  for (const g of d.gap_ranges || []) {
    if (!g.from || !g.to) continue;
    const a = Date.parse(g.from), b = Date.parse(g.to);
    const gd = el("div", null, "gap"); gd.style.left = pos(a).toFixed(3) + "%"; gd.style.width = Math.max(0, pos(b) - pos(a)).toFixed(3) + "%"; gd.title = g.from + " → " + g.to + (g.count !== null ? " (" + g.count + " missing)" : ""); box.append(gd);
    if (++n >= 500) break;
  }
  box.setAttribute("aria-label", d.first + " to " + d.last + ", " + (d.gap_ranges || []).length + " gaps");
  return box;
}
function gapCell(d) {
  const c = td(null, "num");
  if (!d.gap_ranges || !d.gap_ranges.length) { c.textContent = d.gap_kind ? "0" : "–"; return c; }
  const det = el("details"); det.className = "gaps";
  det.append(el("summary", d.gap_ranges.length + " (" + fmtNum(d.missing) + " missing)"));
  const ul = el("ul");
  for (const g of d.gap_ranges.slice(0, 100)) ul.append(el("li", (g.unit === "id" ? "ids " + g.lo + "…" + g.hi : g.from + " → " + g.to) + " (" + (g.count === null ? "time hole" : fmtNum(g.count) + " missing") + ", " + g.source + ")"));
  det.append(ul); c.append(det); return c;
}
async function loadInventory() {
  say("inv-msg", "loading…");
  try {
    const list = await loadInventoryList();
    say("inv-msg", list.length ? "" : "the lake is empty");
    const firsts = list.filter((d) => d.first).map((d) => Date.parse(d.first)), lasts = list.filter((d) => d.last).map((d) => Date.parse(d.last));
    const lo = Math.min(...firsts), hi = Math.max(...lasts);
    $("inv-range").textContent = list.length ? "timeline " + new Date(lo).toISOString().slice(0, 16) + " → " + new Date(hi).toISOString().slice(0, 16) : "";
    $("inventory").replaceChildren(...list.map((d) => {
      const tr = el("tr", null, "clickable"); tr.tabIndex = 0;
      const dl = td();
      for (const fmt of ["csv", "parquet", "json"]) {
        const q = new URLSearchParams({ format: fmt }); if (d.span) q.set("span", d.span);
        const a = el("a", fmt); a.href = "/api/v1/data/" + d.data_type + "/" + d.exchange + "/" + slug(d.symbol) + "?" + q; dl.append(a, document.createTextNode(" "));
      }
      const cov = td(); if (d.first && d.last) cov.append(timeline(d, lo, hi));
      tr.append(td(d.exchange), td(d.symbol), td(d.data_type + (d.span ? " " + d.span : "")), td(fmtNum(d.rows), "num"), td(d.first), td(d.last), gapCell(d), cov, dl);
      const go = () => {
        if (d.data_type === "ohlc") location.hash = "#/chart?" + new URLSearchParams({ exchange: d.exchange, symbol: d.symbol, span: d.span });
        else { const o = ohlcDatasets().find((x) => x.exchange === d.exchange && x.symbol === d.symbol); if (o) location.hash = "#/chart?" + new URLSearchParams({ exchange: o.exchange, symbol: o.symbol, span: o.span }); else say("inv-msg", "no OHLC bars stored for " + d.exchange + " " + d.symbol + " to chart (backfill ohlc first)", true); }
      };
      tr.addEventListener("click", (e) => { if (e.target.closest("a, summary, details")) return; go(); });
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target === tr) go(); });
      return tr;
    }));
  } catch (e) { say("inv-msg", e.message, true); }
}
$("inv-refresh").addEventListener("click", loadInventory);
screens.data = { enter() { loadInventory(); } };

// ---- runs ------------------------------------------------------------------------------------------------------
const runRows = new Map();
let selectedRun = null;
function setProgress(fill, done, total) { if (total) fill.style.width = Math.min(100, 100 * done / total).toFixed(1) + "%"; }
function runRow(r) {
  const tr = el("tr", null, "clickable"); tr.tabIndex = 0; tr.dataset.run = r.run_id;
  const bar = el("div", null, "bar"); const fill = el("div"); bar.append(fill);
  const prog = td(); prog.append(bar);
  const rows = td(fmtNum(r.rows_written), "num");
  tr.append(td(short(r.run_id)), td(r.operation), td(dataset(r)), td(r.state, "state-" + r.state), prog, rows, td(shortNs(r.started_ns)), td(r.error || "", "wrap err"));
  const p = r.progress || {}; setProgress(fill, p.done, p.total);
  runRows.set(r.run_id, { tr, fill, rows });
  const go = () => showRun(r.run_id);
  tr.addEventListener("click", go); tr.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  if (r.run_id === selectedRun) tr.classList.add("selected");
  return tr;
}
async function loadRuns() {
  const q = new URLSearchParams({ limit: "50" });
  if ($("runs-state").value) q.set("state", $("runs-state").value);
  if ($("runs-op").value) q.set("operation", $("runs-op").value);
  try { const list = await api("GET", "/api/v1/runs?" + q); runRows.clear(); $("runs").replaceChildren(...list.map(runRow)); say("runs-msg", list.length ? "" : "no runs match"); }
  catch (e) { say("runs-msg", e.message, true); }
}
async function rateLimited(exchange) {
  try {
    const text = await (await fetch("/metrics")).text();
    let n = 0;
    for (const line of text.split("\n")) if (line.startsWith("dccd_exchange_rate_limited_total{") && line.includes('exchange="' + exchange + '"')) n += Number(line.split(" ").pop());
    return n;
  } catch (e) { return null; }
}
const runLog = new Map(); // run id -> live log lines (this page's session)
async function showRun(id) {
  selectedRun = id;
  for (const [rid, r] of runRows) r.tr.classList.toggle("selected", rid === id);
  const box = $("run-detail");
  let r;
  try { r = await api("GET", "/api/v1/runs/" + encodeURIComponent(id)); }
  catch (e) { box.replaceChildren(el("p", e.message, "msg err")); return; }
  const dl = el("dl");
  const p = r.progress || {};
  const add = (k, v, cls) => { dl.append(el("dt", k)); const dd = el("dd", v, cls); dl.append(dd); return dd; };
  add("run", r.run_id); add("operation", r.operation); add("dataset", dataset(r)); add("state", r.state, "state-" + r.state);
  const bar = el("div", null, "bar"); const fill = el("div"); bar.append(fill); setProgress(fill, p.done, p.total);
  add("progress", (p.total ? fmtNum(p.done) + " / " + fmtNum(p.total) + " " + (p.unit || "") : fmtNum(p.done || 0) + " " + (p.unit || "")) + (p.pages ? " · " + fmtNum(p.pages) + " pages" : "")).append(bar);
  add("rows", fmtNum(r.rows_written) + (r.rows_quarantined ? " (" + fmtNum(r.rows_quarantined) + " quarantined)" : ""));
  add("started", isoNs(r.started_ns)); add("ended", isoNs(r.ended_ns));
  if (r.exchange) { const n = await rateLimited(r.exchange); add("429 waits", n === null ? "unknown" : fmtNum(n) + " rate-limited answers from " + r.exchange + " since the server started"); }
  const parts = [dl];
  if (r.error) parts.push(el("p", "error: " + r.error, "error"));
  const actions = el("div", null, "toolbar");
  if (r.state === "running" || r.state === "pending") {
    const b = el("button", "Cancel run"); b.type = "button";
    b.addEventListener("click", async () => { try { await api("DELETE", "/api/v1/runs/" + encodeURIComponent(r.run_id)); say("run-action-msg", "cancelled"); showRun(r.run_id); loadRuns(); } catch (e) { say("run-action-msg", e.message, true); } });
    actions.append(b);
  }
  if (r.operation === "backfill" && r.data_type === "ohlc" && r.rows_written) {
    const a = el("a", "chart it"); a.href = "#/chart?" + new URLSearchParams({ exchange: r.exchange, symbol: r.symbol, span: r.span }); actions.append(a);
  }
  const am = el("span", "", "msg"); am.id = "run-action-msg"; actions.append(am);
  parts.push(actions);
  parts.push(el("h3", "events (" + (r.events || []).length + ")", "dim"));
  const ul = el("ul"); for (const ev of r.events || []) ul.append(el("li", isoNs(ev.at_ns) + " " + ev.kind + (ev.lo !== null ? " " + ev.lo + ".." + ev.hi : "") + (ev.detail ? ": " + ev.detail : ""))); parts.push(ul);
  const logs = runLog.get(r.run_id) || [];
  parts.push(el("h3", "log (live)", "dim"));
  const ll = el("ul"); ll.id = "run-log"; for (const line of logs) ll.append(el("li", line)); parts.push(ll);
  box.replaceChildren(...parts);
}
let runsRefresh = null;
function refreshRunsSoon() { if (current !== "runs" || runsRefresh) return; runsRefresh = setTimeout(() => { runsRefresh = null; loadRuns(); if (selectedRun) showRun(selectedRun); }, 300); }
onEvent("run_progressed", (m) => { const r = runRows.get(m.run_id); if (r) { setProgress(r.fill, m.done, m.total); if (m.rows !== undefined) r.rows.textContent = fmtNum(m.rows); } else refreshRunsSoon(); if (m.run_id === selectedRun && current === "runs" && !runsRefresh) runsRefresh = setTimeout(() => { runsRefresh = null; showRun(selectedRun); }, 1000); });
onEvent("run_state_changed", refreshRunsSoon);
onEvent("lagged", refreshRunsSoon);
onEvent("run_logged", (m) => {
  const lines = runLog.get(m.run_id) || []; lines.push(m.level + " " + m.message); if (lines.length > 200) lines.shift(); runLog.set(m.run_id, lines);
  if (m.run_id === selectedRun && $("run-log")) $("run-log").append(el("li", m.level + " " + m.message));
});
$("runs-state").addEventListener("change", loadRuns);
$("runs-op").addEventListener("change", loadRuns);
$("bf").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const type = $("bf-type").value;
  const body = { exchange: $("bf-exchange").value, symbols: $("bf-symbols").value.split(/[\s,]+/).filter(Boolean), type };
  if (type === "ohlc" && $("bf-span").value) body.span = $("bf-span").value;
  if ($("bf-start").value) body.start = $("bf-start").value;
  if ($("bf-end").value) body.end = $("bf-end").value;
  try { const r = await api("POST", "/api/v1/backfills", body); say("bf-msg", "started " + r.run_ids.map(short).join(", ")); await loadRuns(); showRun(r.run_ids[0]); }
  catch (e) { say("bf-msg", e.message, true); }
});
screens.runs = {
  async enter(q) {
    if (!exchanges.length) loadExchanges().catch((e) => say("bf-msg", e.message, true));
    await loadRuns();
    if (q.get("run")) showRun(q.get("run"));
  },
};

// ---- jobs ------------------------------------------------------------------------------------------------------
async function loadJobs() {
  try {
    const list = await api("GET", "/api/v1/jobs");
    say("jobs-msg", list.length ? "" : "no jobs (create one, or add jobs to the config file)");
    $("jobs").replaceChildren(...list.map((j) => {
      const tr = el("tr"); const act = td(); const msg = el("span", "", "msg"); msg.id = "job-msg-" + j.id;
      const every = (n) => [[86400, "d"], [3600, "h"], [60, "m"], [1, "s"]].map(([k, u]) => (n % k === 0 ? n / k + u : null)).find(Boolean);
      const sched = j.schedule === "every" ? "every " + every(j.every_s) : j.schedule === "cron" ? "cron " + j.cron : j.schedule;
      if (j.operation !== "stream") {
        const run = el("button", "Run now"); run.type = "button";
        run.addEventListener("click", async () => { try { const r = await api("POST", "/api/v1/jobs/" + encodeURIComponent(j.id) + "/run"); msg.className = "msg"; msg.textContent = "started " + r.run_ids.map(short).join(", "); setTimeout(loadJobs, 1500); } catch (e) { msg.className = "msg err"; msg.textContent = e.message; } });
        act.append(run, document.createTextNode(" "));
      }
      if (j.source === "api") {
        const del = el("button", "Delete"); del.type = "button";
        del.addEventListener("click", async () => { try { await api("DELETE", "/api/v1/jobs/" + encodeURIComponent(j.id)); loadJobs(); } catch (e) { msg.className = "msg err"; msg.textContent = e.message; } });
        act.append(del);
      }
      act.append(msg);
      const last = j.last_state ? j.last_state + (j.last_fired_ns ? " " + shortNs(j.last_fired_ns) : "") : "never ran";
      tr.append(td(j.name || j.id), td(j.source), td([j.exchange, (j.symbols || []).join(","), j.type, j.span].filter(Boolean).join(" ")), td(sched), td(j.next_fire_ns ? shortNs(j.next_fire_ns) : "–"), td(last, "state-" + (j.last_state || "")), td(j.last_error || "", "wrap err"), act);
      return tr;
    }));
  } catch (e) { $("jobs").replaceChildren(); say("jobs-msg", e.message, true); }
}
$("job-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { exchange: $("job-exchange").value, symbols: $("job-symbols").value.split(/[\s,]+/).filter(Boolean), type: $("job-type").value };
  for (const [k, id] of [["span", "job-span"], ["start", "job-start"], ["every", "job-every"], ["cron", "job-cron"]]) if ($(id).value) body[k] = $(id).value;
  if (body.type !== "ohlc") delete body.span;
  try { const j = await api("POST", "/api/v1/jobs", body); say("job-form-msg", "created " + j.id); loadJobs(); }
  catch (e) { say("job-form-msg", e.message, true); }
});
let jobsTimer = null;
screens.jobs = {
  enter() { if (!exchanges.length) loadExchanges().catch((e) => say("job-form-msg", e.message, true)); loadJobs(); clearInterval(jobsTimer); jobsTimer = setInterval(loadJobs, 5000); },
  leave() { clearInterval(jobsTimer); },
};

// ---- streams ---------------------------------------------------------------------------------------------------
async function loadStreams() {
  try {
    const list = await api("GET", "/api/v1/streams");
    say("streams-msg", list.length ? "" : "no live recordings");
    $("streams").replaceChildren(...list.map((s) => {
      const tr = streamRow(s, ["id", "exchange", "symbols", "type", "state", "messages", "rows", "reconnects", "error"]);
      const act = td();
      if (s.state !== "stopped" && s.state !== "failed") {
        const b = el("button", "Stop"); b.type = "button";
        b.addEventListener("click", async () => { try { await api("DELETE", "/api/v1/streams/" + encodeURIComponent(s.id)); loadStreams(); } catch (e) { say("streams-msg", s.id + ": " + e.message, true); } });
        act.append(b);
      }
      tr.append(act); return tr;
    }));
  } catch (e) { $("streams").replaceChildren(); say("streams-msg", e.message, true); }
}
$("st-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = { exchange: $("st-exchange").value, symbols: $("st-symbols").value.split(/[\s,]+/).filter(Boolean), type: $("st-type").value };
  if ($("st-span").value) body.span = $("st-span").value;
  try { const r = await api("POST", "/api/v1/streams", body); say("st-msg", "started " + r.stream_id); loadStreams(); }
  catch (e) { say("st-msg", e.message, true); }
});
let ticker = null;
$("lt-go").addEventListener("click", () => {
  if (ticker) ticker.close();
  $("trades").replaceChildren(); say("lt-msg", "");
  const exchange = $("lt-exchange").value, symbol = $("lt-symbol").value.trim();
  const q = new URLSearchParams({ exchange, symbol });
  ticker = sse("/api/v1/live/trades?" + q, { state: "lt-state", msg: "lt-msg", onOpen: () => recordedNote(exchange, symbol, "lt-msg"), handlers: {
    trades: (list) => addTrades("trades", list, true),
    lagged: (m) => say("lt-msg", "lagged: " + m.n + " events lost"),
  } });
});
let streamsTimer = null;
screens.streams = {
  enter() { if (!exchanges.length) loadExchanges().catch((e) => say("st-msg", e.message, true)); loadStreams(); clearInterval(streamsTimer); streamsTimer = setInterval(loadStreams, 3000); },
  leave() { clearInterval(streamsTimer); },
};

// ---- scanners (issue 16's API; the screen says so when this server has none) -----------------------------------
let scanners = [];
let sigES = null;
function schemaOf(s) { return s.params || s.schema || { properties: {} }; }
function paramInputs(s) {
  const box = $("scan-params"); box.replaceChildren();
  const schema = schemaOf(s); const defs = schema.$defs || {};
  let props = schema.properties || {};
  if (!Object.keys(props).length && schema.$ref) { const ref = defs[schema.$ref.split("/").pop()]; props = (ref && ref.properties) || {}; }
  for (const [name, p] of Object.entries(props)) {
    const id = "scan-p-" + name;
    const label = el("label", name); label.htmlFor = id;
    let input;
    if (p.enum) { input = el("select"); input.append(...p.enum.map((v) => el("option", v))); }
    else if (p.type === "boolean") { input = el("input"); input.type = "checkbox"; input.checked = !!p.default; }
    else { input = el("input"); input.type = (p.type === "integer" || p.type === "number") ? "number" : "text"; if (p.type === "number") input.step = "any"; if (p.minimum !== undefined) input.min = p.minimum; if (p.maximum !== undefined) input.max = p.maximum; }
    input.id = id; input.dataset.param = name; input.dataset.kind = p.type || "string";
    if (p.default !== undefined && p.type !== "boolean" && p.default !== null) input.value = p.default;
    if (p.description) input.title = p.description;
    box.append(label, input);
  }
  if (s.spans && s.spans.length && !s.spans.includes($("scan-span").value)) $("scan-span").value = s.spans[0];
}
function signalRow(s) {
  const tr = el("tr", null, "clickable"); tr.tabIndex = 0;
  const skip = new Set(["ts", "exchange", "symbol", "scanner", "version", "params_hash", "snapshot", "values", "span", "run_id", "scanned_ns"]);
  const values = Object.assign({}, s.values || {}); for (const [k, v] of Object.entries(s)) if (!skip.has(k)) values[k] = v;
  tr.append(td(isoNs(s.ts)), td(s.scanner || ""), td(s.exchange), td(s.symbol), td(Object.entries(values).map(([k, v]) => k + "=" + (typeof v === "number" ? fmtNum(v, 6) : v)).join("  "), "wrap"));
  const go = () => {
    const o = ohlcDatasets().find((d) => d.exchange === s.exchange && d.symbol === s.symbol && (!s.span || d.span === s.span)) || ohlcDatasets().find((d) => d.exchange === s.exchange && d.symbol === s.symbol);
    if (o) location.hash = "#/chart?" + new URLSearchParams({ exchange: o.exchange, symbol: o.symbol, span: o.span }); else say("sig-msg", "no stored bars for " + s.exchange + " " + s.symbol, true);
  };
  tr.addEventListener("click", go); tr.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  return tr;
}
async function loadSignals() {
  try { const list = await api("GET", "/api/v1/signals?" + new URLSearchParams({ limit: "500" })); $("signals").replaceChildren(...list.slice().reverse().slice(0, 500).map(signalRow)); say("sig-msg", list.length ? "" : "no signals yet"); }
  catch (e) { say("sig-msg", e.message, true); }
}
async function enterScanners() {
  const unavailable = (text, isError) => { $("scan-ui").hidden = true; $("scan-unavailable").hidden = false; say("scan-unavailable-msg", text, isError); };
  if (!await hasRoute("/api/v1/scanners")) { unavailable("Scanners are not available on this server (its API has no /api/v1/scanners)."); return; }
  try { scanners = await api("GET", "/api/v1/scanners"); }
  catch (e) { unavailable(e.message, true); return; }
  $("scan-ui").hidden = false; $("scan-unavailable").hidden = true;
  const sel = $("scan-name"); const keep = sel.value;
  sel.replaceChildren(...scanners.map((s) => el("option", s.name))); if (keep) sel.value = keep;
  const s = scanners.find((x) => x.name === sel.value); if (s) paramInputs(s);
  loadInventoryList().catch(() => {});
  loadSignals();
  if (!sigES && await hasRoute("/api/v1/live/signals")) sigES = sse("/api/v1/live/signals", { state: "sig-state", msg: "sig-msg", handlers: {
    signals: (list) => { for (const s of [].concat(list)) $("signals").prepend(signalRow(s)); },
    signal_generated: (s) => $("signals").prepend(signalRow(s)),
  } });
}
$("scan-name").addEventListener("change", () => { const s = scanners.find((x) => x.name === $("scan-name").value); if (s) paramInputs(s); });
$("scan-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const params = {};
  for (const input of $("scan-params").querySelectorAll("[data-param]")) {
    const k = input.dataset.param, kind = input.dataset.kind;
    if (kind === "boolean") params[k] = input.checked;
    else if (input.value === "") continue;
    else params[k] = (kind === "integer" || kind === "number") ? Number(input.value) : input.value;
  }
  const body = { scanner: $("scan-name").value, span: $("scan-span").value, params };
  const universe = {};
  const exs = $("scan-exchanges").value.split(/[\s,]+/).filter(Boolean); if (exs.length) universe.exchanges = exs;
  const syms = $("scan-symbols").value.split(/[\s,]+/).filter(Boolean); if (syms.length) universe.symbols = syms;
  if (Object.keys(universe).length) body.universe = universe;
  try {
    const r = await api("POST", "/api/v1/scans", body);
    say("scan-msg", "scan " + r.run_id + " running");
    if (await hasRoute("/api/v1/scans/{run_id}")) {
      const run = await api("GET", "/api/v1/scans/" + encodeURIComponent(r.run_id) + "?wait=true");
      if (run.error) say("scan-msg", "scan " + r.run_id + " " + run.state + ": " + run.error, true);
      else say("scan-msg", "scan " + r.run_id + " " + run.state + ": " + (run.scans || []).map((x) => x.scanner + " " + x.span + ": " + x.hits + " hits in " + x.symbols + " symbols").join("; "));
    }
    loadSignals();
  }
  catch (e) { say("scan-msg", e.message, true); }
});
screens.scanners = { enter: enterScanners };

// ---- snapshots (issue 17's API, when this server has it) -------------------------------------------------------
async function loadSnapshots() {
  try {
    const list = await api("GET", "/api/v1/snapshots");
    say("snap-msg", list.length ? "" : "no snapshots yet");
    $("snapshots").replaceChildren(...list.map((s) => { const tr = el("tr"); const id = s.id || s.snapshot_id || s.name || ""; const created = s.created || s.created_at || (s.created_ns ? isoNs(s.created_ns) : ""); const rest = Object.entries(s).filter(([k]) => !["id", "snapshot_id", "name", "created", "created_at", "created_ns"].includes(k)).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join("  "); tr.append(td(id), td(created), td(rest, "wrap")); return tr; }));
  } catch (e) { say("snap-msg", e.message, true); }
}
screens.snapshots = { enter: loadSnapshots };
hasRoute("/api/v1/snapshots").then((yes) => { $("nav-snapshots").hidden = !yes; });

// ---- start -----------------------------------------------------------------------------------------------------
window.addEventListener("error", (e) => probe.errors.push(String(e.message)));
loadReady(); setInterval(loadReady, 10000);
loadExchanges().catch((e) => say("dash-exchanges-msg", e.message, true));
watchEvents();
route();
requestAnimationFrame(() => { probe.firstPaintMs = performance.now() - T0; });
})();
