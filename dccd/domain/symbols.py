"""Canonical symbols: ``BASE/QUOTE`` for spot, ``BASE/QUOTE:perp`` for perpetuals.

The lake names a symbol by its *slug*: ``BTC-USDT`` or ``BTC-USDT-PERP``.
Adapters map symbols to each exchange's naming (XBT, UST, tBTCUSD, ...).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

MARKETS: Final[tuple[str, ...]] = ("perp",)
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")
_TEXT = re.compile(r"^(?P<base>[A-Za-z0-9]+)/(?P<quote>[A-Za-z0-9]+)(?::(?P<market>[A-Za-z]+))?$")
_SLUG = re.compile(r"^(?P<base>[A-Z0-9]{1,20})-(?P<quote>[A-Z0-9]{1,20})(?:-(?P<market>PERP))?$")


class Symbol(msgspec.Struct, frozen=True, order=True):
    """A market: base asset, quote asset and market kind (None = spot)."""

    base: str
    quote: str
    market: str | None = None

    @classmethod
    def parse(cls, text: str) -> Symbol:
        """Parse ``BTC/USDT`` or ``BTC/USDT:perp`` (case-insensitive assets).

        Raises:
            ValueError: ``'BTCUSDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)``.
        """
        m = _TEXT.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"{text!r} is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)")
        base, quote = m.group("base").upper(), m.group("quote").upper()
        market = m.group("market")
        if market is not None:
            market = market.lower()
            if market not in MARKETS:
                raise ValueError(f"{text!r} has unknown market {market!r} (expected one of: {', '.join(MARKETS)})")
        if not _ASSET.match(base) or not _ASSET.match(quote):
            raise ValueError(f"{text!r} is not a symbol (assets are 1-20 letters or digits)")
        return cls(base, quote, market)

    @classmethod
    def from_slug(cls, slug: str) -> Symbol:
        """Parse a lake/URL slug ``BTC-USDT`` or ``BTC-USDT-PERP``.

        Raises:
            ValueError: not a slug.
        """
        m = _SLUG.fullmatch(slug) if isinstance(slug, str) else None
        if m is None:
            raise ValueError(f"{slug!r} is not a symbol slug (expected BASE-QUOTE or BASE-QUOTE-PERP)")
        return cls(m.group("base"), m.group("quote"), "perp" if m.group("market") else None)

    @property
    def slug(self) -> str:
        """Filesystem/URL-safe name: ``BTC-USDT`` / ``BTC-USDT-PERP``."""
        tail = f"-{self.market.upper()}" if self.market else ""
        return f"{self.base}-{self.quote}{tail}"

    @property
    def is_perp(self) -> bool:
        """True for perpetual swaps."""
        return self.market == "perp"

    def __str__(self) -> str:
        tail = f":{self.market}" if self.market else ""
        return f"{self.base}/{self.quote}{tail}"
