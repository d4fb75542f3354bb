"""Preview a trader definition on history: where it would have signalled, and what its trades made.

The trader editor shows, as the user types, what the definition would have done over the closed
candles the page has loaded. The figures are the live engine's, not an approximation of them: the
triggers are the signals a :class:`~signalguard.core.engine.SignalManager` would emit if it had been
fed every one of those candles, oldest first, while allowed to generate (as the replay's reference
run feeds it), and each trigger's paper trade opens and exits as the engine's would.

How a page uses it::

    previewer = Previewer(candles)                 # once, with the closed candles it has loaded
    try:
        definition = parse_trader(form_json)       # the definition as typed
    except TraderDefinitionError as exc:
        ...                                        # show the error instead of a preview
    else:
        result = previewer.preview(definition)     # result.symbols[i].triggers, result.stats, ...
    previewer.add(new_candles)                     # candles that closed since (optional)

Keep one :class:`Previewer` while the editor is open: it remembers, per (symbol, indicator), the
indicator's output on every candle, and per (symbol, condition) the candles on which the condition
held, so a re-preview after a threshold or operator edit computes no indicator again; it compares the
remembered outputs with the new threshold and re-runs the decision (the trades of the last plan are
remembered by trigger candle too). The cache is a pure optimisation: a preview is equal (``==``) to
the one a fresh ``Previewer`` computes.

What is reused from the engine, so that both say the same:

- the indicators are the core's own (:mod:`signalguard.core.indicators`), with the pool's parameters
  (``IndicatorPool._keys``), fed the closes (volumes for ``volume_spike``) one candle at a time as
  the pool feeds them;
- each condition is decided by the pool's own probe (:mod:`signalguard.core.traders.evaluation`),
  reading the remembered outputs through a stand-in for the indicator;
- the trader's decision is ``TraderState._decide``'s, restated over whole series (it works on one
  candle's probes): ``match: all`` needs every condition to hold, ``match: any`` one of them once
  every condition is warm (the warm-up rule of :mod:`signalguard.core.traders`: nothing before), and
  after a signal on candle ``i`` the next can come on candle ``i + cooldown_candles + 1`` at the
  earliest, counted in candle open times;
- a trade opens with :func:`~signalguard.core.positions.open_trade` at the trigger's close and exits
  where :func:`~signalguard.core.positions.exit_on` says, checked on every later candle as the engine
  checks its open trades (stop before target within one candle, a gap fills at the open, expiry at
  the close); only candles on which ``exit_on`` cannot exit are skipped, and for a fixed-length
  interval the expiry is added in one step where ``open_trade`` steps candle by candle. Trades are
  independent of each other, as in the engine: each signal opens its own.

``tests/core/test_preview.py`` feeds the same candles to a SignalManager and compares signals and
trades one for one.

The warm-up, at the start of the history. The engine primes the warm-up rule's ``history`` candles
before it evaluates any (:attr:`~signalguard.core.traders.TraderDefinition.history`), so that the
exponential indicators (EMA, RSI, MACD) have forgotten where they started. A preview starts where the
loaded history starts, so by default it evaluates from the first candle on which every condition can
be evaluated (``warmup``), like an engine fed the whole history; its earliest triggers may then rest
on indicators that have not settled (:attr:`SymbolPreview.settled_from` says from when they have).
``preview(definition, primed=definition.history)`` evaluates only from there, as an engine that
primed the warm-up rule's history first (the same as ``SignalManager.prime`` on those candles).

The statistics (:class:`PreviewStats`), for each symbol and for all together:

- **summed return %**: the sum of the closed trades' returns, each in percent of its notional. Every
  trade stakes the plan's ``notional`` whatever the others did (trades may overlap), so returns add,
  not compound: ``summed_return_pct == profit_loss / notional * 100``;
- **max drawdown %**: the largest fall of the closed trades' equity curve from a previous peak, in
  percentage points of the notional. The curve starts at 0 and adds each closed trade's return when
  it exits (in exit time order; ties by symbol in definition order, then entry): returns +3, -2, -2,
  +3 give 0, 3, 1, -1, 2 and a drawdown of 4;
- **win rate**: wins (P&L > 0) over closed trades;
- **average hold**: from entry (the trigger candle's close) to exit, over closed trades, in candles
  and in milliseconds;
- **open trades**: trades still open after the last candle, marked to its close; they count in no
  other figure (neither win nor loss, no drawdown).

Sums use :func:`math.fsum` and the curve plain additions in a fixed order, so the figures are the same
in the browser and in the cloud worker.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeAlias, cast

from signalguard.core.candles import INTERVALS, Candle, candle_index, next_open_time
from signalguard.core.indicators import EMA, MACD, RSI, SMA, BollingerBands, PriceChangePct, VolumeSpike
from signalguard.core.positions import Exit, Side, Trade, TradePlan, exit_on, open_trade, profit_loss
from signalguard.core.traders.definition import (
    Band,
    CloseVsAverage,
    CloseVsBollinger,
    Condition,
    MacdHistogram,
    Match,
    MovingAverageCross,
    Threshold,
    TraderDefinition,
)
from signalguard.core.traders.evaluation import (
    ConditionResult,
    _CloseVsAverageProbe,
    _CloseVsBandProbe,
    _CrossProbe,
    _MacdCrossProbe,
    _MacdHistogramProbe,
    _ThresholdProbe,
    reading_text,
)
from signalguard.core.traders.pool import IndicatorPool

__all__ = [
    "MAX_CACHED_CONDITIONS",
    "MAX_CACHED_SERIES",
    "Preview",
    "PreviewStats",
    "PreviewTrade",
    "Previewer",
    "Reading",
    "SymbolPreview",
    "Trigger",
    "preview",
]

#: Indicator series remembered per symbol (least recently used dropped first). A definition uses at
#: most 20 (10 conditions, two indicators for a cross); the rest serve edits back and forth.
MAX_CACHED_SERIES: Final = 64
#: Condition results remembered per symbol (each threshold typed is a condition of its own).
MAX_CACHED_CONDITIONS: Final = 128

_IndicatorKey: TypeAlias = tuple[str, int, int, int, float]
_Indicator: TypeAlias = SMA | EMA | RSI | BollingerBands | MACD | VolumeSpike | PriceChangePct


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One condition on a trigger's candle: its label, the figure it compared, and whether it held.

    ``value`` is the indicator for ``rsi``/``volume_spike``/``price_change_pct`` (RSI, volume ratio,
    percent change), the average or band the close was compared with for ``close_vs_*``, the fast
    minus the slow average for a moving-average cross, and the MACD histogram for ``macd_*``. None
    while the indicator is warming up.
    """

    label: str
    value: float | None
    matched: bool


