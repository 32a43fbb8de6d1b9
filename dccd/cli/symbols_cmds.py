"""``dccd symbols EXCHANGE [--perp] [--json]``: what the exchange lists now (the listing backfills check against).

The listing is fetched through the same :class:`~dccd.actors.clients.ClientPool`
a service uses (``rest_url``/``rate_limit`` from the config, env
``DCCD_<EXCHANGE>_REST_URL``), without opening a service: nothing is written.
"""

from __future__ import annotations

import json
from typing import Any

import click
import trio

from dccd.cli.common import common_options, state
from dccd.config import Config
from dccd.errors import NoCapability, RequestTimeout
from dccd.sources.base import Listing

LISTING_TIMEOUT_S = 60.0
"""Bound on the whole fetch, retries included."""


async def fetch_listing(cfg: Config, exchange: str, *, perp: bool = False) -> Listing:
    """The exchange's current listing (its perpetuals' with ``perp``), through a one-off client pool.

    Raises:
        ConfigError: unknown exchange.
        NoCapability: ``perp`` on an exchange without perpetual listings.
        RequestTimeout: no listing within :data:`LISTING_TIMEOUT_S`.
        TransportError, SourceError: the exchange failed or answered garbage.
    """
    from dccd.actors.clients import ClientPool
    from dccd.sources.base import DerivativesAdapter
    from dccd.sources.registry import get_adapter

    if perp and not isinstance(get_adapter(exchange), DerivativesAdapter):
        raise NoCapability(exchange, "perpetual listings")

    def settings(name: str) -> tuple[str | None, float]:
        ex = cfg.exchange(name)
        return ex.rest_url, float(ex.rate_limit)

    async with trio.open_nursery() as nursery:

        async def start_actor(name: str, fn: Any, *args: Any, **_: Any) -> Any:
            return await nursery.start(fn, *args, name=name)

        try:
            with trio.fail_after(LISTING_TIMEOUT_S):
                listing: Listing = await ClientPool(start_actor, settings).listing(exchange, perp=perp)
        except trio.TooSlowError:
            raise RequestTimeout(f"{exchange}: no symbol listing within {LISTING_TIMEOUT_S:g}s") from None
        nursery.cancel_scope.cancel()
    return listing


def listing_rows(listing: Listing) -> list[dict[str, Any]]:
    """The markets as JSON-ready rows, sorted by symbol."""
    rows = [
        {"symbol": str(m.symbol), "native": m.native, "status": m.status, "active": m.active} for m in listing.markets
    ]
    return sorted(rows, key=lambda r: r["symbol"])


@click.command("symbols")
@common_options
@click.argument("exchange")
@click.option("--perp", is_flag=True, help="The perpetual futures listing (exchanges with derivatives).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{symbol, native, status, active}].")
def symbols_cmd(exchange: str, perp: bool, as_json: bool) -> None:
    """List the markets EXCHANGE lists now: symbol (BASE/QUOTE), exchange name, status.

    Inactive markets are listed too (their history stays fetchable).
    """
    from dccd.domain import check_exchange_name
    from dccd.ops import InvalidRequest
    from dccd.sources.registry import list_adapters

    try:
        check_exchange_name(exchange)
    except ValueError as exc:
        raise InvalidRequest("exchange", str(exc)) from None
    if exchange not in list_adapters():
        raise InvalidRequest("exchange", f"{exchange!r} is not a known exchange ({' '.join(list_adapters())})")
    cfg = state().config()
    rows = listing_rows(trio.run(lambda: fetch_listing(cfg, exchange, perp=perp)))
    if as_json:
        click.echo(json.dumps(rows))
        return
    width = max((len(r["symbol"]) for r in rows), default=6)
    native = max((len(r["native"]) for r in rows), default=6)
    for r in rows:
        click.echo(
            f"{r['symbol']:<{width}}  {r['native']:<{native}}  {r['status']}{'' if r['active'] else ' (inactive)'}"
        )
    if not state().quiet:
        click.echo(f"{len(rows)} market(s) listed by {exchange}{' (perpetuals)' if perp else ''}", err=True)


COMMANDS = (symbols_cmd,)
