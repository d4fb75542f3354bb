"""The shared indicator pool of one (symbol, interval), and each trader's state on it.

Every distinct indicator and condition is computed once per candle, however many traders use it.

The warm-up rule both hosts follow is stated once, in :mod:`signalguard.core.traders`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, NoReturn, TypeAlias

from signalguard.core.candles import (
    SUPPORTED_INTERVALS,
    Candle,
    candle_index,
    normalize_symbol,
)
from signalguard.core.indicators import (
    EMA,
    MACD,
    RSI,
    SMA,
    BollingerBands,
    PriceChangePct,
    VolumeSpike,
)
from signalguard.core.traders.definition import (
    CloseVsAverage,
    CloseVsBollinger,
    Condition,
    Kind,
    MacdHistogram,
    Match,
    MovingAverageCross,
    Threshold,
    TraderDefinition,
)
from signalguard.core.traders.evaluation import (
    ConditionResult,
    EvaluationErrorCode,
    TraderEvaluationError,
    _CloseVsAverageProbe,
    _CloseVsBandProbe,
    _CrossProbe,
    _MacdCrossProbe,
    _MacdHistogramProbe,
    _ThresholdProbe,
)

_Indicator: TypeAlias = SMA | EMA | RSI | BollingerBands | MACD | VolumeSpike | PriceChangePct
_IndicatorKey: TypeAlias = tuple[str, int, int, int, float]


class IndicatorPool:
    """Indicators and condition results of one (symbol, interval), shared by trader states.

    Every distinct indicator (kind and parameters) and every distinct condition exists once and is
    updated once per closed candle, whichever trader first presents the candle; the other traders
    only read the results. The pool also keeps the most recent closes and volumes, as many as its
    traders' warm-up rule asks for, so that an indicator added later (a new trader joining a running
    pool) is replayed to the present immediately.

    A pool can also drive its trader states itself (:meth:`enlist`, :meth:`prime`, :meth:`advance`):
    that is how the SignalManager screens hundreds of traders per candle. A ``match: all`` trader
    can only signal on a candle where each of its conditions holds, so it is *anchored* on one of
    them and visited only when that one holds; the anchor is the condition that held least often
    so far (smoothed by a prior per kind), re-chosen as the candles come. Which trader is visited
    changes the work, never the result: a visited trader still checks all of its conditions and
    its cooldown, and a trader that is not visited could not have signalled.
    """

    __slots__ = (
        "_any",
        "_close_feeds",
        "_close_keys",
        "_closes",
        "_dead",
        "_enlisted",
        "_indicators",
        "_live",
        "_probe_list",
        "_probes",
        "_rotation",
        "_seq",
        "_volume_feeds",
        "_volume_keys",
        "_volumes",
        "broken",
        "gaps",
        "index",
        "interval",
        "last_close",
        "last_open_time",
        "symbol",
    )

    def __init__(self, symbol: str, interval: str) -> None:
        """Create an empty pool for ``symbol`` (normalised) on ``interval``."""
        self.symbol: str = normalize_symbol(symbol)
        if interval not in SUPPORTED_INTERVALS:
            raise ValueError(f"interval {interval!r} is not a Binance kline interval")
        self.interval: str = interval
        self.last_open_time: int = -1
        """Open time of the last candle applied (-1 before the first)."""
        self.last_close: float | None = None
        self.index: int = -1
        """:func:`~signalguard.core.candles.candle_index` of the last candle applied."""
        self.gaps: int = 0
        """How many applied candles did not directly follow the previous one."""
        self._indicators: dict[_IndicatorKey, tuple[_Indicator, int]] = {}
        self._probes: dict[Condition, tuple[ConditionResult, int]] = {}
        self._probe_list: list[ConditionResult] = []
        self._close_feeds: list[Callable[[float], None]] = []
        self._volume_feeds: list[Callable[[float], None]] = []
        self._close_keys: list[_IndicatorKey] = []
        self._volume_keys: list[_IndicatorKey] = []
        self._closes: deque[float] = deque(maxlen=1)
        self._volumes: deque[float] = deque(maxlen=1)
        self._dead: set[_IndicatorKey] = set()
        self.broken: dict[Condition, str] = {}
        """Conditions that raised (or read an indicator that raised), and why. They are no longer
        evaluated and never match; each stays here until its last user releases it."""
        self._enlisted: list[TraderState] = []
        self._any: list[TraderState] = []
        self._live = 0
        self._seq = 0
        self._rotation = 0

    def __len__(self) -> int:
        """Return the number of distinct indicators held."""
        return len(self._indicators)

    @property
    def conditions(self) -> int:
        """Number of distinct conditions evaluated per candle."""
        return len(self._probes)

    # - membership -

    def _indicator(self, key: _IndicatorKey) -> _Indicator:
        entry = self._indicators.get(key)
        if entry is not None:
            self._indicators[key] = (entry[0], entry[1] + 1)
            return entry[0]
        name, a, b, c, k = key
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
        # Replay what the pool remembers, so that a late indicator catches up with the others.
        indicator.extend(self._volumes if name == "vspike" else self._closes)
        self._indicators[key] = (indicator, 1)
        self._rebuild_feeds()
        return indicator

    def _release_indicator(self, key: _IndicatorKey) -> None:
        indicator, refs = self._indicators[key]
        if refs > 1:
            self._indicators[key] = (indicator, refs - 1)
            return
        del self._indicators[key]
        self._dead.discard(key)
        self._rebuild_feeds()

    def _rebuild_feeds(self) -> None:
        live = [(key, ind) for key, (ind, _) in self._indicators.items() if key not in self._dead]
        self._close_keys = [key for key, _ in live if key[0] != "vspike"]
        self._close_feeds = [ind.update for key, ind in live if key[0] != "vspike"]
        self._volume_keys = [key for key, _ in live if key[0] == "vspike"]
        self._volume_feeds = [ind.update for key, ind in live if key[0] == "vspike"]

    @staticmethod
    def _keys(condition: Condition) -> tuple[_IndicatorKey, ...]:
        if isinstance(condition, Threshold):
            name = {Kind.RSI: "rsi", Kind.VOLUME_SPIKE: "vspike"}.get(condition.kind, "roc")
            return ((name, condition.period, 0, 0, 0.0),)
        if isinstance(condition, CloseVsAverage):
            name = "sma" if condition.kind is Kind.CLOSE_VS_SMA else "ema"
            return ((name, condition.period, 0, 0, 0.0),)
        if isinstance(condition, CloseVsBollinger):
            return (("bb", condition.period, 0, 0, float(condition.k)),)
        if isinstance(condition, MovingAverageCross):
            name = "ema" if condition.kind is Kind.EMA_CROSS else "sma"
            return ((name, condition.fast, 0, 0, 0.0), (name, condition.slow, 0, 0, 0.0))
        return (("macd", condition.fast, condition.slow, condition.signal, 0.0),)

    def acquire(self, condition: Condition, history: int = 0) -> ConditionResult:
        """Register a user of ``condition``; return its shared per-candle result.

        ``history`` is how many recent closes the user's warm-up rule needs the pool to remember
        for indicators added later. Pair every call with :meth:`release`.
        """
        if history > (self._closes.maxlen or 0):
            self._closes = deque(self._closes, maxlen=history)
            self._volumes = deque(self._volumes, maxlen=history)
        entry = self._probes.get(condition)
        if entry is not None:
            self._probes[condition] = (entry[0], entry[1] + 1)
            return entry[0]
        indicators = [self._indicator(key) for key in self._keys(condition)]
        probe: ConditionResult
        if isinstance(condition, Threshold):
            source = indicators[0]
            assert isinstance(source, RSI | VolumeSpike | PriceChangePct)
            probe = _ThresholdProbe(source, condition.op, float(condition.value))
        elif isinstance(condition, CloseVsAverage):
            source = indicators[0]
            assert isinstance(source, SMA | EMA)
            probe = _CloseVsAverageProbe(source, condition.op)
        elif isinstance(condition, CloseVsBollinger):
            source = indicators[0]
            assert isinstance(source, BollingerBands)
            probe = _CloseVsBandProbe(source, condition.band, condition.op)
        elif isinstance(condition, MovingAverageCross):
            fast, slow = indicators
            assert isinstance(fast, SMA | EMA) and isinstance(slow, SMA | EMA)
            probe = _CrossProbe(fast, slow, condition.direction)
        else:
            source = indicators[0]
            assert isinstance(source, MACD)
            if isinstance(condition, MacdHistogram):
                probe = _MacdHistogramProbe(source, condition.op, float(condition.value))
            else:
                probe = _MacdCrossProbe(source, condition.direction)
        if self.last_close is not None:
            # Bring the new condition up to the candle the pool is at (a cross gets its
            # "previous" side from here).
            probe.evaluate(self.last_close)
        probe.born = self._live
        probe.condition = condition
        self._probes[condition] = (probe, 1)
        dead = [key for key in self._keys(condition) if key in self._dead]
        if dead:
            # It would read an indicator retired after a failure (until that one's last user
            # leaves): born failed, so that its user is stopped on the next candle.
            probe.failure = f"{condition.label} on {self.symbol} {self.interval} reads a failed indicator"
            self.broken[condition] = probe.failure
        else:
            self._probe_list.append(probe)
        return probe

    def release(self, condition: Condition) -> None:
        """Drop one user of ``condition``; free it (and unused indicators) with the last one."""
        probe, refs = self._probes[condition]
        if refs > 1:
            self._probes[condition] = (probe, refs - 1)
            return
        # An anchored state holds a reference to its anchor, so the last user is not anchored here.
        assert not probe.anchored, "release a state's conditions after delisting it"
        del self._probes[condition]
        if probe.failure is None:
            self._probe_list.remove(probe)
        self.broken.pop(condition, None)
        for key in self._keys(condition):
            self._release_indicator(key)

    # - trader states driven by the pool -

    def enlist(self, state: TraderState) -> None:
        """Let :meth:`advance` evaluate ``state`` (made on this pool) from the next candle on.

        An enlisted state must not also be given candles through its own ``prime``/``update``.
        """
        if state.pool is not self or state._enlisted:
            raise ValueError("the state is not this pool's, or is enlisted already")
        state._enlisted = True
        state._seq = self._seq
        self._seq += 1
        self._enlisted.append(state)
        if state._match_all:
            self._anchor(state)
        else:
            self._any.append(state)

    def delist(self, state: TraderState) -> None:
        """Stop evaluating ``state``; call before closing it."""
        if not state._enlisted or state.pool is not self:
            return
        state._enlisted = False
        self._enlisted.remove(state)
        if state._anchor is not None:
            state._anchor.anchored.remove(state)
            state._anchor = None
        else:
            self._any.remove(state)

    def _rate(self, probe: ConditionResult) -> float:
        # How often the condition held, with 32 imaginary candles at its kind's prior so that a
        # young condition is judged by its kind until it has a record of its own.
        return (probe.hits + 32.0 * probe.prior) / (self._live - probe.born + 32.0)

    def _anchor(self, state: TraderState) -> None:
        best = min(state._probes, key=self._rate)  # min keeps the first of equals: definition order
        if best is state._anchor:
            return
        if state._anchor is not None:
            state._anchor.anchored.remove(state)
        best.anchored.append(state)
        state._anchor = best

    def prime(self, candle: Candle) -> None:
        """Apply a historical closed candle for the enlisted states (nothing is evaluated).

        Candles not newer than the last one applied are skipped. Raises
        :class:`TraderEvaluationError` like :meth:`update`.
        """
        if candle.symbol != self.symbol or candle.interval != self.interval or not candle.closed:
            self._reject(candle)
        if candle.open_time > self.last_open_time:
            self._apply(candle)

    def advance(self, candle: Candle) -> list[tuple[TraderState, tuple[str, ...]]]:
        """Apply a live closed candle and return the enlisted states that signal on it, with labels.

        The states come in the order they were enlisted. A candle not newer than the last one
        applied returns ``[]``. Raises :class:`TraderEvaluationError` like :meth:`update` (the
        pool's failure is every enlisted state's failure).
        """
        if candle.symbol != self.symbol or candle.interval != self.interval or not candle.closed:
            self._reject(candle)
        if candle.open_time <= self.last_open_time:
            return []
        self._apply(candle)
        self._live += 1
        index = self.index
        visit: list[TraderState] = []
        for probe in self._probe_list:
            if probe.matched:
                probe.hits += 1
                if probe.anchored:
                    visit += probe.anchored
        if self._any:
            visit += self._any
        out: list[tuple[TraderState, tuple[str, ...]]] = []
        for state in visit:
            labels = state._decide(index)
            if labels:
                out.append((state, labels))
        if self.broken and out:
            # A ``match: any`` trader must not signal on its other conditions while one has failed.
            out = [(s, labels) for s, labels in out if s.failure is None]
        if len(out) > 1:
            out.sort(key=_by_seq)
        # Re-choose one state's anchor per candle: the rates move slowly, and one at a time keeps
        # the work flat (all of a user's pools see the same candle count, so a periodic sweep would
        # land on the same burst everywhere).
        enlisted = self._enlisted
        if enlisted:
            self._rotation = (self._rotation + 1) % len(enlisted)
            state = enlisted[self._rotation]
            if state._anchor is not None:
                self._anchor(state)
        return out

    # - candles -

    def update(self, candle: Candle) -> bool:
        """Apply a closed candle; return False if it is the candle applied last (a no-op).

        Raises :class:`TraderEvaluationError` for a candle of another stream, an unclosed candle, a
        candle older than the last one applied, or after an internal failure.
        """
        if candle.symbol != self.symbol or candle.interval != self.interval or not candle.closed:
            self._reject(candle)
        if candle.open_time == self.last_open_time:
            return False
        self._apply(candle)
        return True

    def _reject(self, candle: Candle) -> NoReturn:
        if candle.symbol != self.symbol or candle.interval != self.interval:
            raise TraderEvaluationError(
                EvaluationErrorCode.WRONG_STREAM,
                f"candle for {candle.symbol} {candle.interval} given to the pool of "
                f"{self.symbol} {self.interval}",
            )
        raise TraderEvaluationError(
            EvaluationErrorCode.NOT_CLOSED,
            f"candle {candle.symbol} {candle.interval} at {candle.open_time} is not closed",
        )

    def _apply(self, candle: Candle) -> None:
        t = candle.open_time
        if t < self.last_open_time:
            raise TraderEvaluationError(
                EvaluationErrorCode.OUT_OF_STEP,
                f"candle at {t} is older than the last candle applied ({self.last_open_time})",
            )
        close = candle.close
        volume = candle.volume
        done = 0  # steps completed, so that a failure is pinned on the one that raised
        try:
            for feed in self._close_feeds:
                feed(close)
                done += 1
            for feed in self._volume_feeds:
                feed(volume)
                done += 1
            for probe in self._probe_list:
                probe.evaluate(close)
                done += 1
        except Exception as exc:  # pinned on its condition, reported via `broken`
            self._salvage(close, volume, done, exc)
        self._closes.append(close)
        self._volumes.append(volume)
        index = candle_index(self.interval, t)
        if self.last_open_time >= 0 and index != self.index + 1:
            self.gaps += 1
        self.index = index
        self.last_close = close
        self.last_open_time = t

    def _salvage(self, close: float, volume: float, done: int, exc: Exception) -> None:
        """Finish a candle on which step ``done`` raised ``exc``, isolating what failed.

        An indicator that raised may be half-updated, so it is retired with every condition that
        reads it; a condition that raised is retired alone. Everything else takes the candle as
        usual, exactly once.
        """
        steps = [(k, f, close) for k, f in zip(self._close_keys, self._close_feeds, strict=True)]
        steps += [(k, f, volume) for k, f in zip(self._volume_keys, self._volume_feeds, strict=True)]
        failed: dict[_IndicatorKey, Exception] = {}
        first_probe = 0
        if done < len(steps):
            failed[steps[done][0]] = exc
            for key, feed, x in steps[done + 1 :]:
                try:
                    feed(x)
                except Exception as other:
                    failed[key] = other
        else:
            first_probe = done - len(steps)
        for i, probe in enumerate(list(self._probe_list)):
            if i < first_probe:
                continue  # evaluated before the failure
            condition = probe.condition
            assert condition is not None
            error: Exception | None = exc if i == first_probe and done >= len(steps) else None
            if error is None:
                error = next((failed[k] for k in self._keys(condition) if k in failed), None)
            if error is None:
                try:
                    probe.evaluate(close)
                except Exception as other:
                    error = other
            if error is not None:
                probe.failure = f"{condition.label} on {self.symbol} {self.interval} failed: {error!r}"
                probe.matched = probe.ready = False
                self._probe_list.remove(probe)
                self.broken[condition] = probe.failure
        if failed:
            self._dead.update(failed)
            self._rebuild_feeds()


_NO_SIGNAL: Final[tuple[str, ...]] = ()


def _by_seq(pair: tuple[TraderState, tuple[str, ...]]) -> int:
    return pair[0]._seq


class TraderState:
    """Evaluation state of one trader on one symbol.

    Feed history with :meth:`prime` and live closed candles with :meth:`update` (see the module's
    warm-up rule). ``update`` returns the labels of the matched conditions when the trader signals
    — all of them for ``match: all``, the matching ones for ``match: any`` — and ``()`` otherwise:
    when a condition fails or is not yet warm, during the cooldown, and for a candle already seen.
    After a signal on candle ``i`` the next one can come on candle ``i + cooldown_candles + 1`` at
    the earliest (counted in candle open times, so a gap in the stream also counts).
    """

    __slots__ = (
        "_anchor",
        "_enlisted",
        "_last_open_time",
        "_match_all",
        "_next_index",
        "_probes",
        "_released",
        "_seq",
        "_step",
        "_warm",
        "definition",
        "interval",
        "labels",
        "pool",
        "symbol",
    )

    def __init__(self, definition: TraderDefinition, symbol: str, pool: IndicatorPool | None = None) -> None:
        """Start evaluating ``definition`` on ``symbol``, with a private pool unless one is given.

        A shared ``pool`` must be for the same symbol and interval. Joining a pool that has already
        applied candles starts after its last candle.
        """
        symbol = normalize_symbol(symbol)
        if symbol not in definition.symbols:
            raise ValueError(f"{symbol} is not one of the trader's symbols")
        if pool is None:
            pool = IndicatorPool(symbol, definition.interval)
        elif pool.symbol != symbol or pool.interval != definition.interval:
            raise ValueError(
                f"pool of {pool.symbol} {pool.interval} cannot serve {symbol} {definition.interval}"
            )
        self.definition: TraderDefinition = definition
        self.symbol: str = symbol
        self.interval: str = definition.interval
        self.pool: IndicatorPool = pool
        self.labels: tuple[str, ...] = definition.labels
        """Labels of all conditions, in definition order."""
        history = definition.history
        self._probes: tuple[ConditionResult, ...] = tuple(
            pool.acquire(c, history) for c in definition.conditions
        )
        self._match_all = definition.match is Match.ALL
        self._step = definition.cooldown_candles + 1
        self._next_index = -1
        self._last_open_time = pool.last_open_time
        self._warm = False
        self._released = False
        self._enlisted = False
        self._anchor: ConditionResult | None = None
        self._seq = 0

    @property
    def warmup(self) -> int:
        """Closed candles needed before the trader can signal."""
        return self.definition.warmup

    @property
    def history(self) -> int:
        """Closed candles to :meth:`prime` with before streaming (the warm-up rule)."""
        return self.definition.history

    @property
    def ready(self) -> bool:
        """Whether every condition can be evaluated."""
        if not self._warm:
            self._warm = all(p.ready for p in self._probes)
        return self._warm

    def status(self) -> tuple[tuple[str, bool | None], ...]:
        """Return each condition's label with its result on the last candle (None: not warm)."""
        return tuple(
            (label, p.matched if p.ready else None)
            for label, p in zip(self.labels, self._probes, strict=True)
        )

    def _check(self, candle: Candle) -> None:
        if self._released:
            raise TraderEvaluationError(EvaluationErrorCode.RELEASED, "the trader state was closed")
        if self._enlisted:
            raise TraderEvaluationError(
                EvaluationErrorCode.INTERNAL, "an enlisted trader state takes candles through its pool"
            )
        if candle.symbol != self.symbol or candle.interval != self.interval:
            raise TraderEvaluationError(
                EvaluationErrorCode.WRONG_STREAM,
                f"candle for {candle.symbol} {candle.interval} given to a trader on "
                f"{self.symbol} {self.interval}",
            )
        if not candle.closed:
            raise TraderEvaluationError(
                EvaluationErrorCode.NOT_CLOSED,
                f"candle {candle.symbol} {candle.interval} at {candle.open_time} is not closed",
            )

    def prime(self, candle: Candle) -> None:
        """Feed a historical closed candle: indicators advance, nothing is signalled.

        Candles not newer than the last one seen are skipped, and so are candles a shared pool has
        already moved past (they are in it already). Raises :class:`TraderEvaluationError`.
        """
        self._check(candle)
        t = candle.open_time
        if t <= self._last_open_time:
            return
        if t > self.pool.last_open_time:
            self.pool._apply(candle)
        self._last_open_time = t
        if self.pool.broken and (failure := self.failure) is not None:
            raise TraderEvaluationError(EvaluationErrorCode.INTERNAL, failure)

    def update(self, candle: Candle) -> tuple[str, ...]:
        """Evaluate a live closed candle; return the matched labels if the trader signals.

        Raises :class:`TraderEvaluationError` (and nothing else) if the candle cannot be evaluated.
        """
        # A closed state has an empty symbol, so that it fails this test without a test of its own.
        if (
            candle.symbol != self.symbol
            or candle.interval != self.interval
            or not candle.closed
            or self._enlisted
        ):
            self._check(candle)
        t = candle.open_time
        if t <= self._last_open_time:
            return _NO_SIGNAL
        pool = self.pool
        if pool.last_open_time != t:
            pool._apply(candle)
        self._last_open_time = t
        if pool.broken:
            failure = self.failure
            if failure is not None:
                raise TraderEvaluationError(EvaluationErrorCode.INTERNAL, failure)
        return self._decide(pool.index)

    @property
    def failure(self) -> str | None:
        """Why one of the trader's conditions can no longer be evaluated (None while all can)."""
        for probe in self._probes:
            if probe.failure is not None:
                return probe.failure
        return None

    def _decide(self, index: int) -> tuple[str, ...]:
        # The hot path: the pool has applied the candle of ``index``; one trader of hundreds
        # sharing it reads its conditions' results.
        if index < self._next_index:
            return _NO_SIGNAL
        if self._match_all:
            for probe in self._probes:
                if not probe.matched:
                    return _NO_SIGNAL
        else:
            for probe in self._probes:
                if probe.matched:
                    break
            else:
                return _NO_SIGNAL
            if not self._warm and not self.ready:
                return _NO_SIGNAL
        self._next_index = index + self._step
        # A signal: the matched conditions with the values that decided them (off the hot path).
        close = self.pool.last_close or 0.0
        return tuple(
            p.reading(label, close) for label, p in zip(self.labels, self._probes, strict=True) if p.matched
        )

    def close(self) -> None:
        """Release the trader's conditions from the pool. The state cannot be used afterwards."""
        if self._released:
            return
        self._released = True
        self.pool.delist(self)
        self.symbol = ""
        for condition in self.definition.conditions:
            self.pool.release(condition)
