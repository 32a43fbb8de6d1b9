"""SSE routes: live trades and candles from the hub, and the service's run/control events."""

from __future__ import annotations

from typing import Annotated

from dccd.actors import EVENTS_TOPIC
from litestar import Controller, get
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from dccd.domain import DataType
from dccd.errors import NoCapability

from . import params
from .api_runs import check_run_id
from .context import WebContext
from .errors import ApiProblem
from .forming import candles_encoder
from .frames import Encoder, closing_sse, data_encoder, event_encoder
from .sse import Feed

_LAST_ID = Parameter(header="Last-Event-ID", required=False, description="Resume after this event id.")


def _last_id(text: str | None) -> int | None:
    """The ``Last-Event-ID`` header as an id (None when absent)."""
    if text is None or text.strip() == "":
        return None
    text = text.strip()
    if not text.isdigit() or len(text) > 19:
        raise params.bad("Last-Event-ID", f"{text[:40]!r} is not an event id (a non-negative integer)")
    return int(text)


def _start(feed: Feed, last_id: int | None) -> int:
    """Where a client starts: after its ``Last-Event-ID``, else after the newest event (live only).

    Starting from the id current when the request arrived (rather than when the
    response body starts) means nothing published in between is missed.
    """
    return feed.last_seq if last_id is None else last_id


async def _open(
    ctx: WebContext,
    key: tuple[str, ...],
    kind: str,
    encode: Encoder,
    *,
    window_s: float,
    ring: int,
    buffer: int,
    extra_topics: tuple[tuple[str, ...], ...] = (),
) -> Feed:
    if ctx.feeds.closed:
        raise ApiProblem(503, "server", "shutting down")
    return await ctx.feeds.open(
        key,
        kind,
        encode,
        window_s=window_s,
        ring_size=ring,
        client_maxlen=buffer,
        ring_bytes=ctx.options.ring_bytes,
        extra_topics=extra_topics,
    )


class LiveController(Controller):
    """``/api/v1/live/trades``, ``/api/v1/live/candles``, ``/api/v1/events``."""

    path = "/api/v1"
    tags = ("live",)

    @get("/live/trades", summary="SSE: live trades (event 'trades', data = JSON list)")
    async def trades(
        self,
        ctx: WebContext,
        exchange: str | None = None,
        symbol: str | None = None,
        last_event_id: Annotated[str | None, _LAST_ID] = None,
    ) -> ServerSentEvent:
        """Batches of ``{ts,id,price,amount,side,recv_ts}``; ids resume with ``Last-Event-ID``; ``lagged`` on loss."""
        name = params.exchange(exchange)
        sym = params.symbol(symbol)
        params.live_capability(ctx.svc.capabilities, name, DataType.TRADES, None, sym)
        return await self._live(ctx, ("trades", name, str(sym)), "trades", last_event_id)

    @get("/live/candles", summary="SSE: live candles (event 'candles', data = JSON list) and the forming bar")
    async def candles(
        self,
        ctx: WebContext,
        exchange: str | None = None,
        symbol: str | None = None,
        span: str | None = None,
        last_event_id: Annotated[str | None, _LAST_ID] = None,
    ) -> ServerSentEvent:
        """Closed bars: batches of ``{ts,open,high,low,close,volume,quote_volume,trades}`` of one span
        (event ``candles``). The still-forming bar, from the market's live trades, after every window that saw
        trades (event ``forming``, one object: ``{ts,open,high,low,close,volume,trades,first_trade_ts,
        last_trade_ts,complete}``; ``complete`` is false for the bar the feed started in, which it saw only part of).
        An exchange without live bars (coinbase) still has the forming bar when it has live trades.
        """
        name = params.exchange(exchange)
        sym = params.symbol(symbol)
        sp = params.span_for(DataType.OHLC, span)
        assert sp is not None
        try:
            params.live_capability(ctx.svc.capabilities, name, DataType.OHLC, sp, sym)
        except (ApiProblem, NoCapability):  # no live bars: the forming bar from live trades still makes a live chart
            params.live_capability(ctx.svc.capabilities, name, DataType.TRADES, None, sym)
        key = ("ohlc", name, str(sym), sp.label)
        encode = candles_encoder(sp, ctx.options.max_records_per_event)
        return await self._live(ctx, key, "candles", last_event_id, encode, (("trades", name, str(sym)),))

    async def _live(
        self,
        ctx: WebContext,
        key: tuple[str, ...],
        event: str,
        last_event_id: str | None,
        encode: Encoder | None = None,
        extra_topics: tuple[tuple[str, ...], ...] = (),
    ) -> ServerSentEvent:
        o = ctx.options
        last_id = _last_id(last_event_id)
        encode = encode or data_encoder(event, o.max_records_per_event)
        feed = await _open(
            ctx,
            key,
            event,
            encode,
            window_s=o.live_window_s,
            ring=o.live_ring,
            buffer=o.live_client_buffer,
            extra_topics=extra_topics,
        )
        return closing_sse(ctx.feeds.stream(feed, _start(feed, last_id)))

    @get("/events", summary="SSE: run progress, log and state events (event name = message type)")
    async def events(
        self,
        ctx: WebContext,
        run_id: str | None = None,
        last_event_id: Annotated[str | None, _LAST_ID] = None,
    ) -> ServerSentEvent:
        """Every control event of the service (``run_state_changed``, ``run_progressed``, ``run_logged``,
        ``part_written``...), or only one run's with ``?run_id=``."""
        if run_id is not None:
            check_run_id(run_id)
        o = ctx.options
        last_id = _last_id(last_event_id)
        feed = await _open(
            ctx, EVENTS_TOPIC, "events", event_encoder, window_s=0.0, ring=o.events_ring, buffer=o.events_client_buffer
        )
        return closing_sse(ctx.feeds.stream(feed, _start(feed, last_id), run_id))
