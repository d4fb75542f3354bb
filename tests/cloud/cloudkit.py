"""Helpers for the cloud worker's tests: the market, users with traders, the worker as a subprocess."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from stackkit import Actor, Actors

from signalguard.core.engine import TraderRecord
from signalguard.devstack.stack import LocalStack
from signalguard.replay.reference import candles_of, run_reference
from signalguard.replay.series import Series
from signalguard.replay.server import ReplayServer
from signalguard.replay.synthetic import generate

T = TypeVar("T")


def unsigned_token(claims: dict[str, Any]) -> str:
    """A JWT with these claims and a garbage signature (the worker reads tokens, never verifies them)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


#: Enough symbols that a 1s replay yields a signal every second or two (planted setups and EMA crosses).
SYMBOLS = tuple(f"S{i:02d}USDT" for i in range(60))
CANDLES = 1200
#: Closed candles the replay has at start: more than the traders' warm-up (RSI(14): 202 candles).
HISTORY = 300


def definitions(symbols: tuple[str, ...] = SYMBOLS) -> dict[str, dict[str, Any]]:
    """Three traders on 1s candles: two that fire only on planted setups, one on every EMA cross."""
    base = {"version": 1, "symbols": list(symbols), "interval": "1s", "match": "all", "cooldown_candles": 0}
    return {
        "volume spike": {
            **base,
            "conditions": [{"indicator": "volume_spike", "period": 20, "op": ">=", "value": 5}],
        },
        "sharp drop": {
            **base,
            "conditions": [
                {"indicator": "rsi", "period": 14, "op": "<", "value": 30},
                {"indicator": "price_change_pct", "period": 1, "op": "<=", "value": -3},
            ],
        },
        "ema cross": {
            **base,
            "conditions": [{"indicator": "ema_cross", "fast": 9, "slow": 21, "direction": "up"}],
        },
    }


