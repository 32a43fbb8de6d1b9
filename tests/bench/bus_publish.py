"""Publishing to NATS JetStream from a collector whose Trio thread is busy: dccd's link vs nats-py's stall wait.

Run: ``python tests/bench/bus_publish.py [--messages 2000] [--rounds 3]``.

nats-py is asyncio-only, so :class:`dccd.bus.link.NatsLink` runs its loop in a thread of its own. Every
turn of that loop needs the GIL back, which a busy collector thread hands over only once per switch
interval (5 ms). ``publish_async(..., wait_stall=s)`` wraps each message's semaphore wait in
``asyncio.wait_for`` with a timeout, which costs one loop turn per message; the link publishes with no
per-message wait (the whole round has its deadline instead). Printed side by side, with the Trio thread
idle and with a Trio task spinning 20 ms between checkpoints (a collector parsing and writing flat out),
against a real nats-server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable

from dccd.bus.link import NatsLink  # noqa: E402
from dccd.bus.wire import Outgoing  # noqa: E402

PAYLOAD = b'{"exchange":"binance","symbol":"BTC/USDT","id":"1","ts":1,"price":"1","amount":"1","side":"buy"}'


async def _spin(stop: trio.Event, busy_s: float) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < busy_s:
            pass
        await trio.lowlevel.checkpoint()


async def _stalled_round(link: NatsLink, msgs: list[Outgoing]) -> None:
    """nats-py's documented pattern: publish_async with a stall deadline on every message, then gather."""

    async def send() -> None:
        futs = [
            await link.js.publish_async(m.subject, m.payload, headers={"Nats-Msg-Id": m.msg_id}, wait_stall=10.0)
            for m in msgs
        ]
        await asyncio.gather(*futs)

    await link.call(send, timeout_s=120.0)


async def _measure(url: str, n: int, rounds: int, busy_s: float) -> dict[str, float]:
    out: dict[str, list[float]] = {"dccd link": [], "publish_async(wait_stall)": []}
    async with NatsLink.open(url, name="bench") as link:
        await link.ensure_streams(max_age_s=3600, duplicate_window_s=60)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            if busy_s:
                nursery.start_soon(_spin, stop, busy_s)
            for r in range(rounds):
                for name in out:
                    msgs = [
                        Outgoing("dccd.trades.binance.BTC-USDT", PAYLOAD, f"{name}-{busy_s}-{r}-{i}-{time.time_ns()}")
                        for i in range(n)
                    ]
                    t = time.perf_counter()
                    if name == "dccd link":
                        res = await link.publish_many(msgs)
                        assert res.stored == n, res
                    else:
                        await _stalled_round(link, msgs)
                    out[name].append(n / (time.perf_counter() - t))
            stop.set()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages per round (the publisher's chunk)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from tests.bus.natsserver import NatsServer

    with tempfile.TemporaryDirectory() as tmp:
        srv = NatsServer(Path(tmp))
        srv.start()
        try:
            rows = [
                (label, trio.run(_measure, srv.url, args.messages, args.rounds, busy))
                for label, busy in (("idle", 0.0), ("busy 20 ms", 0.02))
            ]
        finally:
            srv.kill()
    print(f"\n{args.messages} messages per round, median of {args.rounds}, acked msgs/s")
    print(f"{'Trio thread':>12} | {'dccd link':>12} | {'publish_async(wait_stall)':>26}")
    for label, r in rows:
        print(f"{label:>12} | {r['dccd link']:>12,.0f} | {r['publish_async(wait_stall)']:>26,.0f}")


if __name__ == "__main__":
    main()
