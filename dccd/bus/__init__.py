"""The optional message bus: live data, events and signals on NATS JetStream; sharded collectors.

* :mod:`dccd.bus.wire`: subjects, ``Nats-Msg-Id`` natural keys and the message schema (JSON or msgpack);
* :mod:`dccd.bus.link`: a NATS connection (nats-py on its own asyncio thread) awaited from Trio under deadlines;
* :mod:`dccd.bus.shard`: which shard owns which job (a stable hash), and the lease keys.
* :mod:`dccd.bus.work`: distributed backfills cut into work units (keys, states, the retry rule);
* :mod:`dccd.bus.queue`: the work-queue stream, the unit states and the workers' consumer on NATS.

Without ``bus:`` in the config nothing here is imported by the service.
"""
