"""What there is: exchanges, their capabilities and listings, the lake's inventory, the effective config."""

from __future__ import annotations

from typing import Any

import msgspec
import trio
from litestar import Controller, get

from dccd.config import Config, masked
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import ConfigError, NoCapability, SourceError, TransportError
from dccd.sources.registry import list_adapters

from . import params
from .context import WebContext
from .errors import ApiProblem

LISTING_TIMEOUT_S = 30.0
"""Bound on fetching an exchange's listing (retries included) before the route answers 504."""


def _exchange_entry(ctx: WebContext, name: str) -> dict[str, Any]:
    try:
        caps = ctx.svc.capabilities(name)
    except ConfigError as exc:  # a broken plugin is listed with its error, not hidden
        return {"name": name, "error": str(exc), "capabilities": []}
    return {"name": name, "capabilities": msgspec.to_builtins(caps.items)}


def _flag(text: str | None) -> bool:
    if text is None or text.lower() in ("false", "0", "no", ""):
        return False
    if text.lower() in ("true", "1", "yes"):
        return True
    raise params.bad("perp", f"{text[:40]!r} is not a boolean (true or false)")


def _iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


class CatalogController(Controller):
    """``/api/v1/exchanges``, ``/api/v1/exchanges/{name}/symbols``, ``/api/v1/inventory``, ``/api/v1/config``."""

    path = "/api/v1"
    tags = ("catalog",)

    @get("/exchanges", summary="Exchanges and their capability matrix")
    async def exchanges(self, ctx: WebContext) -> list[dict[str, Any]]:
        """Every installed exchange adapter with its declared (type x transport) capabilities."""
        return [_exchange_entry(ctx, name) for name in list_adapters()]

    @get("/exchanges/{name:str}/symbols", summary="The markets an exchange lists now")
    async def symbols(self, ctx: WebContext, name: str, perp: str | None = None) -> list[dict[str, Any]]:
        """``[{symbol, native, status, active}]`` sorted by symbol, from the service's cached listing
        (``?perp=true``: the perpetuals' listing); 502 when the exchange fails, 504 when it is too slow."""
        exchange = params.exchange(name, "name")
        want_perp = _flag(perp)
        if want_perp and not ctx.svc.lists_perpetuals(exchange):
            raise ApiProblem(400, "perp", str(NoCapability(exchange, "perpetual listings")))
        try:
            with trio.fail_after(LISTING_TIMEOUT_S):
                listing = await ctx.stored.listing(exchange, perp=want_perp)
        except trio.TooSlowError:
            raise ApiProblem(504, "name", f"{exchange} sent no listing within {LISTING_TIMEOUT_S:g}s") from None
        except (TransportError, SourceError) as exc:
            raise ApiProblem(502, "name", f"{exchange}: {exc}") from None
        rows = [
            {"symbol": str(m.symbol), "native": m.native, "status": m.status, "active": m.active}
            for m in listing.markets
        ]
        return sorted(rows, key=lambda r: r["symbol"])

    @get("/inventory", summary="Stored datasets with rows, range and exact gaps")
    async def inventory(
        self, ctx: WebContext, exchange: str | None = None, type: str | None = None
    ) -> list[dict[str, Any]]:
        """Datasets in the lake (computed in a worker thread); optional ``exchange``/``type`` filters."""
        if exchange is not None:
            params.exchange(exchange)
        dtype = params.data_type(type) if type is not None else None
        items = await ctx.stored.inventory()
        out = []
        for item in items:
            if (exchange and item.exchange != exchange) or (dtype and item.data_type != dtype.value):
                continue
            entry = msgspec.to_builtins(item)
            entry["first"], entry["last"] = _iso(item.first_ts), _iso(item.last_ts)
            for g in entry["gap_ranges"]:  # ISO bounds for people: the ts range (or the trades around an id hole)
                lo, hi = (g["lo"], g["hi"]) if g["unit"] == "ns" else (g["first_ts"], g["last_ts"])
                g["from"], g["to"] = _iso(lo), _iso(hi)
            out.append(entry)
        return out

    @get("/config", summary="The effective config, secrets masked")
    async def config(self, ctx: WebContext) -> dict[str, Any]:
        """The config the service runs with (env overrides applied); the token reads ``***``."""
        if isinstance(ctx.config, Config):
            return masked(ctx.config)
        return {}
