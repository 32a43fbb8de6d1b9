"""Symbols: parse, slug and from_slug round trips, and what is rejected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dccd.domain.symbols import Symbol

assets = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20)
markets = st.sampled_from([None, "perp"])


@settings(max_examples=200, deadline=None)
@given(assets, assets, markets)
def test_round_trips(base: str, quote: str, market: str | None) -> None:
    """str -> parse, slug -> from_slug and lower-case input all give back the same Symbol."""
    sym = Symbol(base, quote, market)
    assert Symbol.parse(str(sym)) == sym
    assert Symbol.from_slug(sym.slug) == sym
    text = f"{base.lower()}/{quote.lower()}" + (":PERP" if market else "")
    assert Symbol.parse(text) == sym
    assert sym.is_perp == (market == "perp")


def test_forms() -> None:
    """Spot is BASE/QUOTE with slug BASE-QUOTE; perps add :perp and -PERP."""
    spot, perp = Symbol.parse("btc/usdt"), Symbol.parse(" BTC/USDT:perp ")
    assert (str(spot), spot.slug, spot.market) == ("BTC/USDT", "BTC-USDT", None)
    assert (str(perp), perp.slug, perp.market) == ("BTC/USDT:perp", "BTC-USDT-PERP", "perp")
    assert Symbol.from_slug("ETH-BTC") == Symbol("ETH", "BTC")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("BTCUSDT", "'BTCUSDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
        ("BTC-USDT", "'BTC-USDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
        ("BTC/", "'BTC/' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
        ("BTC/USDT/EUR", "'BTC/USDT/EUR' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
        ("BTC_X/USDT", "'BTC_X/USDT' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
        ("BTC/USDT:fut", "'BTC/USDT:fut' has unknown market 'fut' (expected one of: perp)"),
        ("A" * 21 + "/USDT", f"'{'A' * 21}/USDT' is not a symbol (assets are 1-20 letters or digits)"),
        ("", "'' is not a symbol (expected BASE/QUOTE or BASE/QUOTE:perp)"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    """Malformed symbols raise ValueError with a message naming the input."""
    with pytest.raises(ValueError) as info:
        Symbol.parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "slug", ["btc-usdt", "BTC/USDT", "BTC-USDT-perp", "BTC-USDT-SWAP", "BTC-USDT\n", "BTC--USDT", "BTC"]
)
def test_from_slug_rejects(slug: str) -> None:
    """Only upper-case BASE-QUOTE[-PERP] slugs parse; a trailing newline is not ignored."""
    with pytest.raises(ValueError, match="is not a symbol slug"):
        Symbol.from_slug(slug)