@dataclass(frozen=True, slots=True)
class PreviewTrade:
    """The paper trade a trigger opened, as the engine would have managed it."""

    side: Side
    #: When the trigger candle closed (epoch ms): the trade's entry.
    entry_time: int
    #: The trigger candle's close.
    entry_price: float
    take_profit_price: float | None
    stop_loss_price: float | None
    #: The first candle closing at or after it exits at its close (epoch ms; None: no expiry).
    expires_at: int | None
    #: How and when it exited; None if it was still open after the last candle.
    exit: Exit | None
    #: The exit price, or the last close for a trade still open.
    price: float
    #: P&L in the quote currency at ``price`` (unrealised for a trade still open).
    profit_loss: float
    #: ``profit_loss`` in percent of the plan's notional.
    return_pct: float
    #: Candles from the trigger candle to the exit candle (to the last candle if still open).
    hold_candles: int
    #: Milliseconds from entry to exit (to the last candle's close if still open).
    hold_ms: int

    @property
    def closed(self) -> bool:
        """Whether an exit rule closed it within the history."""
        return self.exit is not None


@dataclass(frozen=True, slots=True)
class Trigger:
    """A candle on which the trader would have signalled."""

    #: The candle's open time (epoch ms): the signal's ``candle_open_time``.
    open_time: int
    #: The candle's close: the signal's price.
    price: float
    #: The matched conditions with the figures that decided them (``RSI(14) 27.4 < 30``), as the
    #: signal's ``matched_conditions`` (:func:`~signalguard.core.traders.evaluation.reading_text`).
    labels: tuple[str, ...]
    #: Every condition of the definition on this candle, in definition order.
    readings: tuple[Reading, ...]
    #: The paper trade it opened (None without a trade plan).
    trade: PreviewTrade | None


