"""The ``derive_from`` job key: validated with the job, carried into the backfill request a fire makes."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from dccd.config import parse_config
from dccd.errors import ConfigError
from tests.actors.test_scheduler import StubService, make, specs


async def test_a_derive_job_fires_a_derive_request(autojump_clock: Any, nursery: trio.Nursery) -> None:
    svc = StubService(nursery)
    sched, _ = make(svc, specs({"once": True, "type": "ohlc", "span": "1s", "derive_from": "trades"}))
    await sched.start()
    await trio.sleep(5.0)
    ((_, req),) = svc.calls
    assert (req.data_type.value, req.span.label if req.span else None, req.derive_from) == ("ohlc", "1s", "trades")


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ("{exchange: kraken, symbols: [BTC/USD], type: ohlc, span: 1m, derive_from: book}",
         "jobs[0].derive_from: 'book' is not a source to derive from (trades)"),
        ("{exchange: kraken, symbols: [BTC/USD], type: trades, derive_from: trades}",
         "jobs[0].derive_from: only ohlc backfill jobs derive their bars"),
    ],
)  # fmt: skip
def test_bad_derive_from_names_the_key(job: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"jobs:\n  - {job}\n", {}, "t.yaml")
    assert message in str(err.value)
