"""What there is: exchanges and their capabilities, the lake's inventory, the effective config."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from dccd.config import Config, masked
from dccd.domain.timeutil import ns_to_iso
from dccd.errors import ConfigError
from dccd.sources.registry import get_adapter, list_adapters

from . import params
from .context import WebContext


def _exchange_entry(name: str) -> dict[str, Any]:
    try:
        caps = get_adapter(name).capabilities
    except ConfigError as exc:  # a broken plugin is listed with its error, not hidden
        return {"name": name, "error": str(exc), "capabilities": []}
    return {"name": name, "capabilities": msgspec.to_builtins(caps.items)}


def _iso(ns: int | None) -> str | None:
    return None if ns is None else ns_to_iso(ns)


class CatalogController(Controller):
    """``/api/v1/exchanges``, ``/api/v1/inventory``, ``/api/v1/config``."""

    path = "/api/v1"
    tags = ("catalog",)

    @get("/exchanges", summary="Exchanges and their capability matrix")
    async def exchanges(self) -> list[dict[str, Any]]:
        """Every installed exchange adapter with its declared (type x transport) capabilities."""
        return [_exchange_entry(name) for name in list_adapters()]

    @get("/inventory", summary="Stored datasets with rows, range and exact gaps")
    async def inventory(
        self, ctx: WebContext, exchange: str | None = None, type: str | None = None
    ) -> list[dict[str, Any]]:
        """Datasets in the lake (computed in a worker thread); optional ``exchange``/``type`` filters."""
        if exchange is not None:
            params.exchange(exchange)
        dtype = params.data_type(type) if type is not None else None
        items = await ctx.ops.lake.ainventory()
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