@dataclass(frozen=True, slots=True)
class PreviewStats:
    """What the triggers and their trades add up to (see the module notes for the definitions)."""

    #: Triggers (signals).
    signals: int
    #: Closed trades.
    trades: int
    #: Closed trades with a positive P&L.
    wins: int
    #: ``wins / trades``; None without a closed trade.
    win_rate: float | None
    #: Sum of the closed trades' returns, % of the notional each (not compounded).
    summed_return_pct: float
    #: Realised P&L of the closed trades, quote currency.
    profit_loss: float
    #: Largest fall of the closed trades' summed-return curve from a peak, percentage points.
    max_drawdown_pct: float
    #: Mean hold of the closed trades in candles; None without a closed trade.
    avg_hold_candles: float | None
    #: Mean hold of the closed trades in milliseconds; None without a closed trade.
    avg_hold_ms: float | None
    #: Trades still open after the last candle.
    open_trades: int
    #: Their P&L marked to the last close, quote currency.
    open_profit_loss: float
    #: Sum of their returns marked to the last close, % of the notional each.
    open_return_pct: float


@dataclass(frozen=True, slots=True)
class SymbolPreview:
    """The preview on one symbol."""

    symbol: str
    interval: str
    #: Closed candles the preview ran over.
    candles: int
    first_open_time: int
    last_open_time: int
    last_close: float
    #: Open time of the first candle on which every condition could be evaluated (None: never).
    warm_from: int | None
    #: Open time of the first candle after the warm-up rule's history (``definition.history``
    #: candles before it), from which the exponential indicators have settled (None: never).
    settled_from: int | None
    triggers: tuple[Trigger, ...]
    stats: PreviewStats


@dataclass(frozen=True, slots=True)
class Preview:
    """A definition's preview on every symbol it watches that has candles."""

    definition: TraderDefinition
    #: In the definition's symbol order; symbols without candles are left out (see ``missing``).
    symbols: tuple[SymbolPreview, ...]
    #: The definition's symbols with no candles on its interval.
    missing: tuple[str, ...]
    #: All symbols together (the drawdown over the closed trades of all of them in exit order).
    stats: PreviewStats


# --- the cache ----------------------------------------------------------------------------------


class _Outputs:
    """Stands in for an indicator in a probe: the outputs it reads, set from a cached series.

    The probes read only these attributes of their indicators, so a probe given stand-ins decides
    exactly as it does in the pool, without the indicator being computed again.
    """

    __slots__ = ("histogram", "lower", "middle", "upper", "value")

    def __init__(self) -> None:
        self.value: float | None = None
        self.lower: float | None = None
        self.middle: float | None = None
        self.upper: float | None = None
        self.histogram: float | None = None


