"""The cloud worker: the user's cloud machine generating signals while it holds the execution lease.

``signalguard cloud`` (configured by environment, see :mod:`.config`) runs :class:`.worker.CloudWorker`:

- :mod:`signalguard.cloud.config`: the environment, checked up front (``ConfigError`` names the variable);
- :mod:`signalguard.cloud.database`: the :class:`~.database.Database` interface (machine RPCs, traders,
  signal writes) and its supabase-py implementation;
- :mod:`signalguard.cloud.market`: the :class:`~.market.MarketData` interface (Binance klines over REST
  and the kline WebSocket) and its httpx + websockets implementation, which the market feed both hosts
  share (:mod:`signalguard.market.feed`: warm-up, streaming, reconnects, gap fills) reads;
- :mod:`signalguard.cloud.sync`: :class:`~.sync.StateSynchronizer`, the core outbox written every 10 s;
- :mod:`signalguard.cloud.worker`: :class:`~.worker.CloudWorker`, start-up, handoff, heartbeat, stop
  (its view of the lease is the core's :class:`~signalguard.core.lease.LeaseKeeper`);
- :mod:`signalguard.cloud.testing`: in-memory doubles of the two interfaces, for tests;
- :mod:`signalguard.cloud.cli`: the ``cloud`` subcommand.

Importing this package imports nothing else: the command line registers ``cloud`` without loading
supabase-py, which is imported only when the worker runs.
"""
