"""A Binance-compatible market-data replay, for the browser app, the cloud worker and tests.

- :mod:`signalguard.replay.series`: candle shapes and the candle-file formats (pure Python);
- :mod:`signalguard.replay.synthetic`: deterministic synthetic series with planted setups (pure);
- :mod:`signalguard.replay.engine`: the timing model, REST answers and stream events, without I/O;
- :mod:`signalguard.replay.server`: the HTTP and WebSocket server (aiohttp), :class:`ReplayServer`
  and the thread-backed :func:`running_replay`;
- :mod:`signalguard.replay.cli`: ``signalguard replay``.

Importing this package imports nothing else, so the pure modules load without aiohttp (in Pyodide).
"""