class _Series:
    """One indicator's outputs on every candle of a stream, extended as the stream grows."""

    __slots__ = ("_indicator", "_volume", "done", "histogram", "lower", "middle", "upper", "value")

    def __init__(self, key: _IndicatorKey) -> None:
        name, a, b, c, k = key
        # The pool's indicator for the same key (IndicatorPool._indicator).
        indicator: _Indicator
        if name == "sma":
            indicator = SMA(a)
        elif name == "ema":
            indicator = EMA(a)
        elif name == "rsi":
            indicator = RSI(a)
        elif name == "bb":
            indicator = BollingerBands(a, k)
        elif name == "macd":
            indicator = MACD(a, b, c)
        elif name == "vspike":
            indicator = VolumeSpike(a)
        else:
            indicator = PriceChangePct(a)
        self._indicator = indicator
        self._volume = name == "vspike"  # the pool feeds volume_spike the volumes, the rest the closes
        #: Candles fed so far.
        self.done = 0
        # Only the outputs a probe reads are kept.
        self.value: list[float | None] = []
        self.lower: list[float | None] = []
        self.middle: list[float | None] = []
        self.upper: list[float | None] = []
        self.histogram: list[float | None] = []

    def extend(self, stream: _Stream) -> None:
        """Feed the stream's candles not fed yet, keeping the outputs after each."""
        done = self.done
        source = stream.volumes if self._volume else stream.closes
        if done == len(source):
            return
        self.done = len(source)
        ind = self._indicator
        update = ind.update
        if isinstance(ind, BollingerBands):
            lower, middle, upper = self.lower, self.middle, self.upper
            for x in source[done:]:
                update(x)
                lower.append(ind.lower)
                middle.append(ind.middle)
                upper.append(ind.upper)
        elif isinstance(ind, MACD):
            histogram = self.histogram
            for x in source[done:]:
                update(x)
                histogram.append(ind.histogram)
        else:
            value = self.value
            for x in source[done:]:
                update(x)
                value.append(ind.value)


class _Result:
    """One condition on every candle of a stream: where it was first ready, and where it held."""

    __slots__ = ("_assign", "_probe", "_reading", "_series", "done", "hit_set", "hits", "ready_from")

    def __init__(self, condition: Condition, stream: _Stream) -> None:
        series = [stream.series(key) for key in IndicatorPool._keys(condition)]
        self._series = series
        a, b = _Outputs(), _Outputs()
        # Each probe gets stand-ins of the pool's indicator types (see _Outputs), and the two
        # callables below: one copies candle i's outputs into the stand-ins, one reads the figure
        # the condition compares (for Reading).
        probe: ConditionResult
        assign: Callable[[int], None]
        reading: Callable[[int], float | None]
        s = series[0]
        if isinstance(condition, Threshold):
            probe = _ThresholdProbe(cast("RSI", a), condition.op, float(condition.value))
            assign, reading = _value_of(a, s), s.value.__getitem__
        elif isinstance(condition, CloseVsAverage):
            probe = _CloseVsAverageProbe(cast("SMA", a), condition.op)
            assign, reading = _value_of(a, s), s.value.__getitem__
        elif isinstance(condition, CloseVsBollinger):
            probe = _CloseVsBandProbe(cast("BollingerBands", a), condition.band, condition.op)
            band = {Band.LOWER: s.lower, Band.MIDDLE: s.middle, Band.UPPER: s.upper}[condition.band]
            assign, reading = _bands_of(a, s), band.__getitem__
        elif isinstance(condition, MovingAverageCross):
            probe = _CrossProbe(cast("SMA", a), cast("SMA", b), condition.direction)
            assign, reading = _values_of(a, s, b, series[1]), _difference(s, series[1])
        elif isinstance(condition, MacdHistogram):
            probe = _MacdHistogramProbe(cast("MACD", a), condition.op, float(condition.value))
            assign, reading = _histogram_of(a, s), s.histogram.__getitem__
        else:
            probe = _MacdCrossProbe(cast("MACD", a), condition.direction)
            assign, reading = _histogram_of(a, s), s.histogram.__getitem__
        probe.condition = condition
        self._probe = probe
        self._assign = assign
        self._reading = reading
        self.done = 0
        #: Position of the first candle on which the condition could be evaluated (-1: none yet).
        self.ready_from = -1
        #: Positions of the candles on which it held, ascending.
        self.hits: list[int] = []
        self.hit_set: frozenset[int] | None = None

    def extend(self, stream: _Stream) -> None:
        """Evaluate the condition on the stream's candles not evaluated yet."""
        n = len(stream.closes)
        if self.done == n:
            return
        for s in self._series:
            s.extend(stream)
        probe, assign, closes, hits = self._probe, self._assign, stream.closes, self.hits
        evaluate = probe.evaluate
        i = self.done
        # The probe's `ready`, once set, stays set; until then, look for where it is set.
        while self.ready_from < 0 and i < n:
            assign(i)
            evaluate(closes[i])
            if probe.ready:
                self.ready_from = i
                if probe.matched:
                    hits.append(i)
            i += 1
        for j in range(i, n):
            assign(j)
            evaluate(closes[j])
            if probe.matched:
                hits.append(j)
        self.done = n
        self.hit_set = None

    def held(self) -> frozenset[int]:
        """The positions where the condition held, as a set."""
        if self.hit_set is None:
            self.hit_set = frozenset(self.hits)
        return self.hit_set

    def reading(self, position: int) -> float | None:
        """The figure the condition compared on the candle at ``position``."""
        return self._reading(position)


