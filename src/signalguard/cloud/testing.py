"""In-memory doubles of the worker's two interfaces, for tests of the worker's logic without a stack.

- :class:`FakeDatabase` implements :class:`~.database.Database` with the rules the worker depends on:
  heartbeats and machine status, the cloud lease with its epochs and windows (and a browser lease a
  test can hold), the write guard's verdicts (``SG001`` for an epoch not held or a status change
  without the live lease, ``SG002`` for a candle after the epoch's window or inside another epoch's,
  ``SG011`` for one before the gap the epoch may sign (migration ``gapless_handoff``: from the
  previous epoch's end, at most :data:`GAP_HORIZON_MS` and 60 candles back; such signals are marked
  ``caught_up``, and the lease answers say ``signs_from``), ``SG006`` for a bad
  transition), signal keys as uniqueness, paper trades (an open or a close needs the live lease, a
  close of a closed trade changes nothing), outages (:attr:`FakeDatabase.down`), and, once a test
  sets a webhook (:meth:`FakeDatabase.set_webhook`: the ``webhooks`` component), the webhook RPCs with
  the database's rules (:class:`~signalguard.webhooks.testing.FakeWebhookStore`: a delivery row per
  signal stored, claims and records under the cloud's live epoch).
- :class:`~signalguard.market.testing.FakeMarketData` (re-exported here) implements the market data
  both hosts use.

Both record what they were asked. Times: the fake database's clock is epoch seconds (``time.time`` by
default), as candle times are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signalguard.cloud.config import Timings
from signalguard.cloud.database import DatabaseRefused, DatabaseUnavailable
from signalguard.core.backoff import Backoff
from signalguard.core.candles import INTERVALS, iso_from_ms, next_open_time
from signalguard.core.codes import Component
from signalguard.core.engine import LeaseWindow, Signal, SignalStatus, TraderRecord, signal_key
from signalguard.core.guard import LeaseAnswer
from signalguard.core.ports import JsonValue
from signalguard.core.positions import Side, Trade, TradeBook
from signalguard.market.testing import FakeMarketData, kline_event, kline_row
from signalguard.webhooks.testing import FakeWebhookStore

__all__ = ["FakeDatabase", "FakeMarketData", "fast_timings", "kline_event", "kline_row"]


def fast_timings(**overrides: Any) -> Timings:
    """The worker's timings shrunk for a run against these doubles; ``overrides`` change any.

    A 1 s lease renewed every 0.1 s, a flush every 0.1 s, retries within 0.05 s, a stop's flush bounded
    at 1 s. The rules between them hold as in :class:`~.config.Timings` (the heartbeat well inside the lease,
    the margin inside the heartbeat), so a test sees the worker's real sequence, ten times faster.
    """
    values: dict[str, Any] = {
        "heartbeat": 0.1,
        "claim_retry": 0.05,
        "lease": 1.0,
        "lease_margin": 0.1,
        "flush": 0.1,
        "traders_poll": 0.2,
        "stop_flush": 1.0,
        "error_flush": 0.5,
        "request_timeout": 1.0,
        "backoff": Backoff(0.01, 0.05),
        "stream_stall": 5.0,
    }
    return Timings(**{**values, **overrides})


_TRANSITIONS = {
    ("new", "active"),
    ("new", "expired"),
    ("new", "closed"),
    ("active", "expired"),
    ("active", "closed"),
}


@dataclass
class _Epoch:
    kind: str
    start_ms: int
    end_ms: int


#: How far before its start an epoch may sign the gap, at most (the database's 2 hours).
GAP_HORIZON_MS = 2 * 3600 * 1000
#: Candles of catch-up, which bound the gap for short intervals (``CATCH_UP_CANDLES``).
GAP_CANDLES = 60


class FakeDatabase:
    """See the module documentation."""

    def __init__(
        self,
        owner_id: str,
        machine_id: str,
        *,
        traders: Iterable[TraderRecord] = (),
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 30.0,
        gapless: bool = False,
    ) -> None:
        """A database with one user (``owner_id``) and their machine (``machine_id``)."""
        self.owner_id = owner_id.lower()
        self.machine_id = machine_id
        self.traders = list(traders)
        self.clock = clock
        self.lease_ms = int(lease_seconds * 1000)
        self.machine_status = "stopped"
        self.error_message: str | None = None
        self.last_heartbeat_ms: int | None = None
        self.statuses: list[str] = []
        self.epoch = 0
        self.holder: str | None = None
        self.expires_ms = 0
        self.epochs: dict[int, _Epoch] = {}
        self.signals: dict[str, dict[str, Any]] = {}
        #: Trades by signal key: the open op's fields plus status, exit and closer's epoch.
        self.trades: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.write_calls: list[int] = []
        self.schema_missing: list[str] = []
        #: Whether the database has migration ``gapless_handoff`` (an epoch signs the gap before it,
        #: the answers say ``signs_from``); without it, only the epoch's own window, as before.
        self.gapless = gapless
        #: The ``evaluated_until_ms`` of every release, in order.
        self.released_until: list[int | None] = []
        #: What report_trader_problems stored: trader id to its line.
        self.trader_problems: dict[str, str] = {}
        #: While true, every call raises :class:`DatabaseUnavailable` (an outage).
        self.down = False
        #: The next this many write calls raise :class:`DatabaseUnavailable`.
        self.fail_writes = 0
        #: The webhook side (see :meth:`set_webhook`); its clock is this database's.
        self.webhooks = FakeWebhookStore(clock=self.clock, holds=self._cloud_holds)
        #: Schema components reported besides the required ones (``webhooks`` once a webhook is set).
        self.components: set[str] = set()

    # -- helpers for tests ------------------------------------------------------------------------

    def _cloud_holds(self, epoch: int) -> bool:
        return self.holder == "cloud" and self._live(self._now_ms()) and epoch == self.epoch

    def set_webhook(self, url: str | None, secret: str | None = None, *, enabled: bool = True) -> None:
        """Set the user's webhook (the database then has the ``webhooks`` component)."""
        self.components.add("webhooks")
        self.webhooks.set_webhook(url, secret, enabled=enabled)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _live(self, now: int) -> bool:
        return self.holder is not None and self.expires_ms > now

    def _enter(self, name: str) -> int:
        self.calls.append(name)
        if self.down:
            raise DatabaseUnavailable("PGRST_UNAVAILABLE: the fake database is down")
        return self._now_ms()

    def _grant(self, kind: str, now: int) -> None:
        if self.holder == kind and self._live(now):
            self.expires_ms = now + self.lease_ms
            self.epochs[self.epoch].end_ms = self.expires_ms
            return
        self.epoch += 1
        self.holder = kind
        self.expires_ms = now + self.lease_ms
        self.epochs[self.epoch] = _Epoch(kind, now, self.expires_ms)

    def _end(self, now: int, evaluated_until_ms: int | None = None) -> None:
        if self.holder is not None and self._live(now):
            window = self.epochs[self.epoch]
            end = now if evaluated_until_ms is None else min(now, evaluated_until_ms)
            window.end_ms = max(window.start_ms, min(window.end_ms, end))
        self.holder = None

    def local_lease(self) -> int:
        """A browser claims (or renews) the lease now; returns the epoch."""
        now = self._now_ms()
        if self._live(now) and self.holder == "cloud":
            raise AssertionError("the cloud holds the lease")
        self._grant("local", now)
        return self.epoch

    def expire_lease(self) -> None:
        """Let the current lease run out now (as if its holder had stopped renewing 30 s ago)."""
        now = self._now_ms()
        self.expires_ms = now
        if self.epoch in self.epochs:
            self.epochs[self.epoch].end_ms = now

    def _gap_start_ms(self, epoch: int, interval: str | None = None) -> int:
        """From when ``epoch`` may sign: the previous epoch's end, at most the horizon back."""
        window = self.epochs[epoch]
        horizon = GAP_HORIZON_MS
        if interval is not None and interval in INTERVALS:
            horizon = min(horizon, GAP_CANDLES * INTERVALS[interval])
        earlier = [w.end_ms for e, w in self.epochs.items() if e < epoch]
        return max([window.start_ms - horizon, *earlier])

    def _answer(self, granted: bool, reason: str | None, now: int) -> LeaseAnswer:
        holds = self.holder == "cloud" and self._live(now)
        start = self.epochs[self.epoch].start_ms if self.epoch in self.epochs else None
        return LeaseAnswer(
            you_hold=holds,
            epoch=self.epoch,
            expires_in_seconds=max(0.0, (self.expires_ms - now) / 1000) if holds else 0.0,
            reason=reason,
            retry_in_seconds=None,
            takeover_available=False,
            machine_status=self.machine_status,
            error_message=self.error_message,
            acquired_at_us=start * 1000 if start is not None and holds else None,
            expires_at_us=self.expires_ms * 1000 if holds else None,
            granted=granted,
            signs_from_us=(
                self._gap_start_ms(self.epoch) * 1000
                if self.gapless and start is not None and holds
                else None
            ),
        )

    # -- Database ---------------------------------------------------------------------------------

    async def schema_problems(self) -> list[str]:
        """See :meth:`~.database.Database.schema_problems`."""
        self._enter("schema_problems")
        return list(self.schema_missing)

    async def heartbeat(self, status: str | None = None, error_message: str | None = None) -> None:
        """See :meth:`~.database.Database.heartbeat`."""
        now = self._enter(f"heartbeat:{status}")
        self.last_heartbeat_ms = now
        if status is not None:
            self.machine_status = status
            self.statuses.append(status)
            self.error_message = error_message if status == "error" else None
            if status in ("stopped", "error") and self.holder == "cloud":
                self._end(now)

    async def claim_lease(self) -> LeaseAnswer:
        """See :meth:`~.database.Database.claim_lease`."""
        now = self._enter("claim")
        if self.machine_status not in ("starting", "running"):
            return self._answer(False, "machine_not_active", now)
        if self.last_heartbeat_ms is None or self.last_heartbeat_ms <= now - 30_000:
            return self._answer(False, "heartbeat_stale", now)
        if self.holder == "local" and self._live(now):
            return self._answer(False, "local_lease_live", now)
        self._grant("cloud", now)
        return self._answer(True, None, now)

    async def release_lease(self, evaluated_until_ms: int | None = None) -> LeaseAnswer:
        """See :meth:`~.database.Database.release_lease` (``evaluated_until_ms`` counts when ``gapless``)."""
        now = self._enter("release")
        self.released_until.append(evaluated_until_ms)
        if self.holder == "cloud":
            self._end(now, evaluated_until_ms if self.gapless else None)
        return self._answer(True, None, now)

    async def earlier_windows(self, epoch: int) -> list[LeaseWindow]:
        """See :meth:`~.database.Database.earlier_windows`: the cloud's windows before ``epoch``."""
        self._enter("earlier_windows")
        return [
            LeaseWindow(e, w.start_ms * 1000, w.end_ms * 1000)
            for e, w in sorted(self.epochs.items(), reverse=True)
            if e < epoch and w.kind == "cloud"
        ][:8]

    async def load_traders(self) -> list[TraderRecord]:
        """See :meth:`~.database.Database.load_traders`."""
        self._enter("load_traders")
        return [t for t in self.traders if t.enabled]

    async def load_open_signals(self) -> list[Signal]:
        """See :meth:`~.database.Database.load_open_signals`."""
        self._enter("load_open_signals")
        out = []
        for row in self.signals.values():
            if row["status"] in ("new", "active"):
                out.append(
                    Signal(
                        row["key"],
                        row["trader_id"],
                        row["symbol"],
                        row["interval"],
                        row["candle_open_time"],
                        row["price"],
                        tuple(row["matched_conditions"]),
                        row["epoch"],
                        SignalStatus(row["status"]),
                    )
                )
        return sorted(out, key=lambda s: s.open_time)

    async def write_signals(self, rows: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """See :meth:`~.database.Database.write_signals`."""
        now = self._enter("write_signals")
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise DatabaseUnavailable("HTTP 503: the fake database failed this write")
        self.write_calls.append(len(rows))
        out: list[Mapping[str, object]] = []
        for i, row in enumerate(rows):
            epoch = row.get("epoch")
            window = self.epochs.get(epoch) if isinstance(epoch, int) else None
            open_ms = row["candle_open_time"]
            assert isinstance(open_ms, int)
            interval = str(row["interval"])
            close_ms = next_open_time(interval, open_ms)
            if row.get("source") != "cloud" or row.get("machine_id") != self.machine_id:
                out.append({"index": i, "outcome": "rejected", "code": "SG004", "message": "source_mismatch"})
            elif window is None or window.kind != "cloud":
                out.append({"index": i, "outcome": "rejected", "code": "SG001", "message": "lease_not_held"})
            elif close_ms > now + 5000:
                out.append(
                    {"index": i, "outcome": "rejected", "code": "SG003", "message": "candle_not_closed"}
                )
            elif (
                close_ms >= window.end_ms
                or any(w.start_ms <= close_ms < w.end_ms for e, w in self.epochs.items() if e != epoch)
                or (not self.gapless and close_ms < window.start_ms)
            ):
                out.append(
                    {"index": i, "outcome": "rejected", "code": "SG002", "message": "outside_lease_window"}
                )
            elif close_ms < self._gap_start_ms(epoch, interval):  # type: ignore[arg-type]
                out.append({"index": i, "outcome": "rejected", "code": "SG011", "message": "before_catch_up"})
            else:
                key = signal_key(self.owner_id, str(row["trader_id"]), str(row["symbol"]), interval, open_ms)
                if key in self.signals:
                    out.append({"index": i, "signal_key": key, "outcome": "duplicate"})
                    continue
                self.signals[key] = {
                    **row,
                    "key": key,
                    "status": row.get("status") or "new",
                    "updated_epoch": epoch,
                    "caught_up": close_ms < window.start_ms,
                }
                self.webhooks.signal_stored(key, self._webhook_fields(self.signals[key]))
                out.append({"index": i, "signal_key": key, "outcome": "inserted"})
        return out

    async def update_statuses(self, changes: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """See :meth:`~.database.Database.update_statuses`."""
        now = self._enter("update_statuses")
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise DatabaseUnavailable("HTTP 503: the fake database failed this write")
        self.write_calls.append(len(changes))
        out: list[Mapping[str, object]] = []
        for i, change in enumerate(changes):
            row = self.signals.get(str(change["signal_key"]))
            target = str(change["status"])
            if not (self.holder == "cloud" and self._live(now) and change.get("updated_epoch") == self.epoch):
                out.append({"index": i, "outcome": "rejected", "code": "SG001", "message": "lease_not_held"})
            elif row is None:
                out.append(
                    {"index": i, "outcome": "rejected", "code": "not_found", "message": "no such signal"}
                )
            elif row["status"] != target and (row["status"], target) not in _TRANSITIONS:
                out.append(
                    {"index": i, "outcome": "rejected", "code": "SG006", "message": "invalid_transition"}
                )
            else:
                row["status"] = target
                row["updated_epoch"] = change.get("updated_epoch")
                out.append({"index": i, "outcome": "updated"})
        return out

    async def load_trades(self) -> TradeBook:
        """See :meth:`~.database.Database.load_trades`."""
        self._enter("load_trades")
        open_trades = []
        for key, t in self.trades.items():
            if t["status"] != "open":
                continue
            sig = self.signals[key]
            entry_time = next_open_time(sig["interval"], sig["candle_open_time"])
            open_trades.append(
                Trade(
                    key,
                    sig["trader_id"],
                    sig["symbol"],
                    sig["interval"],
                    Side(t["side"]),
                    t["size"],
                    sig["price"],
                    entry_time,
                    t["take_profit_price"],
                    t["stop_loss_price"],
                    t["expires_at"],
                    t["epoch"],
                )
            )
        traded = {k for k in self.trades if self.signals[k]["status"] in ("new", "active")}
        open_trades.sort(key=lambda t: t.entry_time)
        return TradeBook(tuple(open_trades), frozenset(traded | {t.key for t in open_trades}))

    async def write_trades(self, ops: Sequence[Mapping[str, JsonValue]]) -> list[Mapping[str, object]]:
        """See :meth:`~.database.Database.write_trades`."""
        now = self._enter("write_trades")
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise DatabaseUnavailable("HTTP 503: the fake database failed this write")
        self.write_calls.append(len(ops))
        out: list[Mapping[str, object]] = []
        for i, op in enumerate(ops):
            key = str(op.get("signal_key"))
            trade = self.trades.get(key)
            if op.get("op") == "close" and trade is not None and trade["status"] != "open":
                out.append({"index": i, "signal_key": key, "outcome": "already_closed"})
            elif not (self.holder == "cloud" and self._live(now) and op.get("epoch") == self.epoch):
                out.append({"index": i, "outcome": "rejected", "code": "SG001", "message": "lease_not_held"})
            elif key not in self.signals or (op.get("op") == "close" and trade is None):
                out.append({"index": i, "outcome": "rejected", "code": "not_found", "message": "no such row"})
            elif op.get("op") == "open":
                if trade is not None:
                    out.append({"index": i, "signal_key": key, "outcome": "duplicate"})
                    continue
                self.trades[key] = {
                    **{k: op.get(k) for k in ("side", "size", "take_profit_price", "stop_loss_price")},
                    "expires_at": op.get("expires_at"),
                    "epoch": op.get("epoch"),
                    "status": "open",
                    "close_epoch": None,
                    "exit_reason": None,
                    "exit_price": None,
                    "exit_time": None,
                    "closes": 0,
                }
                out.append({"index": i, "signal_key": key, "outcome": "opened"})
            else:
                assert trade is not None
                trade.update(
                    status="closed",
                    close_epoch=op.get("epoch"),
                    exit_reason=op.get("exit_reason"),
                    exit_price=op.get("exit_price"),
                    exit_time=op.get("exit_time"),
                    closes=trade["closes"] + 1,
                )
                out.append({"index": i, "signal_key": key, "outcome": "closed"})
        return out

    async def report_trader_problems(self, epoch: int, problems: Mapping[str, str | None]) -> None:
        """See :meth:`~.database.Database.report_trader_problems` (the cloud must hold ``epoch``)."""
        now = self._enter("report_trader_problems")
        if not (self.holder == "cloud" and self._live(now) and epoch == self.epoch):
            raise DatabaseRefused("SG001", "lease_not_held: reporting trader problems needs the live lease")
        known = {t.id.lower() for t in self.traders}
        for trader, line in problems.items():
            if trader.lower() not in known:
                continue
            if line is None:
                self.trader_problems.pop(trader.lower(), None)
            else:
                self.trader_problems[trader.lower()] = line

    def _webhook_fields(self, row: Mapping[str, Any]) -> dict[str, JsonValue]:
        """A stored signal as the claim hands it out."""
        names = {t.id.lower(): t.name for t in self.traders}
        return {
            "trader_id": str(row["trader_id"]),
            "trader_name": names.get(str(row["trader_id"]).lower(), ""),
            "symbol": str(row["symbol"]),
            "interval": str(row["interval"]),
            "candle_open_time": iso_from_ms(int(row["candle_open_time"])),
            "price": float(row["price"]),
            "matched_conditions": [str(x) for x in row.get("matched_conditions") or ()],
            "status": str(row["status"]),
            "source": str(row["source"]),
            "caught_up": bool(row["caught_up"]),
        }

    def has_component(self, component: Component) -> bool:
        """See :meth:`~.database.Database.has_component`: the optional ones in :attr:`components`."""
        return component.name in self.components

    async def webhook_rpc(self, name: str, args: Mapping[str, JsonValue]) -> object:
        """See :meth:`~.database.Database.webhook_rpc`: the store's rules; SG001 without the lease."""
        self._enter(name)
        data, error = await self.webhooks.call(name, dict(args))
        if error is not None:
            code, _, message = error.partition(": ")
            raise DatabaseRefused(code, message) if code.startswith("SG") else DatabaseUnavailable(error)
        return data

    async def aclose(self) -> None:
        """See :meth:`~.database.Database.aclose`."""
