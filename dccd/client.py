"""An async Python client for a running dccd (``dccd serve``): every HTTP API route, Arrow reads, SSE feeds.

::

    from dccd.client import Client, Lagged

    async with Client("http://127.0.0.1:8080", token=os.environ.get("DCCD_TOKEN")) as c:
        run_ids = await c.backfill("binance", ["BTC/USDT"], "ohlc", span="1m", start="-30d")
        print(await c.run(run_ids[0]))
        table = await c.read("ohlc", "binance", "BTC/USDT", span="1m", start="2024-01-01")  # pyarrow.Table
        async with contextlib.aclosing(c.live_trades("binance", "BTC/USDT")) as feed:
            async for batch in feed:
                if isinstance(batch, Lagged):      # this client fell behind: batch.n events were lost
                    ...
                else:                              # list[dccd.domain.Trade]
                    ...

It runs under Trio and asyncio alike (httpx + anyio) and needs neither the
config nor pyyaml. Errors answered by the server raise :class:`ApiError`
with its status and the server's one-line message. The token travels only in
the ``Authorization: Bearer`` header: never in a URL, never in ``repr``.

Live feeds (:meth:`Client.live_trades`, :meth:`Client.live_candles`,
:meth:`Client.events`) reconnect by themselves after a dropped connection
or a server restart, with jittered exponential backoff, sending
``Last-Event-ID`` so the server replays what was missed; what it can no
longer replay arrives in-band as a :class:`Lagged` item (``n`` events lost).
Close them with ``contextlib.aclosing`` (or let the ``async for`` finish).
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import httpx
import msgspec
from httpx_sse import ServerSentEvent, aconnect_sse

from dccd.domain.records import Candle, Trade
from dccd.domain.symbols import Symbol

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ApiError", "Client", "Lagged"]


class ApiError(Exception):
    """The server answered ``status`` (4xx/5xx); ``message`` is its one-line error text."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


class Lagged(msgspec.Struct, frozen=True):
    """In a live feed: ``n`` events were lost (this client was too slow, or they aged out of the server's replay ring)."""

    n: int


_TRADES = msgspec.json.Decoder(list[Trade])
_CANDLES = msgspec.json.Decoder(list[Candle])
_LAGGED = msgspec.json.Decoder(Lagged)
_ANY = msgspec.json.Decoder()


def _slug(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC-USDT`` (a slug is kept as is), for the data route's path."""
    return Symbol.parse(symbol).slug if "/" in symbol else symbol


def _query(**params: Any) -> dict[str, str]:
    return {k: str(v) for k, v in params.items() if v is not None}


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "detail"):  # dccd's {"error": ...}; a proxy's or framework's {"detail": ...}
            if isinstance(body.get(key), str):
                return str(body[key])
    return str(body)[:500]


