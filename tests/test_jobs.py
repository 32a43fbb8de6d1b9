"""Pure job logic: next fire times (UTC), misfire coalescing, API job validation, the jobs file."""

from __future__ import annotations

from typing import Any

import pytest

from dccd.config import Config, Job, expand_jobs
from dccd.domain.timeutil import NS_PER_S, ns_to_iso, parse_iso_ns
from dccd.errors import ConfigError
from dccd.jobs import (
    NextFire,
    StoredJob,
    decode_jobs_file,
    default_job_id,
    encode_jobs_file,
    parse_job,
    plan_fire,
    worst_state,
)

MONDAY = parse_iso_ns("2024-01-01")  # a Monday, 00:00 UTC
MIN = 60 * NS_PER_S


def nf(**kw: Any) -> NextFire:
    """The NextFire of a job with these schedule fields."""
    job = Job(exchange="binance", symbols=["BTC/USDT"], type="trades", name="j", **kw)
    return NextFire(expand_jobs(Config(jobs=[job]))[0])


def fires(n: NextFire, start_ns: int, count: int) -> list[str]:
    """``count`` successive fire times after ``start_ns`` as ISO strings."""
    out, t = [], start_ns
    for _ in range(count):
        nxt = n.after(t)
        assert nxt is not None
        out.append(ns_to_iso(nxt))
        t = nxt
    return out


def test_every_is_aligned_to_the_epoch_not_to_the_start() -> None:
    """every: 1h fires on the hour and every: 90s on multiples of 90 s since 1970, whatever the start time."""
    start = parse_iso_ns("2024-01-01T00:00:07Z")
    assert fires(nf(every="1h"), start, 2) == ["2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"]
    assert fires(nf(every="90s"), start, 2) == ["2024-01-01T00:01:30Z", "2024-01-01T00:03:00Z"]
    # strictly after: starting exactly on a slot gives the next one
    assert fires(nf(every="15m"), MONDAY, 1) == ["2024-01-01T00:15:00Z"]


def test_cron_fires_in_utc_with_cron5_weekdays() -> None:
    """cron '*/15 * * * *' fires every quarter hour and '5 0 * * 1' on Mondays at 00:05 UTC."""
    assert fires(nf(cron="*/15 * * * *"), MONDAY, 3) == [
        "2024-01-01T00:15:00Z",
        "2024-01-01T00:30:00Z",
        "2024-01-01T00:45:00Z",
    ]
    assert fires(nf(cron="5 0 * * 1"), MONDAY, 3) == [
        "2024-01-01T00:05:00Z",
        "2024-01-08T00:05:00Z",
        "2024-01-15T00:05:00Z",
    ]
    # sub-second positions: the next slot is still strictly after
    assert nf(cron="5 0 * * 1").after(MONDAY + 5 * MIN + 1) == parse_iso_ns("2024-01-08T00:05:00Z")


def test_once_manual_and_stream_never_fire_by_themselves() -> None:
    """Only every and cron jobs have fire times."""
    assert nf(once=True).after(MONDAY) is None
    assert nf().after(MONDAY) is None
    assert not nf(once=True).periodic and nf(every="1m").periodic


