"""Trader definitions: a strict JSON schema, readable condition labels, and evaluation on candles.

A trader watches some symbols on one interval and signals when its conditions hold on a closed
candle. The definition is JSON, validated by :func:`parse_trader`; nothing in it is ever evaluated
as code. Schema (version 1; every key below is the full set — unknown keys are rejected)::

    {
      "version": 1,                       # required, must be 1
      "symbols": ["BTCUSDT", "ETHUSDT"],  # required, 1..500 distinct symbols (upper-cased)
      "interval": "1m",                   # required, a Binance kline interval
      "match": "all",                     # optional, "all" (default) or "any"
      "cooldown_candles": 5,              # optional, 0..10000 (default 0)
      "conditions": [ ... ],              # required, 1..10 distinct conditions
      "trade": { ... }                    # optional: paper-trade every signal (below)
    }

A ``trade`` plan opens one paper trade per signal (see :mod:`signalguard.core.positions`)::

    {
      "side": "long",                     # required, "long" or "short"
      "notional": 100,                    # required, quote amount per trade, 0 < v <= 1e9
      "take_profit_pct": 2.5,             # optional, 0 < v <= 1000 (<= 99.99 for a short)
      "stop_loss_pct": 1.0,               # optional, 0 < v <= 99.99 (<= 1000 for a short)
      "max_hold_candles": 240             # optional, 1..10000
    }

At least one exit rule is required, so that no trade stays open for ever by its plan alone.

Conditions (``op`` is one of ``<``, ``<=``, ``>``, ``>=``; periods are integers 2..500 unless
noted; ``direction`` is ``"up"`` or ``"down"``; numbers are JSON numbers, never booleans):

=====================  ===================================  =====================================
``indicator``          other keys (all required)            label example
=====================  ===================================  =====================================
``rsi``                period, op, value (0..100)           ``RSI(14) < 30``
``volume_spike``       period, op, value (0 < v <= 1000)    ``Volume > 2.0x avg(20)``
``price_change_pct``   period (1..500), op,                 ``Price change(1) <= -3%``
                       value (-100..10000)
``close_vs_sma``       period, op                           ``Close > SMA(50)``
``close_vs_ema``       period, op                           ``Close < EMA(200)``
``close_vs_bollinger`` period, k (0 < k <= 10),             ``Close < BB(20, 2.0) lower``
                       band ("upper"/"middle"/"lower"), op
``ema_cross``          fast, slow (fast < slow), direction  ``EMA(9) crosses above EMA(21)``
``sma_cross``          fast, slow (fast < slow), direction  ``SMA(50) crosses below SMA(200)``
``macd_histogram``     fast, slow (fast < slow), signal     ``MACD(12, 26, 9) histogram > 0``
                       (1..500), op, value (|v| <= 1e15)
``macd_cross``         fast, slow, signal, direction        ``MACD(12, 26, 9) crosses above
                                                            signal``
=====================  ===================================  =====================================

Where the rules live: :mod:`.rules` declares every field above (type, bounds, choices, which are
required) and the cross-field rules (distinct symbols after upper-casing, ``fast < slow``, distinct
conditions, at least one exit rule, the side-dependent bounds of the trade plan) once.
:func:`parse_trader` walks them and reports the first offending field as ``path: problem``; the
database's input check on ``traders.definition`` is compiled from them
(``python -m signalguard.devstack.definition_sql``) and refuses through the API exactly what
:func:`parse_trader` refuses, with the same message (SG009, ``invalid_argument: definition.<path>:
<problem>``: see :func:`~.rules.database_message`); and :func:`definition_json_schema` exports them as
a JSON Schema document for editors, listing what a schema cannot say under ``x-cross-field-rules``.

Semantics: ``volume_spike`` compares ``volume / mean(previous period volumes)`` (see
:class:`~signalguard.core.indicators.VolumeSpike`); ``price_change_pct`` is
``(close / close[period candles ago] - 1) * 100``. "Crosses above" means the fast line was at or
below the slow line on the previous closed candle and is strictly above it now ("below" mirrors
it); ``macd_cross`` is the MACD line crossing its signal line (the histogram crossing zero). A
number in a label is printed as written in the JSON (``2`` stays ``2``, ``2.0`` stays ``2.0``).

Evaluation: a :class:`TraderState` evaluates one trader on one symbol. Its indicators live in an
:class:`IndicatorPool` for that (symbol, interval), which may be shared by any number of trader
states: each distinct indicator and each distinct condition is then computed once per candle,
however many traders use it, and a trader's own work per candle is a few attribute reads.

Warm-up rule (shared by the browser and the cloud worker)
    Before streaming a (trader, symbol), fetch the newest ``definition.history`` *closed* klines by
    REST (page backwards with ``endTime`` past Binance's 1000-row limit; drop the still-open last
    row), feed them oldest first to :meth:`TraderState.prime`, then feed every closed stream candle
    to :meth:`TraderState.update`. Candles not newer than the last one seen are ignored, so the
    REST/stream overlap is harmless. ``history = max over conditions of (warmup + settle)``:
    ``warmup`` is the number of closed candles before the condition can be evaluated at all (the
    trader's :attr:`~TraderDefinition.warmup` is the maximum), and ``settle`` is 0 for windowed
    indicators (SMA, Bollinger, volume, price change — exact once warm) and, for exponentially
    smoothed ones (EMA, RSI, MACD), the number of further candles after which the weight of the
    starting point has decayed below 10⁻⁶ (counted by repeated multiplication, so that every
    platform derives the same number). Two engines that follow the rule from different starting
    candles — a browser tab opened now, a cloud worker running for days — then differ by at most
    10⁻⁶ of the difference between their starting states. No signal is emitted before every
    condition of the trader is warm.
"""

from __future__ import annotations

from signalguard.core.traders.definition import (
    MAX_CONDITIONS,
    MAX_COOLDOWN,
    MAX_DEFINITION_SIZE,
    MAX_PERIOD,
    MAX_SYMBOLS,
    MIN_PERIOD,
    SCHEMA_VERSION,
    SETTLE_RESIDUAL,
    Band,
    CloseVsAverage,
    CloseVsBollinger,
    Condition,
    Direction,
    Kind,
    MacdCross,
    MacdHistogram,
    Match,
    MovingAverageCross,
    Op,
    Threshold,
    TraderDefinition,
)
from signalguard.core.traders.evaluation import ConditionResult, EvaluationErrorCode, TraderEvaluationError
from signalguard.core.traders.pool import IndicatorPool, TraderState
from signalguard.core.traders.rules import (
    DEFINITION_RULES,
    database_message,
    definition_json_schema,
    problem_from_database,
)
from signalguard.core.traders.validation import TraderDefinitionError, parse_trader

__all__ = [
    "DEFINITION_RULES",
    "MAX_CONDITIONS",
    "MAX_COOLDOWN",
    "MAX_DEFINITION_SIZE",
    "MAX_PERIOD",
    "MAX_SYMBOLS",
    "MIN_PERIOD",
    "SCHEMA_VERSION",
    "SETTLE_RESIDUAL",
    "Band",
    "CloseVsAverage",
    "CloseVsBollinger",
    "Condition",
    "ConditionResult",
    "Direction",
    "EvaluationErrorCode",
    "IndicatorPool",
    "Kind",
    "MacdCross",
    "MacdHistogram",
    "Match",
    "MovingAverageCross",
    "Op",
    "Threshold",
    "TraderDefinition",
    "TraderDefinitionError",
    "TraderEvaluationError",
    "TraderState",
    "database_message",
    "definition_json_schema",
    "parse_trader",
    "problem_from_database",
]