class Client:
    """Client of one dccd server.

    Args:
        base_url: the server's origin, e.g. ``http://127.0.0.1:8080``.
        token: sent as ``Authorization: Bearer`` (needed by mutating routes when the server has one).
        timeout: seconds for connecting and for each request.
        sse_read_timeout_s: a live feed silent this long (no event, no heartbeat) is reconnected.
        max_backoff_s: cap of the reconnect delay of live feeds.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        sse_read_timeout_s: float = 60.0,
        max_backoff_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sse_read_timeout_s = sse_read_timeout_s
        self.max_backoff_s = max_backoff_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._has_token = bool(token)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, token={'***' if self._has_token else None})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # -- plumbing --------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None) -> Any:
        resp = await self._http.request(method, path, params=params, json=body)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, _error_text(resp))
        if not resp.content:
            return None
        return _ANY.decode(resp.content)

    # -- service ---------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /health``: liveness."""
        result: dict[str, Any] = await self._call("GET", "/health")
        return result

    async def ready(self) -> dict[str, Any]:
        """``GET /ready``: readiness (raises :class:`ApiError` 503 when not ready)."""
        result: dict[str, Any] = await self._call("GET", "/ready")
        return result

    async def exchanges(self) -> list[dict[str, Any]]:
        """Exchanges and their capability matrix."""
        result: list[dict[str, Any]] = await self._call("GET", "/api/v1/exchanges")
        return result

    async def symbols(self, exchange: str, *, perp: bool = False) -> list[dict[str, Any]]:
        """The markets ``exchange`` lists now: ``[{symbol, native, status, active}]`` (``perp``: perpetuals)."""
        path = f"/api/v1/exchanges/{quote(exchange, safe='')}/symbols"
        result: list[dict[str, Any]] = await self._call("GET", path, params=_query(perp="true" if perp else None))
        return result

    async def inventory(self) -> list[dict[str, Any]]:
        """Stored datasets with rows, first/last ts and gaps."""
        result: list[dict[str, Any]] = await self._call("GET", "/api/v1/inventory")
        return result

    async def config(self) -> dict[str, Any]:
        """The server's effective config (secrets masked)."""
        result: dict[str, Any] = await self._call("GET", "/api/v1/config")
        return result

    # -- backfills and runs ----------------------------------------------------------------------

    async def backfill(
        self,
        exchange: str,
        symbols: str | Sequence[str],
        type: str,
        span: str | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> list[str]:
        """Start a backfill (one run per symbol); returns the run ids at once.

        ``start``: ISO date/datetime, ``-30d``, ``last`` or ``origin``; ``end``: ISO, ``-1h`` or ``now``.
        """
        syms = [symbols] if isinstance(symbols, str) else list(symbols)
        body = {"exchange": exchange, "symbols": syms, "type": type, **_query(span=span, start=start, end=end)}
        return _run_ids(await self._call("POST", "/api/v1/backfills", body=body))

    async def distribute(
        self,
        exchange: str,
        symbols: str | Sequence[str],
        type: str,
        span: str | None = None,
        start: str | None = None,
        end: str | None = None,
        source: str | None = None,
    ) -> list[str]:
        """Plan a backfill into work units every collector with ``bus.work_queue`` pulls; returns the planner
        run ids (``POST /api/v1/work/backfills``; the server needs ``bus:``)."""
        syms = [symbols] if isinstance(symbols, str) else list(symbols)
        body = {"exchange": exchange, "symbols": syms, "type": type, **_query(span=span, start=start, end=end)}
        if source is not None:
            body["source"] = source
        return _run_ids(await self._call("POST", "/api/v1/work/backfills", body=body))

    async def work(self) -> dict[str, Any]:
        """The server's work-queue counters (``GET /api/v1/work``)."""
        result: dict[str, Any] = await self._call("GET", "/api/v1/work")
        return result

    async def run(self, run_id: str) -> dict[str, Any]:
        """One run with its progress and events (``run_id``: the id or a unique prefix of it)."""
        result: dict[str, Any] = await self._call("GET", f"/api/v1/runs/{quote(run_id, safe='')}")
        return result

    async def runs(self, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Run history, newest first (``state``: running, succeeded, failed, ...)."""
        result: list[dict[str, Any]] = await self._call("GET", "/api/v1/runs", params=_query(state=state, limit=limit))
        return result

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a running run (the id or a unique prefix; rows already written stay); returns its final record."""
        result: dict[str, Any] = await self._call("DELETE", f"/api/v1/runs/{quote(run_id, safe='')}")
        return result

    # -- streams ---------------------------------------------------------------------------------

    async def streams(self) -> list[dict[str, Any]]:
        """The live recordings of the server."""
        result: list[dict[str, Any]] = await self._call("GET", "/api/v1/streams")
        return result

    async def start_stream(
        self, exchange: str, symbols: str | Sequence[str], type: str, span: str | None = None
    ) -> str:
        """Start recording live data; returns the stream id."""
        syms = [symbols] if isinstance(symbols, str) else list(symbols)
        body = {"exchange": exchange, "symbols": syms, "type": type, **_query(span=span)}
        data = await self._call("POST", "/api/v1/streams", body=body)
        if isinstance(data, dict):
            return str(data.get("stream_id") or data["id"])
        return str(data)

    async def stop_stream(self, stream_id: str) -> Any:
        """Stop a live recording; returns the server's answer."""
        return await self._call("DELETE", f"/api/v1/streams/{quote(stream_id, safe='')}")

    # -- jobs ------------------------------------------------------------------------------------

    async def jobs(self) -> list[dict[str, Any]]:
        """Configured and API-created jobs with their next fire times."""
        result: list[dict[str, Any]] = await self._call("GET", "/api/v1/jobs")
        return result

    async def create_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Create a job (a config-style mapping: exchange, symbols, type, span, start, end, every|cron|once, name)."""
        result: dict[str, Any] = await self._call("POST", "/api/v1/jobs", body=dict(job))
        return result

    async def delete_job(self, job_id: str) -> Any:
        """Delete an API-created job (config jobs are refused)."""
        return await self._call("DELETE", f"/api/v1/jobs/{quote(job_id, safe='')}")

    async def run_job(self, job_id: str) -> list[str]:
        """Fire a job now; returns its run ids."""
        return _run_ids(await self._call("POST", f"/api/v1/jobs/{quote(job_id, safe='')}/run"))

    # -- data ------------------------------------------------------------------------------------

    async def read(
        self,
        type: str,
        exchange: str,
        symbol: str,
        span: str | None = None,
        start: str | int | None = None,
        end: str | int | None = None,
        as_of: str | int | None = None,
    ) -> pa.Table:
        """Stored rows (deduplicated, sorted) as a ``pyarrow.Table``, fetched as an Arrow IPC stream.

        ``symbol``: ``BTC/USDT`` or its slug ``BTC-USDT``; ``start``/``end``: ISO or ns; ``as_of``: a snapshot
        id, tag or ISO time (the rows the lake held at that snapshot).
        """
        import pyarrow as pa

        path = f"/api/v1/data/{quote(type, safe='')}/{quote(exchange, safe='')}/{quote(_slug(symbol), safe='')}"
        params = _query(span=span, start=start, end=end, format="arrow", as_of=as_of)
        async with self._http.stream("GET", path, params=params) as resp:
            body = await resp.aread()
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, _error_text(resp))
        return pa.ipc.open_stream(body).read_all()

    async def snapshots(self) -> list[dict[str, Any]]:
        """Retained snapshots (id, time, tag, note, datasets, parts, rows, bytes), oldest first."""
        result: list[dict[str, Any]] = await self._call("GET", "/api/v1/snapshots")
        return result

    async def create_snapshot(
        self, tag: str | None = None, note: str | None = None, keep: int | None = None
    ) -> dict[str, Any]:
        """Take a snapshot now; returns its id, time, tag and note."""
        result: dict[str, Any] = await self._call(
            "POST", "/api/v1/snapshots", body=_query(tag=tag, note=note) | ({"keep": keep} if keep is not None else {})
        )
        return result

    async def sql(
        self,
        sql: str,
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
        as_of: str | int | None = None,
    ) -> pa.Table:
        """``POST /api/v1/query``: one read-only DuckDB statement over the lake views, as a ``pyarrow.Table``.

        The views are ``trades``, ``ohlc``, ``book``, ``funding``, ``oi`` and ``signals`` (deduplicated, with
        partition columns). The table's schema metadata says whether the row limit cut it:
        ``table.schema.metadata[b"dccd.truncated"]`` is ``b"true"`` or ``b"false"``. ``as_of`` (a snapshot
        id, tag or ISO time) queries the market data the lake held then.

        Raises:
            ApiError: refused (400), denied by the engine (403), no such snapshot (404), past its time or
                memory limit (422).
        """
        import pyarrow as pa

        body: dict[str, Any] = {"sql": sql, "format": "arrow"}
        if max_rows is not None:
            body["max_rows"] = max_rows
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if as_of is not None:
            body["as_of"] = as_of
        wait = httpx.Timeout(self._http.timeout.connect, read=(timeout_s or 30.0) + 30.0)
        async with self._http.stream("POST", "/api/v1/query", json=body, timeout=wait) as resp:
            data = await resp.aread()
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, _error_text(resp))
        table = pa.ipc.open_stream(data).read_all()
        meta = dict(table.schema.metadata or {})
        meta[b"dccd.truncated"] = resp.headers.get("x-dccd-truncated", "false").encode()
        return table.replace_schema_metadata(meta)

    async def read_polars(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`read` as a ``polars.DataFrame``.

        Raises:
            ImportError: polars is not installed.
        """
        try:
            import polars as pl
        except ImportError:
            raise ImportError(
                "read_polars needs polars: pip install polars (or use read() for a pyarrow.Table)"
            ) from None
        return pl.from_arrow(await self.read(*args, **kwargs))

    async def read_pandas(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`read` as a ``pandas.DataFrame``.

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas  # noqa: F401  (pyarrow's to_pandas needs it)
        except ImportError:
            raise ImportError(
                "read_pandas needs pandas: pip install pandas (or use read() for a pyarrow.Table)"
            ) from None
        return (await self.read(*args, **kwargs)).to_pandas()

    # -- scanners and signals --------------------------------------------------------------------

    async def scanners(self) -> list[dict[str, Any]]:
        """Scanners with their parameters (JSON Schema) and defaults."""
        data: list[dict[str, Any]] = await self._call("GET", "/api/v1/scanners")
        return data

    async def start_scan(
        self,
        scanner: str,
        *,
        span: str = "1h",
        params: Mapping[str, Any] | None = None,
        universe: Mapping[str, Any] | None = None,
        confirm: list[Mapping[str, Any]] | None = None,
    ) -> str:
        """Start a scan on the server; returns its run id (progress on :meth:`events`)."""
        body: dict[str, Any] = {"scanner": scanner, "span": span, "params": dict(params or {})}
        if universe:
            body["universe"] = dict(universe)
        if confirm:
            body["confirm"] = [dict(c) for c in confirm]
        data = await self._call("POST", "/api/v1/scans", body=body)
        return str(data["run_id"])

    async def scan(self, scanner: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Run a scan and return its signals (``exchange``, ``symbol``, ``ts``, ``values``...), see :meth:`start_scan`.

        Raises:
            ApiError: a bad scan (400), or the scan failed on the server (500 with its error).
        """
        run_id = await self.start_scan(scanner, **kwargs)
        while True:
            run = await self._call("GET", f"/api/v1/scans/{run_id}", params={"wait": "true"})
            if run["state"] != "running":
                break
        if run["state"] == "failed":
            raise ApiError(500, f"scan {run_id} failed: {run['error']}")
        return await self.signals(run_id=run_id, limit=10_000)

    async def signals(
        self,
        scanner: str | None = None,
        *,
        since: str | int | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Stored signals, newest bar first (``since``: ISO or ns)."""
        data: list[dict[str, Any]] = await self._call(
            "GET", "/api/v1/signals", params=_query(scanner=scanner, since=since, run_id=run_id, limit=limit)
        )
        return data

    def live_signals(self, *, last_event_id: str | None = None) -> AsyncGenerator[dict[str, Any] | Lagged, None]:
        """Signals as the server's scans produce them (dicts with ``type: signal_generated``), and :class:`Lagged`."""
        return self._feed("/api/v1/live/signals", {}, None, last_event_id)

    # -- live feeds (SSE) ------------------------------------------------------------------------

    def live_trades(
        self, exchange: str, symbol: str, *, last_event_id: str | None = None
    ) -> AsyncGenerator[list[Trade] | Lagged, None]:
        """Live trades of one market: lists of :class:`~dccd.domain.Trade`, and :class:`Lagged` notices."""
        params = _query(exchange=exchange, symbol=symbol)
        return self._feed("/api/v1/live/trades", params, {"trades": _TRADES.decode}, last_event_id)

    def live_candles(
        self, exchange: str, symbol: str, span: str, *, last_event_id: str | None = None
    ) -> AsyncGenerator[list[Candle] | Lagged, None]:
        """Live bars of one market and span: lists of :class:`~dccd.domain.Candle`, and :class:`Lagged` notices."""
        params = _query(exchange=exchange, symbol=symbol, span=span)
        return self._feed("/api/v1/live/candles", params, {"candles": _CANDLES.decode}, last_event_id)

    def events(
        self, run_id: str | None = None, *, last_event_id: str | None = None
    ) -> AsyncGenerator[dict[str, Any] | Lagged, None]:
        """Run progress, log and state events (dicts whose ``type`` is the event name), and :class:`Lagged`."""
        return self._feed("/api/v1/events", _query(run_id=run_id), None, last_event_id)

    async def _feed(
        self,
        path: str,
        params: dict[str, str],
        decoders: dict[str, Any] | None,
        last_event_id: str | None,
    ) -> AsyncGenerator[Any, None]:
        """Follow one SSE route for ever, resuming after drops; see the module docstring."""
        attempt = 0
        timeout = httpx.Timeout(self._http.timeout.connect, read=self.sse_read_timeout_s)
        while True:
            headers = {}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                async with aconnect_sse(
                    self._http, "GET", path, params=params, headers=headers, timeout=timeout
                ) as source:
                    resp = source.response
                    if resp.status_code >= 400:
                        await resp.aread()
                        if resp.status_code < 500:
                            raise ApiError(resp.status_code, _error_text(resp))
                        raise httpx.HTTPStatusError("server error", request=resp.request, response=resp)
                    if "text/event-stream" not in resp.headers.get("content-type", ""):
                        raise ApiError(
                            resp.status_code, f"{path} is not an event stream ({resp.headers.get('content-type')})"
                        )
                    async for sse in source.aiter_sse():
                        attempt = 0
                        if sse.id:
                            last_event_id = sse.id
                        item = _decode(sse, decoders)
                        if item is not None:
                            yield item
            except (httpx.TransportError, httpx.HTTPStatusError):
                pass  # dropped, refused or 5xx: reconnect below
            # A clean end of the stream (server restart, idle close) also reconnects.
            await anyio.sleep(reconnect_delay_s(attempt, self.max_backoff_s, self._rng.random()))
            attempt += 1


def reconnect_delay_s(attempt: int, cap_s: float, u: float) -> float:
    """Delay before reconnect number ``attempt`` (0-based): 0.25 s doubling up to ``cap_s``, the upper half
    jittered by ``u`` in [0, 1) so that clients dropped together do not come back together."""
    delay: float = min(cap_s, 0.25 * 2.0 ** min(attempt, 30))
    return delay / 2 + u * delay / 2


def _decode(sse: ServerSentEvent, decoders: dict[str, Any] | None) -> Any:
    """One SSE event as what a feed yields (None: nothing to yield)."""
    if sse.event == "lagged":
        return _LAGGED.decode(sse.data)
    if decoders is None:
        if not sse.data:
            return None
        data = _ANY.decode(sse.data)
        if isinstance(data, dict):
            data.setdefault("type", sse.event)
        return data
    decode = decoders.get(sse.event)
    return None if decode is None or not sse.data else decode(sse.data)


def _run_ids(data: Any) -> list[str]:
    """``{"run_ids": [...]}`` (or a bare list) -> the run ids."""
    if isinstance(data, dict):
        data = data.get("run_ids", [])
    return [str(r) for r in data]