def test_plan_coalesces_every_due_slot_into_one_run() -> None:
    """A wake-up 3 h 20 min late makes one run for the 14 quarter hours 00:15..03:30, flags a misfire, aims at 03:45."""
    q = nf(cron="*/15 * * * *")
    due = MONDAY + 15 * MIN
    plan = plan_fire(q, due, due + 3 * 60 * MIN + 20 * MIN, grace_ns=MIN)
    assert (plan.slots, plan.misfired, plan.late_ns) == (14, True, 200 * MIN)
    assert ns_to_iso(plan.next_ns or 0) == "2024-01-01T03:45:00Z"
    on_time = plan_fire(q, due, due + 2 * NS_PER_S, grace_ns=MIN)
    assert (on_time.slots, on_time.misfired, on_time.next_ns) == (1, False, due + 15 * MIN)
    every = plan_fire(nf(every="10s"), MONDAY, MONDAY + 35 * NS_PER_S, grace_ns=MIN)
    assert (every.slots, every.misfired, every.next_ns) == (4, False, MONDAY + 40 * NS_PER_S)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "job: expected a mapping (one job), got a list"),
        (
            {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "every": "1h", "color": "red"},
            "color: unknown key (expected one of: exchange symbols type operation name span start end every cron once derive_from scanner params on_new_bars source distribute)",
        ),
        ({"symbols": ["BTC/USDT"], "type": "trades"}, "exchange: required key is missing"),
        ({"exchange": "binance", "symbols": "BTC/USDT", "type": "trades"}, "symbols: expected a list of symbols such as [BTC/USDT], got a string"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "every": 5}, "every: expected a duration such as 90s 15m 1h 1d, got an integer"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "every": "5x"}, "every: '5x' is not a positive duration (e.g. 90s 15m 1h 1d 1w)"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "ohlc", "span": "7m"}, "span: '7m' is not a span (1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M)"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "cron": "* * *"}, "cron: '* * *' is not a cron expression: it has 3 fields, not 5 (minute hour day month weekday)"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "every": "1h", "cron": "5 * * * *"}, "cron: a job has one schedule, but every and cron are set"),
        ({"exchange": "binance", "symbols": ["BTC/USDT", "BTC/USDT"], "type": "trades"}, "symbols[1]: 'BTC/USDT' is listed twice (also symbols[0])"),
        ({"exchange": "mtgox", "symbols": ["BTC/USD"], "type": "trades"}, "exchange: 'mtgox' is not a known exchange (binance bitfinex bitmex bybit coinbase kraken okx)"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "operation": "stream", "every": "1h"}, "every: streams run supervised forever and take no schedule"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "start": "2024-02-01", "end": "2024-01-01"}, "end: '2024-01-01' is not after start '2024-02-01'"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "name": "a b"}, "name: 'a b' is not a job name (1-64 letters, digits, _ . -)"),
        ({"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "name": "taken"}, "name: job id 'taken' is already used"),
    ],
)  # fmt: skip
def test_bad_job_mappings_get_one_line_errors_naming_the_field(raw: Any, message: str) -> None:
    """An API job is checked with the config's rules and messages, its path a field of the request body."""
    with pytest.raises(ConfigError) as info:
        parse_job(raw, {"taken"})
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_parse_job_names_it_and_expands_it() -> None:
    """Without a name a job gets api-<exchange>-<op>-<type>[-span], numbered while taken; the spec is typed."""
    raw = {
        "exchange": "binance",
        "symbols": ["BTC/USDT"],
        "type": "ohlc",
        "span": "1m",
        "start": "-30d",
        "cron": "5 * * * *",
    }
    job, spec = parse_job(raw, {"api-binance-backfill-ohlc-1m"})
    assert job.name == spec.id == "api-binance-backfill-ohlc-1m-2"
    assert (spec.schedule, spec.cron, spec.span and spec.span.label, spec.start) == ("cron", "5 * * * *", "1m", "-30d")
    assert default_job_id(job, set()) == "api-binance-backfill-ohlc-1m"
    _, named = parse_job({**raw, "name": "hourly"}, set())
    assert named.id == "hourly"


def test_jobs_file_round_trips_and_rejects_garbage() -> None:
    """The jobs file encodes and decodes exactly; a foreign version or garbage is a one-line ValueError."""
    jobs = [StoredJob("a", 5, {"exchange": "binance", "symbols": ["BTC/USDT"], "type": "trades", "name": "a"})]
    data = encode_jobs_file(jobs)
    assert decode_jobs_file(data) == jobs
    with pytest.raises(ValueError, match=r"^jobs file version 9 is not supported"):
        decode_jobs_file(b'{"version": 9, "jobs": []}')
    with pytest.raises(ValueError, match=r"^not a jobs file: "):
        decode_jobs_file(b"{not json")


def test_worst_state_of_a_fire() -> None:
    """A fire is failed if any run failed, else cancelled if any was, else partial if any was, else succeeded."""
    assert worst_state(["succeeded", "failed", "cancelled"]) == "failed"
    assert worst_state(["succeeded", "cancelled"]) == "cancelled"
    assert worst_state(["succeeded"]) == "succeeded"
    assert worst_state(["succeeded", "partial"]) == "partial"  # part of a range not served by the exchange
    assert worst_state(["partial", "cancelled"]) == "cancelled"


def test_job_status_is_an_enum_with_the_wire_values() -> None:
    """A job's last_state is a JobStatus; its JSON is the plain string the API always sent."""
    import msgspec

    from dccd.jobs import JobStatus

    assert [s.value for s in JobStatus] == [
        "queued", "running", "streaming", "succeeded", "partial", "cancelled", "failed",
    ]  # fmt: skip
    assert msgspec.json.encode(JobStatus.STREAMING) == b'"streaming"'
    assert JobStatus("partial") is JobStatus.PARTIAL