def _value_of(a: _Outputs, s: _Series) -> Callable[[int], None]:
    values = s.value

    def assign(i: int) -> None:
        a.value = values[i]

    return assign


def _values_of(a: _Outputs, s: _Series, b: _Outputs, t: _Series) -> Callable[[int], None]:
    first, second = s.value, t.value

    def assign(i: int) -> None:
        a.value = first[i]
        b.value = second[i]

    return assign


def _bands_of(a: _Outputs, s: _Series) -> Callable[[int], None]:
    lower, middle, upper = s.lower, s.middle, s.upper

    def assign(i: int) -> None:
        a.lower = lower[i]
        a.middle = middle[i]
        a.upper = upper[i]

    return assign


def _histogram_of(a: _Outputs, s: _Series) -> Callable[[int], None]:
    histogram = s.histogram

    def assign(i: int) -> None:
        a.histogram = histogram[i]

    return assign


def _difference(s: _Series, t: _Series) -> Callable[[int], float | None]:
    def reading(i: int) -> float | None:
        f, g = s.value[i], t.value[i]
        return None if f is None or g is None else f - g

    return reading


class _Stream:
    """The closed candles of one (symbol, interval), and what has been computed on them."""

    __slots__ = (
        "_plan",
        "_results",
        "_series",
        "_trades",
        "_trades_upto",
        "candles",
        "close_times",
        "closes",
        "highs",
        "indices",
        "interval",
        "lows",
        "symbol",
        "volumes",
    )

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        self.candles: list[Candle] = []
        self.closes: list[float] = []
        self.volumes: list[float] = []
        self.lows: list[float] = []
        self.highs: list[float] = []
        #: candle_index of each candle: cooldowns and holds count candles by open time, as live.
        self.indices: list[int] = []
        #: When each candle closed (the next open time), epoch ms.
        self.close_times: list[int] = []
        self._series: OrderedDict[_IndicatorKey, _Series] = OrderedDict()
        self._results: OrderedDict[Condition, _Result] = OrderedDict()
        # The trades of the last plan previewed, by trigger position, so that an edit of the
        # conditions re-simulates only the trades of new triggers; valid for `_trades_upto` candles.
        self._plan: TradePlan | None = None
        self._trades: dict[int, PreviewTrade] = {}
        self._trades_upto = 0

    def add(self, candle: Candle) -> bool:
        """Append a closed candle; False (ignored) unless it is newer than the last, as in the engine."""
        if self.candles and candle.open_time <= self.candles[-1].open_time:
            return False
        self.candles.append(candle)
        self.closes.append(candle.close)
        self.volumes.append(candle.volume)
        self.lows.append(candle.low)
        self.highs.append(candle.high)
        self.indices.append(candle_index(self.interval, candle.open_time))
        self.close_times.append(next_open_time(self.interval, candle.open_time))
        return True

    def series(self, key: _IndicatorKey) -> _Series:
        """The series of indicator ``key`` (computed lazily, extended by its users)."""
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = _Series(key)
            if len(self._series) > MAX_CACHED_SERIES:
                self._series.popitem(last=False)
        else:
            self._series.move_to_end(key)
        return found

    def result(self, condition: Condition) -> _Result:
        """The condition's result on every candle of the stream."""
        found = self._results.get(condition)
        if found is None:
            found = self._results[condition] = _Result(condition, self)
            if len(self._results) > MAX_CACHED_CONDITIONS:
                self._results.popitem(last=False)
        else:
            self._results.move_to_end(condition)
        found.extend(self)
        return found

    def trade(self, plan: TradePlan, position: int) -> PreviewTrade:
        """The trade ``plan`` opens at the trigger on the candle at ``position``."""
        if plan != self._plan:
            self._plan, self._trades = plan, {}
        elif self._trades_upto != len(self.candles):
            # Later candles change only the trades that were still open.
            self._trades = {p: t for p, t in self._trades.items() if t.exit is not None}
        self._trades_upto = len(self.candles)
        found = self._trades.get(position)
        if found is None:
            found = self._trades[position] = _trade(plan, self, position)
        return found

    def cached(self) -> tuple[int, int]:
        """(indicator series, condition results) held."""
        return len(self._series), len(self._results)


