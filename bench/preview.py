"""Trader preview latency: what the editor pays per keystroke, in Pyodide and CPython.

The trader editor previews a definition on the loaded history (``signalguard.core.preview``). Two
sizes: 1 symbol x 1,000 closed 15m candles and 10 symbols x 1,000 (seeded synthetic candles from
``signalguard.replay.synthetic``, read through the core's REST parser as the replay does). The
definition has three conditions (RSI(14) < 40, close below the Bollinger middle band, MACD histogram
below 0) and the paper-trade plan of the ``rsi_oversold`` starter.

Three figures per size, median and p95 over ``REPS`` runs after ``WARMUP`` untimed ones:

(a) first preview: a ``Previewer`` holding the candles (made untimed, its making reported as "load")
    previews the definition for the first time, so every indicator is computed;
(b) re-preview after a threshold edit: the RSI threshold moves to a value not seen before, so that
    condition is compared again on the remembered RSI series and the decision and trades re-run;
(c) the baseline, recomputing from scratch as the engine would: a fresh ``SignalManager`` with the
    trader, fed every candle (what a preview without this module would do).

Each run checks that the preview's triggers are the engine's signals. The targets are those of the
editor in the browser (Pyodide): <= 150 ms for 1 x 1,000 and <= 1 s for 10 x 1,000, for (a) and (b).

``python -m bench.preview`` prints both interpreters; ``measure()`` is what each one runs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CANDLES = 1_000
SIZES = (1, 10)
REPS = 40
WARMUP = 3
INTERVAL = "15m"
#: Pyodide targets (ms) per number of symbols, for the first preview and a re-preview.
TARGETS = {1: 150.0, 10: 1000.0}

CONDITIONS: list[dict[str, Any]] = [
    {"indicator": "rsi", "period": 14, "op": "<", "value": 40},
    {"indicator": "close_vs_bollinger", "period": 20, "k": 2, "band": "middle", "op": "<"},
    {"indicator": "macd_histogram", "fast": 12, "slow": 26, "signal": 9, "op": "<", "value": 0},
]


def _summary(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))] * 1000,
    }


def measure(reps: int = REPS) -> dict[str, Any]:
    """Time (a), (b) and (c) for each size; return the figures."""
    from signalguard.core.engine import SignalCreated, SignalManager, TraderRecord
    from signalguard.core.preview import Previewer
    from signalguard.core.traders import parse_trader
    from signalguard.core.traders.templates import template
    from signalguard.replay.reference import candles_of
    from signalguard.replay.synthetic import generate

    plan = template("rsi_oversold").as_json()["trade"]
    out: dict[str, Any] = {"python": ".".join(map(str, sys.version_info[:3])), "platform": sys.platform}
    for size in SIZES:
        symbols = [f"S{i:02d}USDT" for i in range(size)]
        candles = candles_of(generate(symbols, interval=INTERVAL, candles=CANDLES, seed=7).series)
        raw: dict[str, Any] = {
            "version": 1,
            "symbols": symbols,
            "interval": INTERVAL,
            "match": "all",
            "cooldown_candles": 4,
            "conditions": CONDITIONS,
            "trade": plan,
        }
        definition = parse_trader(raw)

        def engine(raw: dict[str, Any] = raw, candles: list[Any] = candles) -> list[tuple[str, int]]:
            manager = SignalManager("a11ce000-0000-4000-8000-000000000001")
            manager.set_traders([TraderRecord("00000000-0000-4000-8000-000000000001", "bench", raw)])
            manager.authorize(True, 1)
            signals = []
            for candle in candles:
                manager.feed(candle)
                for effect in manager.drain():
                    if isinstance(effect, SignalCreated):
                        signals.append((effect.signal.symbol, effect.signal.open_time))
            return signals

        load, first, edit, scratch = [], [], [], []
        signals = 0
        for rep in range(WARMUP + reps):
            t = time.perf_counter()
            previewer = Previewer(candles)
            t1 = time.perf_counter()
            got = previewer.preview(definition)
            t2 = time.perf_counter()
            # A threshold no earlier run used: a condition the previewer has not seen.
            edited = parse_trader(
                {**raw, "conditions": [{**CONDITIONS[0], "value": 40 + (rep + 1) / 8}, *CONDITIONS[1:]]}
            )
            t3 = time.perf_counter()
            previewer.preview(edited)
            t4 = time.perf_counter()
            baseline = engine()
            t5 = time.perf_counter()
            assert sorted(baseline) == sorted(
                (s.symbol, tr.open_time) for s in got.symbols for tr in s.triggers
            )
            signals = got.stats.signals
            if rep >= WARMUP:
                load.append(t1 - t)
                first.append(t2 - t1)
                edit.append(t4 - t3)
                scratch.append(t5 - t4)
        out[str(size)] = {
            "signals": signals,
            "trades": got.stats.trades + got.stats.open_trades,
            "load": _summary(load),
            "first": _summary(first),
            "edit": _summary(edit),
            "scratch": _summary(scratch),
        }
    return out


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tests" / "pyodide"))
    from prepare import prepare  # the Pyodide site with nothing extra; measure() needs only the core

    prepare()
    cpython = measure()
    code = "import sys\nsys.path.insert(0, '/repo')\nfrom bench.preview import measure\nmeasure()"
    done = subprocess.run(
        ["node", str(repo / "tests" / "pyodide" / "runner.mjs"), "run", code],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    pyodide = json.loads(done.stdout)
    print(
        f"trader preview: {CANDLES:,} closed {INTERVAL} candles per symbol, 3 conditions and a trade plan; "
        f"median / p95 of {REPS} runs after {WARMUP} warm-up runs"
    )
    for size in SIZES:
        key = str(size)
        plural = "s" if size > 1 else ""
        print(f"  {size} symbol{plural} x {CANDLES:,} candles ({cpython[key]['signals']} signals)")
        for name, r in (("Pyodide", pyodide), ("CPython", cpython)):
            f = r[key]
            a, b, c = f["first"], f["edit"], f["scratch"]
            print(
                f"    {name:8} {r['python']:8} (a) first {a['p50_ms']:7.2f} / {a['p95_ms']:7.2f} ms   "
                f"(b) threshold edit {b['p50_ms']:7.2f} / {b['p95_ms']:7.2f} ms   "
                f"(c) engine from scratch {c['p50_ms']:7.2f} / {c['p95_ms']:7.2f} ms   "
                f"load {f['load']['p50_ms']:6.2f} ms"
            )
            print(
                f"    {'':8} {'':8} baseline / first {c['p50_ms'] / a['p50_ms']:5.1f}x, "
                f"baseline / edit {c['p50_ms'] / b['p50_ms']:5.1f}x (medians)"
            )
        target = TARGETS[size]
        f = pyodide[key]
        worst = max(f["first"]["p95_ms"], f["edit"]["p95_ms"])
        print(
            f"    target in Pyodide, p95 of (a) and (b) <= {target:.0f} ms: "
            f"{'met' if worst <= target else 'NOT met'} ({worst:.1f} ms)"
        )
        p, c = pyodide[key], cpython[key]
        print(
            f"    Pyodide / CPython medians: (a) {p['first']['p50_ms'] / c['first']['p50_ms']:.2f}x, "
            f"(b) {p['edit']['p50_ms'] / c['edit']['p50_ms']:.2f}x, "
            f"(c) {p['scratch']['p50_ms'] / c['scratch']['p50_ms']:.2f}x"
        )


if __name__ == "__main__":
    main()
