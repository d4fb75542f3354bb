"""Market data shared by the browser tab and the cloud worker (no platform imports).

- :mod:`~signalguard.market.klines`: the REST requests of the warm-up rule (history, gaps, the candles
  adopted trades missed) over a :class:`~signalguard.market.klines.KlineSource`;
- :mod:`~signalguard.market.feed`: the one :class:`~signalguard.market.feed.MarketFeed` both hosts run
  over their :class:`~signalguard.market.feed.MarketData` (the page's ``fetch`` and WebSocket, the
  worker's httpx and websockets).
"""