# --- the previewer ------------------------------------------------------------------------------


class Previewer:
    """Closed candles per (symbol, interval), and the indicator series computed on them.

    Make one with the history a page has loaded and call :meth:`preview` for each definition typed;
    see the module notes. Not thread-safe (nothing in the core is).
    """

    __slots__ = ("_streams",)

    def __init__(self, candles: Iterable[Candle] = ()) -> None:
        """Hold ``candles`` (any symbols and intervals; see :meth:`add`)."""
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.add(candles)

    def add(self, candles: Iterable[Candle]) -> int:
        """Append closed candles; return how many were taken.

        Per (symbol, interval), a candle is taken only if it is closed and newer than the last one
        taken, as the engine takes candles (so give each stream's candles oldest first). What was
        computed on the earlier candles is kept and extended when next needed.
        """
        taken = 0
        streams = self._streams
        for candle in candles:
            if not candle.closed:
                continue
            key = (candle.symbol, candle.interval)
            stream = streams.get(key)
            if stream is None:
                stream = streams[key] = _Stream(*key)
            taken += stream.add(candle)
        return taken

    def candles(self, symbol: str, interval: str) -> int:
        """How many candles the previewer holds for a stream."""
        stream = self._streams.get((symbol, interval))
        return len(stream.candles) if stream is not None else 0

    def cached(self, symbol: str, interval: str) -> tuple[int, int]:
        """How many indicator series and condition results are remembered for a stream."""
        stream = self._streams.get((symbol, interval))
        return stream.cached() if stream is not None else (0, 0)

    def preview(self, definition: TraderDefinition, *, primed: int = 0) -> Preview:
        """What ``definition`` would have signalled and traded on the candles held.

        The first ``primed`` candles of each symbol only warm the indicators (no trigger), as
        ``SignalManager.prime`` does; pass ``definition.history`` to evaluate only where the warm-up
        rule would have (see the module notes). Symbols of the definition without candles on its
        interval are listed in :attr:`Preview.missing`.
        """
        if primed < 0:
            raise ValueError("primed must be >= 0")
        found: list[SymbolPreview] = []
        missing: list[str] = []
        closed: list[tuple[int, int, int, float]] = []  # (exit time, symbol, entry time, return %)
        for number, symbol in enumerate(definition.symbols):
            stream = self._streams.get((symbol, definition.interval))
            if stream is None or not stream.candles:
                missing.append(symbol)
                continue
            one = _symbol_preview(stream, definition, primed)
            found.append(one)
            for trigger in one.triggers:
                trade = trigger.trade
                if trade is not None and trade.exit is not None:
                    closed.append((trade.exit.time, number, trade.entry_time, trade.return_pct))
        closed.sort()
        stats = _stats(
            [t.trade for s in found for t in s.triggers],
            drawdown=_drawdown(r for *_, r in closed),
            signals=sum(s.stats.signals for s in found),
        )
        return Preview(definition, tuple(found), tuple(missing), stats)


