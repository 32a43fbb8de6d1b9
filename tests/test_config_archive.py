"""Archive settings: ``archive_url`` (config and env), the ``source`` job key and request field, the origin rule."""

from __future__ import annotations

import pytest

from dccd.config import parse_config
from dccd.config.load import expand_jobs
from dccd.errors import ConfigError
from dccd.ops import InvalidRequest, parse_backfill
from dccd.sources.archive import archive_origin

JOB = "jobs: [{exchange: binance, symbols: [BTC/USDT], type: ohlc, span: 1m, start: '2024-01-01', source: %s}]"


def test_archive_url_from_config_and_env() -> None:
    """``exchanges.<name>.archive_url`` is an http(s) origin; ``DCCD_<EXCHANGE>_ARCHIVE_URL`` sets it, named in errors."""
    cfg = parse_config("exchanges: {binance: {archive_url: 'http://127.0.0.1:9/x'}}", env={})
    assert cfg.exchange("binance").archive_url == "http://127.0.0.1:9/x"
    cfg = parse_config("{}", env={"DCCD_BINANCE_ARCHIVE_URL": "http://127.0.0.1:7"})
    assert cfg.exchange("binance").archive_url == "http://127.0.0.1:7"
    with pytest.raises(ConfigError, match=r"exchanges.binance.archive_url \(from DCCD_BINANCE_ARCHIVE_URL\)"):
        parse_config("{}", env={"DCCD_BINANCE_ARCHIVE_URL": "ftp://x"})


def test_job_source() -> None:
    """A job's ``source`` is auto by default, carried to its spec, and checked."""
    cfg = parse_config("jobs: [{exchange: binance, symbols: [BTC/USDT], type: trades, start: '2024-01-01'}]", env={})
    assert expand_jobs(cfg)[0].source == "auto"
    assert expand_jobs(parse_config(JOB % "archive", env={}))[0].source == "archive"
    with pytest.raises(ConfigError, match=r"jobs\[0\].source: 'ftp' is not a history source \(auto archive rest\)"):
        parse_config(JOB % "ftp", env={})


def test_request_source() -> None:
    """The CLI/API field ``source`` defaults to auto and rejects other words with a one-line error."""
    req = parse_backfill("binance", ["BTC/USDT"], "trades", known_exchanges=["binance"], start="2024-01-01")
    assert req.source == "auto"
    with pytest.raises(InvalidRequest, match=r"^source: 'x' is not a history source"):
        parse_backfill("binance", ["BTC/USDT"], "trades", known_exchanges=["binance"], start="2024-01-01", source="x")


def test_origin_rule() -> None:
    """The real archive is used unless REST points elsewhere (a fake, a proxy) and no archive_url is set."""
    real = archive_origin(parse_config("{}", env={}))
    assert real("binance") == "https://data.binance.vision"
    assert real("kraken") is None  # no archive adapter
    same = archive_origin(parse_config("exchanges: {binance: {rest_url: 'https://api.binance.com/'}}", env={}))
    assert same("binance") == "https://data.binance.vision"
    faked = archive_origin(parse_config("exchanges: {binance: {rest_url: 'http://127.0.0.1:5'}}", env={}))
    assert faked("binance") is None
    both = "exchanges: {binance: {rest_url: 'http://127.0.0.1:5', archive_url: 'http://127.0.0.1:6'}}"
    assert archive_origin(parse_config(both, env={}))("binance") == "http://127.0.0.1:6"
    assert archive_origin(parse_config("{}", env={}), defaults=False)("binance") is None