@dataclass
class Market:
    """The session's replay: a synthetic 1s series, looping, and the reference run over it."""

    series: Series
    history: int
    server: ReplayServer | None = None

    @classmethod
    def synthetic(cls) -> Market:
        series = generate(SYMBOLS, interval="1s", candles=CANDLES, seed=3, warmup=250, spacing=60).series
        return cls(series, HISTORY)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def reference(self, user_id: str, traders: list[TraderRecord], until_ms: int) -> list[dict[str, Any]]:
        """Every signal of ``traders`` on the replay's candles closed by ``until_ms``, from bar 0 on."""
        assert self.server is not None
        start = self.server.replay.open_time(0)
        closed = max(1, (until_ms - start) // 1000)
        # The replay loops: bar i is bar i % CANDLES, with consecutive times (as candles_of lays them).
        loops = closed // CANDLES + 1
        looped = Series(
            self.series.interval, {s: (list(b) * loops)[:closed] for s, b in self.series.bars.items()}
        )
        return run_reference(user_id, traders, candles_of(looped, start))

    def next_signal_close(self, user: CloudUser, after_ms: int, horizon_ms: int = 60_000) -> int:
        """When the next reference signal's candle closes after ``after_ms`` (the replay's future is
        known), so that a test can wait for a signal instead of sleeping and hoping."""
        ref = self.reference(user.user_id, user.traders, after_ms + horizon_ms)
        closes = [s["open_time"] + 1000 for s in ref if s["open_time"] + 1000 > after_ms]
        assert closes, f"no reference signal within {horizon_ms} ms"
        return min(closes)

    def wait_for_signal_after(self, user: CloudUser, after_ms: int) -> int:
        """Sleep until a reference signal's candle closed after ``after_ms`` (and 1.5 s more, for the
        worker to receive it); return that close time."""
        close = self.next_signal_close(user, after_ms)
        time.sleep(max(0.0, close / 1000 + 1.5 - time.time()))
        return close


@dataclass
class CloudUser:
    """A user made for one test, with a cloud machine and the three traders."""

    actor: Actor
    traders: list[TraderRecord]

    @property
    def user_id(self) -> str:
        return self.actor.user_id


def make_cloud_user(actors: Actors, db: psycopg.Connection[Any]) -> CloudUser:
    actor = actors.make()
    # The stock trader watches BTCUSDT on 1m, which this replay does not serve.
    db.execute("delete from public.traders where user_id = %s", (actor.user_id,))
    traders = []
    for name, definition in definitions().items():
        row = db.execute(
            "insert into public.traders (user_id, name, definition) values (%s, %s, %s) returning id",
            (actor.user_id, name, Jsonb(definition)),
        ).fetchone()
        assert row is not None
        traders.append(TraderRecord(str(row[0]), name, definition))
    return CloudUser(actor, traders)


# -- the worker as a subprocess ------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """``python -m signalguard cloud`` for one user, its log in a file."""

    stack: LocalStack
    user: CloudUser
    market_url: str
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    stop_sent_at: float | None = None

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALGUARD_")}
        assert self.user.actor.machine_token is not None
        env.update(
            SIGNALGUARD_SUPABASE_URL=self.stack.url,
            SIGNALGUARD_SUPABASE_ANON_KEY=self.stack.config.anon_key(),
            SIGNALGUARD_MACHINE_TOKEN=self.user.actor.machine_token,
            SIGNALGUARD_MARKET_DATA_URL=self.market_url,
            SIGNALGUARD_LOG_LEVEL="INFO",
        )
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            self.started_at = time.time()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "signalguard", "cloud"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float, count: int = 1) -> str:
        """Wait until ``pattern`` (a regex) matches ``count`` lines; return the log."""

        def found() -> str | None:
            text = self.log()
            if len(re.findall(pattern, text)) >= count:
                return text
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the worker exited ({self.process.returncode}):\n{text}")
            return None

        return wait_until(found, timeout, f"{pattern!r} in the worker's log")

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.stop_sent_at = time.time()
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"the worker did not exit within {timeout} s:\n{self.log()}") from None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def final_counters(self) -> dict[str, int]:
        """The figures of the worker's last line ("stopped in …; signals created N, …; unsent N")."""
        line = [ln for ln in self.log().splitlines() if "stopped in" in ln][-1]
        return {k.replace(" ", "_"): int(v) for v, k in _counter_pairs(line)}


def _counter_pairs(line: str) -> list[tuple[str, str]]:
    return [(m.group(2), m.group(1)) for m in re.finditer(r"([a-z][a-z ]*?) (\d+)(?=[,;]|$)", line)]


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- the database's view -------------------------------------------------------------------------


def signals(db: psycopg.Connection[Any], user_id: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select signal_key, source, machine_id::text as machine_id, epoch, updated_epoch, status,"
            " trader_id::text as trader_id, symbol, price, matched_conditions, candle_open_time, caught_up"
            " from public.signals where user_id = %s order by candle_open_time, signal_key",
            (user_id,),
        ).fetchall()


def epochs(db: psycopg.Connection[Any], user_id: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            # signs_from: where the epoch's signatures may begin, the gap before it (migration
            # gapless_handoff), for the tests' 1s candles.
            "select epoch, holder_kind, machine_id::text as machine_id, started_at, valid_until,"
            " ended_reason,"
            " private.gap_start(user_id, epoch, started_at, private.catch_up_horizon('1s')) as signs_from"
            " from public.lease_epochs where user_id = %s order by epoch",
            (user_id,),
        ).fetchall()


def lease(db: psycopg.Connection[Any], user_id: str) -> dict[str, Any] | None:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select holder_kind, epoch, acquired_at, expires_at, clock_timestamp() as now"
            " from public.execution_leases where user_id = %s",
            (user_id,),
        ).fetchone()


def machine(db: psycopg.Connection[Any], machine_uuid: str) -> dict[str, Any]:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute("select * from public.cloud_machines where id = %s", (machine_uuid,)).fetchone()
    assert row is not None
    return row


def ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def close_ms(row: dict[str, Any]) -> int:
    """A stored 1s signal's candle close time (what the write guard checks against the window)."""
    return ms(row["candle_open_time"]) + 1000