def preview(definition: TraderDefinition, candles: Iterable[Candle], *, primed: int = 0) -> Preview:
    """Preview ``definition`` on ``candles`` from scratch (see :class:`Previewer` to preview often)."""
    return Previewer(candles).preview(definition, primed=primed)


# --- one symbol ---------------------------------------------------------------------------------


def _symbol_preview(stream: _Stream, definition: TraderDefinition, primed: int) -> SymbolPreview:
    conditions = definition.conditions
    results = [stream.result(c) for c in conditions]
    n = len(stream.candles)
    ready = [r.ready_from for r in results]
    warm = -1 if min(ready) < 0 else max(ready)
    positions = _decide(definition, results, stream.indices, n if warm < 0 else max(primed, warm))
    labels = definition.labels
    plan = definition.trade
    triggers: list[Trigger] = []
    for position in positions:
        candle = stream.candles[position]
        if definition.match is Match.ALL:
            held = [True] * len(results)
        else:
            held = [position in r.held() for r in results]
        readings = tuple(
            Reading(label, r.reading(position), h) for label, r, h in zip(labels, results, held, strict=True)
        )
        # What the signal records: each matched condition with its figures, as the engine writes it.
        matched = tuple(
            reading_text(c, candle.close, x.value)
            for c, x in zip(conditions, readings, strict=True)
            if x.matched
        )
        trade = stream.trade(plan, position) if plan is not None else None
        triggers.append(Trigger(candle.open_time, candle.close, matched, readings, trade))
    closed = sorted(
        (t.trade for t in triggers if t.trade is not None and t.trade.exit is not None),
        key=_by_exit,
    )
    stats = _stats(
        [t.trade for t in triggers],
        drawdown=_drawdown(t.return_pct for t in closed),
        signals=len(triggers),
    )
    last = stream.candles[-1]
    history = definition.history
    return SymbolPreview(
        symbol=stream.symbol,
        interval=stream.interval,
        candles=n,
        first_open_time=stream.candles[0].open_time,
        last_open_time=last.open_time,
        last_close=last.close,
        warm_from=stream.candles[warm].open_time if warm >= 0 else None,
        settled_from=stream.candles[history].open_time if history < n else None,
        triggers=tuple(triggers),
        stats=stats,
    )


def _by_exit(trade: PreviewTrade) -> tuple[int, int]:
    assert trade.exit is not None
    return trade.exit.time, trade.entry_time


def _decide(
    definition: TraderDefinition, results: Sequence[_Result], indices: Sequence[int], start: int
) -> list[int]:
    """The positions at which the trader signals (TraderState._decide over every candle from ``start``).

    ``match: all``: where every condition held; ``match: any``: where one held, once all are warm
    (``start`` is past that). Then the cooldown, in candle indices.
    """
    if definition.match is Match.ALL:
        # The rarest condition first: each candle where it held is checked against the others.
        ordered = sorted(results, key=lambda r: len(r.hits))
        others = [r.held() for r in ordered[1:]]
        candidates = [p for p in ordered[0].hits if p >= start and all(p in o for o in others)]
    else:
        union: set[int] = set()
        for r in results:
            union.update(r.hits)
        candidates = sorted(p for p in union if p >= start)
    step = definition.cooldown_candles + 1
    out: list[int] = []
    next_index = -1
    for p in candidates:
        index = indices[p]
        if index < next_index:
            continue
        out.append(p)
        next_index = index + step
    return out


