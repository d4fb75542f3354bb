"""A candle burst: 100 traders x 200 symbols (20,000 trader x symbol evaluations) closing at once.

Every symbol's 1m candle closes together (that is how an exchange's minute ends); the SignalManager
takes the 200 closed candles and evaluates every trader on every symbol. Traders are drawn (seeded)
from the condition catalogue, so pools share some indicators and not others, as real users' do.
The figure is the time per burst after warm-up, p50 and p99 over 300 bursts, measured in Pyodide under
Node (the browser's interpreter) and in CPython in the same run; the goal is p99 <= 25 ms in Pyodide.

The baseline, on the same candles in the same interpreter, is the straightforward loop: every one of
the 20,000 trader states takes every candle through ``TraderState.update`` (the shared pools still
compute each indicator once). The SignalManager instead lets each pool visit only the traders that can
signal (see ``IndicatorPool``), and it also creates the signals, which the baseline does not.

``python -m bench.burst`` prints both; ``measure()`` is what each interpreter runs.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TRADERS = 100
SYMBOLS = 200
WARMUP = 250
BURSTS = 300
MINUTE = 60_000
START = 1_759_449_600_000

CATALOGUE: list[dict[str, Any]] = [
    {"indicator": "rsi", "period": 14, "op": "<", "value": 30},
    {"indicator": "rsi", "period": 7, "op": ">", "value": 70},
    {"indicator": "volume_spike", "period": 20, "op": ">", "value": 2.0},
    {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
    {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
    {"indicator": "sma_cross", "fast": 10, "slow": 50, "direction": "down"},
    {"indicator": "close_vs_bollinger", "period": 20, "k": 2.0, "band": "lower", "op": "<"},
    {"indicator": "macd_cross", "fast": 12, "slow": 26, "signal": 9, "direction": "up"},
    {"indicator": "close_vs_bollinger", "period": 50, "k": 2.5, "band": "upper", "op": ">"},
]


def measure(traders: int = TRADERS, symbols: int = SYMBOLS, bursts: int = BURSTS) -> dict[str, Any]:
    """Build the traders, prime them, then time ``bursts`` bursts; return the figures."""
    from signalguard.core.candles import Candle
    from signalguard.core.engine import SignalManager, TraderRecord
    from signalguard.core.traders import IndicatorPool, TraderState, parse_trader

    rnd = random.Random(5)
    names = [f"S{i:03d}USDT" for i in range(symbols)]
    records = []
    for t in range(traders):
        conditions = rnd.sample(CATALOGUE, rnd.choice((1, 2, 3)))
        definition = {
            "version": 1,
            "symbols": names,
            "interval": "1m",
            "match": "all",
            "cooldown_candles": 5,
            "conditions": conditions,
        }
        records.append(TraderRecord(f"00000000-0000-4000-8000-{t:012d}", f"t{t}", definition))
    manager = SignalManager("a11ce000-0000-4000-8000-000000000001")
    manager.set_traders(records)
    prices = [100.0 * (1 + i / symbols) for i in range(symbols)]

    def burst(i: int) -> list[Candle]:
        out = []
        for s, name in enumerate(names):
            p = prices[s]
            c = p * math.exp(rnd.gauss(0, 0.01))
            prices[s] = c
            out.append(
                Candle(name, "1m", START + i * MINUTE, p, max(p, c), min(p, c), c, rnd.uniform(1, 100), True)
            )
        return out

    history = [burst(i) for i in range(WARMUP)]
    live = [burst(i) for i in range(WARMUP, WARMUP + bursts)]

    for candles in history:
        for candle in candles:
            manager.prime(candle)
    manager.authorize(True, 1)
    manager.drain()  # the streams to watch (StreamsChanged): not a burst's work
    times = []
    created = 0
    for candles in live:
        t = time.perf_counter()
        for candle in candles:
            manager.feed(candle)
        created += len(manager.drain())
        times.append(time.perf_counter() - t)
    times.sort()

    # The baseline: pools of its own, primed, then every state evaluated on every candle.
    pools = {name: IndicatorPool(name, "1m") for name in names}
    definitions = [parse_trader(r.definition) for r in records]
    states = {name: [TraderState(d, name, pools[name]) for d in definitions] for name in names}
    for candles in history:
        for candle in candles:
            pools[candle.symbol].prime(candle)
    every = []
    matched = 0
    for candles in live:
        t = time.perf_counter()
        for candle in candles:
            for state in states[candle.symbol]:
                if state.update(candle):
                    matched += 1
        every.append(time.perf_counter() - t)
    every.sort()
    assert matched == manager.matches, "the baseline must find the same matches"
    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "platform": sys.platform,
        "evaluations_per_burst": sum(len(r.definition["symbols"]) for r in records),  # type: ignore[index]
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] * 1000,
        "max_ms": times[-1] * 1000,
        "effects_per_burst": created / bursts,
        "every_p50_ms": statistics.median(every) * 1000,
        "every_p99_ms": every[min(len(every) - 1, int(0.99 * len(every)))] * 1000,
    }


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "tests" / "pyodide"))
    from prepare import prepare  # the Pyodide site with nothing extra; measure() needs only the core

    prepare()
    cpython = measure()
    code = "import sys\nsys.path.insert(0, '/repo')\nfrom bench.burst import measure\nmeasure()"
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
        f"candle burst: {TRADERS} traders, {SYMBOLS} symbols, "
        f"{cpython['evaluations_per_burst']:,} trader x symbol evaluations per burst, {BURSTS} bursts"
    )
    for name, r in (("Pyodide", pyodide), ("CPython", cpython)):
        print(
            f"  {name:8} {r['python']:8} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
            f"max {r['max_ms']:6.2f} ms  ({r['effects_per_burst']:.1f} effects per burst)"
        )
        print(
            f"  {'':8} {'':8} baseline, every state evaluated: p50 {r['every_p50_ms']:6.2f} ms  "
            f"p99 {r['every_p99_ms']:6.2f} ms  ({r['every_p99_ms'] / r['p99_ms']:.1f}x the manager's p99)"
        )
    print(
        f"  Pyodide / CPython p99: {pyodide['p99_ms'] / cpython['p99_ms']:.2f}x; goal p99 <= 25 ms in "
        f"Pyodide: {'met' if pyodide['p99_ms'] <= 25 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
