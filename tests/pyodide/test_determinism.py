"""Browser and cloud compute the same signals: the engine in Pyodide (3.14) equals CPython's.

If they differed, the unique signal key could not collapse a handoff's overlap: the same setup would
be two rows, or none. The reference run feeds a synthetic series with planted setups, as Binance REST
rows through the core's parser, to every kind of condition.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from prepare import REPO, prepare

from signalguard.replay.reference import reference_signals

RUNNER = Path(__file__).with_name("runner.mjs")
USER = "a11ce000-0000-4000-8000-000000000001"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def trader(n: int, match: str, *conditions: dict[str, object], cooldown: int = 3) -> dict[str, object]:
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "name": f"t{n}",
        "definition": {
            "version": 1,
            "symbols": SYMBOLS,
            "interval": "1m",
            "match": match,
            "cooldown_candles": cooldown,
            "conditions": list(conditions),
        },
    }


TRADERS = [
    trader(1, "all", {"indicator": "rsi", "period": 14, "op": "<", "value": 30}),
    trader(2, "all", {"indicator": "volume_spike", "period": 20, "op": ">", "value": 3.0}),
    trader(
        3,
        "any",
        {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
        {"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"},
    ),
    trader(
        4,
        "all",
        {"indicator": "close_vs_bollinger", "period": 20, "k": 2.0, "band": "lower", "op": "<"},
        {"indicator": "rsi", "period": 7, "op": "<", "value": 35},
        cooldown=0,
    ),
    trader(
        5,
        "any",
        {"indicator": "macd_cross", "fast": 12, "slow": 26, "signal": 9, "direction": "up"},
        {"indicator": "macd_histogram", "fast": 5, "slow": 35, "signal": 5, "op": ">", "value": 0.5},
        {"indicator": "close_vs_ema", "period": 50, "op": ">"},
    ),
    trader(
        6,
        "all",
        {"indicator": "sma_cross", "fast": 5, "slow": 20, "direction": "down"},
        {"indicator": "close_vs_sma", "period": 100, "op": "<"},
    ),
]
ARGS = [USER, TRADERS, SYMBOLS, "1m", 2500, 7]


def test_engine_output_is_identical_in_cpython_and_pyodide() -> None:
    prepare()
    cpython = reference_signals(*ARGS)  # type: ignore[arg-type]
    done = subprocess.run(
        ["node", str(RUNNER), "call", "signalguard.replay.reference:reference_signals", json.dumps(ARGS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    pyodide = json.loads(done.stdout)
    # Every trader fires, so the comparison covers every kind of condition.
    assert {s["trader_id"] for s in cpython} == {t["id"] for t in TRADERS}
    assert len(cpython) > 100
    assert pyodide == json.loads(json.dumps(cpython))  # keys, prices (exact floats), labels, order