def _trade(plan: TradePlan, stream: _Stream, position: int) -> PreviewTrade:
    """The trade the trigger at ``position`` opens, managed over the later candles as live."""
    candle = stream.candles[position]
    step = INTERVALS.get(stream.interval)
    hold = plan.max_hold_candles
    trade = open_trade(
        # open_trade finds the expiry by stepping through max_hold_candles open times (up to 10,000
        # per trade, which would dominate a preview); for a fixed-length interval that is entry +
        # hold * length, added below. A calendar month ("1M") keeps open_trade's steps.
        plan if hold is None or step is None else replace(plan, max_hold_candles=None),
        key="",
        trader_id="",
        symbol=stream.symbol,
        interval=stream.interval,
        open_time=candle.open_time,
        price=candle.close,
        epoch=0,
    )
    if hold is not None and step is not None:
        trade = replace(trade, expires_at=trade.entry_time + hold * step)
    candles, lows, highs = stream.candles, stream.lows, stream.highs
    last = len(candles) - 1
    # exit_on decides; the scan only skips candles on which it cannot exit. Such a candle reaches no
    # price level (its low is above every level at or below the entry, its high below every level
    # at or above it) and closes before the expiry. Side-independent, so it skips no exit whichever
    # way a rule is tested.
    levels = [x for x in (trade.stop_loss_price, trade.take_profit_price) if x is not None]
    entry = trade.entry_price
    low_level = max((x for x in levels if x <= entry), default=-math.inf)
    high_level = min((x for x in levels if x >= entry), default=math.inf)
    limit = last
    if trade.expires_at is not None:
        limit = min(last, bisect.bisect_left(stream.close_times, trade.expires_at, position + 1))
    j = position + 1
    while j <= limit:
        while j < limit and lows[j] > low_level and highs[j] < high_level:
            j += 1
        done = exit_on(trade, candles[j])
        if done is not None:
            return _outcome(plan, trade, done, done.price, stream, position, j)
        j += 1
    return _outcome(plan, trade, None, candles[last].close, stream, position, last)


def _outcome(
    plan: TradePlan, trade: Trade, done: Exit | None, price: float, stream: _Stream, position: int, until: int
) -> PreviewTrade:
    """The trade exited at ``price`` on the candle at ``until`` (still open if ``done`` is None)."""
    pl = profit_loss(trade.side, trade.size, trade.entry_price, price)
    end = done.time if done is not None else stream.close_times[until]
    return PreviewTrade(
        side=trade.side,
        entry_time=trade.entry_time,
        entry_price=trade.entry_price,
        take_profit_price=trade.take_profit_price,
        stop_loss_price=trade.stop_loss_price,
        expires_at=trade.expires_at,
        exit=done,
        price=price,
        profit_loss=pl,
        return_pct=pl / plan.notional * 100.0,
        hold_candles=stream.indices[until] - stream.indices[position],
        hold_ms=end - trade.entry_time,
    )


# --- figures ------------------------------------------------------------------------------------


def _drawdown(returns: Iterable[float]) -> float:
    """The largest fall of the running sum of ``returns`` (starting at 0) from its peak so far."""
    equity = peak = worst = 0.0
    for r in returns:
        equity += r
        if equity > peak:
            peak = equity
        elif peak - equity > worst:
            worst = peak - equity
    return worst


def _stats(trades: Sequence[PreviewTrade | None], *, drawdown: float, signals: int) -> PreviewStats:
    closed = [t for t in trades if t is not None and t.exit is not None]
    still = [t for t in trades if t is not None and t.exit is None]
    wins = sum(1 for t in closed if t.profit_loss > 0.0)
    count = len(closed)
    return PreviewStats(
        signals=signals,
        trades=count,
        wins=wins,
        win_rate=wins / count if count else None,
        summed_return_pct=math.fsum(t.return_pct for t in closed),
        profit_loss=math.fsum(t.profit_loss for t in closed),
        max_drawdown_pct=drawdown,
        avg_hold_candles=math.fsum(t.hold_candles for t in closed) / count if count else None,
        avg_hold_ms=math.fsum(t.hold_ms for t in closed) / count if count else None,
        open_trades=len(still),
        open_profit_loss=math.fsum(t.profit_loss for t in still),
        open_return_pct=math.fsum(t.return_pct for t in still),
    )
