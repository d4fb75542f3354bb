"""What the soak's checker judges, read from the world: the database's rows, and the reference run.

- :func:`read_rows` reads one user's lease epochs, signals and trades (and the database clock) into the
  checker's row types, with the signal writes the database accepted (if :func:`record_signings` was
  installed) and its schema components;
- :func:`record_signings` makes a soak's own database record every signal write it accepts (the unique
  signal key keeps one row per candle, so the rows cannot show a second executor signing it);
- :func:`stream_observers` names, for each stream of the user's traders, a trader that matches every
  candle (:func:`always_matches`), whose signals show which candles were evaluated;
- :func:`served_candles` rebuilds exactly the candles a replay server has served so far, from its
  series and its placement in time (the same rows its REST endpoint answers);
- :func:`local_writes` reads what each browser device sent (its requests, as Playwright saw them);
- :func:`dump_history` and :func:`load_history` keep a run's history as JSON, to judge it again;
- :func:`expected_signals` runs the reference engine (:func:`signalguard.replay.reference.run_reference`)
  offline over those candles for the user's traders, twice: with every threshold tightened (what must
  trigger) and loosened (what may). Two engines that warmed up from different candles agree to within
  10⁻⁶ of an indicator's range (the warm-up rule), so an indicator that lands within ``epsilon`` of a
  threshold could go either way; those candles are neither required nor forbidden.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from checker import (
    Downtime,
    Epoch,
    ExpectedSignal,
    History,
    LocalWrite,
    NemesisEvent,
    Signing,
    StoredSignal,
    StoredTrade,
)
from psycopg.rows import dict_row

from signalguard.core.candles import Candle, parse_rest_kline
from signalguard.core.engine import TraderRecord
from signalguard.core.traders.rules import CONDITION_RULES, Field, Number
from signalguard.replay.reference import run_reference
from signalguard.replay.series import interval_ms, kline_row
from signalguard.replay.server import ReplayServer

#: How far a threshold is moved to tell certain signals from possible ones (indicator units).
EPSILON = 0.01
_HARDER = {"<": -1, "<=": -1, ">": 1, ">=": 1}


def us(value: datetime | None) -> int | None:
    """A timestamp in microseconds since the epoch (exact)."""
    if value is None:
        return None
    delta = value - datetime.fromtimestamp(0, value.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _us(value: datetime) -> int:
    out = us(value)
    assert out is not None
    return out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Rows:
    """One user's rows, and the database clock when they were read."""

    epochs: list[Epoch]
    signals: list[StoredSignal]
    trades: list[StoredTrade]
    lease_epoch: int | None
    read_at: int
    #: The accepted signal writes (None if :func:`record_signings` was not installed).
    signings: list[Signing] | None = None
    #: The schema components ``schema_version()`` reports.
    schema_components: tuple[str, ...] = ()


#: Records every signal write the write guard accepted, in the soak's throwaway database only (never a
#: migration: production has no use for it). A BEFORE INSERT trigger runs for every proposed row, also
#: one that ``on conflict do nothing`` then skips as a duplicate; triggers of one event fire in name
#: order, so this one (``signals_zz_…``) runs after the guard (``signals_guard_write``) has let the row
#: through. A refused row raises, and its statement (or ``write_signals``' subtransaction) is rolled
#: back with the record: what is left is exactly the writes answered ``inserted`` or ``duplicate``.
SIGNINGS_DDL = """
create schema if not exists soak;
create table if not exists soak.signal_signings (
  id bigserial primary key,
  user_id uuid not null,
  trader_id uuid not null,
  symbol text not null,
  "interval" text not null,
  candle_open_time timestamptz not null,
  epoch bigint not null,
  source text not null,
  machine_id uuid,
  signed_at timestamptz not null default clock_timestamp()
);
create or replace function soak.record_signing() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into soak.signal_signings
    (user_id, trader_id, symbol, "interval", candle_open_time, epoch, source, machine_id)
  values
    (new.user_id, new.trader_id, new.symbol, new."interval", new.candle_open_time, new.epoch, new.source,
     new.machine_id);
  return new;
end;
$$;
drop trigger if exists signals_zz_soak_signing on public.signals;
create trigger signals_zz_soak_signing before insert on public.signals
  for each row execute function soak.record_signing();
"""


def record_signings(conn: psycopg.Connection[Any]) -> None:
    """Make this (throwaway) database record every signal write it accepts (see :data:`SIGNINGS_DDL`)."""
    conn.execute(SIGNINGS_DDL)


def _read_signings(cur: psycopg.Cursor[dict[str, Any]], user_id: str) -> list[Signing] | None:
    cur.execute("select to_regclass('soak.signal_signings') is not null as here")
    here = cur.fetchone()
    if here is None or not here["here"]:
        return None
    cur.execute(
        'select trader_id::text, symbol, "interval", candle_open_time, epoch, source, machine_id::text, '
        "signed_at from soak.signal_signings where user_id = %s order by id",
        (user_id,),
    )
    return [
        Signing(
            trader_id=r["trader_id"],
            symbol=r["symbol"],
            interval=r["interval"],
            open_time=_us(r["candle_open_time"]),
            epoch=r["epoch"],
            source=r["source"],
            machine_id=r["machine_id"],
            at=_us(r["signed_at"]),
        )
        for r in cur.fetchall()
    ]


def read_rows(conn: psycopg.Connection[Any], user_id: str) -> Rows:
    """Read ``user_id``'s lease epochs, signals and trades in one snapshot (repeatable read)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("set transaction isolation level repeatable read")
        cur.execute("select clock_timestamp() as now")
        now = cur.fetchone()
        assert now is not None
        cur.execute(
            "select epoch, holder_kind, holder_id, machine_id::text, started_at, valid_until, ended_reason "
            "from public.lease_epochs where user_id = %s order by epoch",
            (user_id,),
        )
        epochs = [
            Epoch(
                epoch=r["epoch"],
                holder_kind=r["holder_kind"],
                holder_id=r["holder_id"],
                machine_id=r["machine_id"],
                started_at=_us(r["started_at"]),
                valid_until=_us(r["valid_until"]),
                ended_reason=r["ended_reason"],
            )
            for r in cur.fetchall()
        ]
        cur.execute(
            "select signal_key, trader_id::text, symbol, interval, candle_open_time, price, source, "
            "machine_id::text, epoch, status from public.signals where user_id = %s "
            "order by candle_open_time",
            (user_id,),
        )
        signals = [
            StoredSignal(
                signal_key=r["signal_key"],
                trader_id=r["trader_id"],
                symbol=r["symbol"],
                interval=r["interval"],
                open_time=_us(r["candle_open_time"]),
                price=float(r["price"]),
                source=r["source"],
                machine_id=r["machine_id"],
                epoch=r["epoch"],
                status=r["status"],
            )
            for r in cur.fetchall()
        ]
        cur.execute(
            "select signal_key, trader_id::text, symbol, interval, status, side, size, entry_price,"
            " entry_time, source, machine_id::text, epoch, created_at, updated_at, take_profit_price,"
            " stop_loss_price, expires_at, close_source, close_machine_id::text, close_epoch, exit_time,"
            " exit_price, exit_reason from public.trades where user_id = %s order by entry_time",
            (user_id,),
        )
        trades = [
            StoredTrade(
                signal_key=r["signal_key"],
                trader_id=r["trader_id"],
                symbol=r["symbol"],
                interval=r["interval"],
                status=r["status"],
                side=r["side"],
                size=float(r["size"]),
                entry_price=float(r["entry_price"]),
                entry_time=_us(r["entry_time"]),
                source=r["source"],
                machine_id=r["machine_id"],
                epoch=r["epoch"],
                created_at=_us(r["created_at"]),
                updated_at=_us(r["updated_at"]),
                take_profit_price=_float(r["take_profit_price"]),
                stop_loss_price=_float(r["stop_loss_price"]),
                expires_at=us(r["expires_at"]),
                close_source=r["close_source"],
                close_machine_id=r["close_machine_id"],
                close_epoch=r["close_epoch"],
                exit_time=us(r["exit_time"]),
                exit_price=_float(r["exit_price"]),
                exit_reason=r["exit_reason"],
            )
            for r in cur.fetchall()
        ]
        cur.execute("select epoch from public.execution_leases where user_id = %s", (user_id,))
        lease = cur.fetchone()
        signings = _read_signings(cur, user_id)
        cur.execute("select public.schema_version() -> 'components' as components")
        version = cur.fetchone()
        components = version["components"] if version is not None else None
    return Rows(
        epochs,
        signals,
        trades,
        None if lease is None else lease["epoch"],
        _us(now["now"]),
        signings,
        tuple(sorted(components)) if isinstance(components, dict) else (),
    )


def always_matches(definition: Mapping[str, Any]) -> bool:
    """Whether a trader signals on every candle its engine evaluates (once its indicators are warm).

    True for a trader without a cooldown whose conditions all hold on any candle (one of them, with
    ``match: any``): ``price_change_pct`` ``>=`` or ``>`` -100 (a close is never 100 % below an earlier
    one: prices are positive), ``rsi`` ``<=`` 100 or ``>=`` 0 (RSI lies in [0, 100]).
    """

    def always(condition: Any) -> bool:
        if not isinstance(condition, Mapping) or not isinstance(condition.get("value"), int | float):
            return False
        kind, op, value = condition.get("indicator"), condition.get("op"), condition["value"]
        if kind == "price_change_pct":
            return op in (">=", ">") and value <= -100
        if kind == "rsi":
            return (op == "<=" and value >= 100) or (op == ">=" and value <= 0)
        return False

    conditions = definition.get("conditions")
    if definition.get("cooldown_candles", 0) or not isinstance(conditions, list) or not conditions:
        return False
    holds = [always(c) for c in conditions]
    return any(holds) if definition.get("match") == "any" else all(holds)


def stream_observers(traders: Iterable[TraderRecord]) -> dict[tuple[str, str], str | None]:
    """Each stream (symbol, interval) of ``traders``, with a trader on it that matches every candle
    (:func:`always_matches`; the first by id), or None: the checker's exactly-once property."""
    out: dict[tuple[str, str], str | None] = {}
    for t in sorted(traders, key=lambda t: t.id.lower()):
        d = _mapping(t.definition)
        for symbol in d.get("symbols", []):
            stream = (str(symbol).upper(), str(d["interval"]))
            if out.get(stream) is None:
                out[stream] = t.id.lower() if always_matches(d) else None
    return out


def read_traders(conn: psycopg.Connection[Any], user_id: str) -> list[TraderRecord]:
    """The user's enabled traders, as the engine takes them (ids as the database prints them)."""
    rows = conn.execute(
        "select id::text, name, definition from public.traders where user_id = %s and enabled order by name",
        (user_id,),
    ).fetchall()
    return [TraderRecord(r[0], r[1], r[2]) for r in rows]


# -- the reference --------------------------------------------------------------------------------


def served_candles(server: ReplayServer, now_ms: float) -> dict[tuple[str, str], list[Candle]]:
    """Every candle ``server`` had closed by ``now_ms``, by (symbol, interval), oldest first.

    Bar ``i`` of the replay opens at ``replay.open_time(i)`` and, when the replay loops, repeats the
    series' bar ``i mod length``: exactly the rows ``GET /api/v3/klines`` answers.
    """
    replay, series = server.replay, server.series
    step = interval_ms(series.interval)
    out: dict[tuple[str, str], list[Candle]] = {}
    for symbol, bars in series.bars.items():
        candles = []
        for i in range(replay.closed(symbol, now_ms)):
            open_ms = replay.open_time(i)
            row = kline_row(bars[i % len(bars)], open_ms, step)
            candles.append(
                parse_rest_kline(row, symbol=symbol, interval=series.interval, now_ms=open_ms + step)
            )
        out[(symbol, series.interval)] = candles
    return out


def shifted(definition: Mapping[str, Any], delta: float) -> dict[str, Any]:
    """``definition`` with every threshold condition made harder (``delta`` > 0) or easier (< 0).

    Only comparisons with a number (``<``, ``<=``, ``>``, ``>=`` against ``value``) move; with no
    cooldown, a harder trader's signals are a subset of the original's, an easier one's a superset.
    A value that would leave the core's bounds for it stays where it is: the engine refuses such a
    trader (it would signal nothing), and no indicator lies beyond its bound anyway (``rsi <= 100``,
    ``price_change_pct >= -100``: already as easy as they can be).
    """
    out = copy.deepcopy(dict(definition))
    if out.get("cooldown_candles", 0):
        raise ValueError("the certain/possible split needs traders without a cooldown")
    for condition in out.get("conditions", []):
        sign = _HARDER.get(condition.get("op", ""))
        if sign is not None and isinstance(condition.get("value"), int | float):
            moved = condition["value"] + sign * delta
            bounds = _value_bounds(condition.get("indicator"))
            if bounds is None or (
                (bounds.low < moved if bounds.above else bounds.low <= moved) and moved <= bounds.high
            ):
                condition["value"] = moved
    return out


def _value_bounds(indicator: object) -> Number | None:
    """The core's bounds of a threshold condition's ``value`` (None for an unknown indicator)."""
    variants = dict(CONDITION_RULES.variants)
    shape = variants.get(indicator) if isinstance(indicator, str) else None
    if shape is None:
        return None
    return next(
        (
            m.rule
            for m in shape.members
            if isinstance(m, Field) and m.name == "value" and isinstance(m.rule, Number)
        ),
        None,
    )


def expected_signals(
    user_id: str,
    traders: Sequence[TraderRecord],
    candles: Mapping[tuple[str, str], Sequence[Candle]],
    epsilon: float = EPSILON,
) -> list[ExpectedSignal]:
    """The reference engine's signals over ``candles``: certain ones, and merely possible ones."""
    ordered = sorted(
        (c for stream in candles.values() for c in stream), key=lambda c: (c.open_time, c.symbol)
    )

    def run(delta: float) -> dict[tuple[str, str, str, int], dict[str, Any]]:
        records = [TraderRecord(t.id, t.name, shifted(_mapping(t.definition), delta)) for t in traders]
        intervals = {t.id.lower(): _mapping(t.definition)["interval"] for t in traders}
        out = {}
        for s in run_reference(user_id, records, ordered):
            ident = (s["trader_id"], s["symbol"], intervals[s["trader_id"]], s["open_time"] * 1000)
            out[ident] = s
        return out

    certain, possible = run(epsilon), run(-epsilon)
    missing = set(certain) - set(possible)
    assert not missing, f"a harder trader fired where an easier one did not: {sorted(missing)[:3]}"
    return [
        ExpectedSignal(
            trader_id=i[0],
            symbol=i[1],
            interval=i[2],
            open_time=i[3],
            price=float(s["price"]),
            certain=i in certain,
        )
        for i, s in sorted(possible.items(), key=lambda kv: kv[0][3])
    ]


def _mapping(definition: object) -> Mapping[str, Any]:
    assert isinstance(definition, Mapping), definition
    return definition


def max_holds(traders: Iterable[TraderRecord]) -> dict[str, int]:
    """For each trader with a trade plan that expires, its maximum holding time in microseconds."""
    out = {}
    for t in traders:
        d = _mapping(t.definition)
        hold = (d.get("trade") or {}).get("max_hold_candles")
        if hold is not None:
            out[t.id.lower()] = hold * interval_ms(d["interval"]) * 1000
    return out


# -- what the browsers sent ------------------------------------------------------------------------

#: The RPCs that write, the list in their arguments and the epoch field of each item.
_WRITES = {
    "write_signals": ("p_signals", "epoch"),
    "update_signal_statuses": ("p_changes", "updated_epoch"),
    "write_trades": ("p_ops", "epoch"),
}
_HOLDER_RPCS = ("execution_status", "claim_local_lease", "release_local_lease")


def local_writes(
    rpcs_by_device: Mapping[str, Iterable[tuple[str, Any]]],
) -> tuple[list[LocalWrite], dict[str, list[str]]]:
    """Each device's writes and holder ids, from its RPC requests (``e2ekit.Watch.rpcs``)."""
    writes: list[LocalWrite] = []
    holders: dict[str, list[str]] = {}
    for device, rpcs in rpcs_by_device.items():
        mine: set[str] = set()
        for name, args in rpcs:
            if not isinstance(args, dict):
                continue
            if name in _HOLDER_RPCS and isinstance(args.get("p_holder_id"), str):
                mine.add(args["p_holder_id"])
            if name not in _WRITES:
                continue
            items, field_name = _WRITES[name]
            for item in args.get(items) or []:
                if isinstance(item, dict) and isinstance(item.get(field_name), int):
                    what = item.get("signal_key") or (
                        f"{item.get('symbol')} {item.get('interval')} {item.get('candle_open_time')}"
                    )
                    writes.append(LocalWrite(device, name, item[field_name], str(what)))
        holders[device] = sorted(mine)
    return writes, holders


# -- keeping a run's history --------------------------------------------------------------------------


def dump_history(history: History, path: Path) -> None:
    """Write ``history`` as JSON, so that a run's verdict can be recomputed (``bench.soak --recheck``)."""
    doc = {
        "user_id": history.user_id,
        "seed": history.seed,
        "horizon": history.horizon,
        "read_at": history.read_at,
        "lease_epoch": history.lease_epoch,
        "max_hold": dict(history.max_hold),
        "epochs": [dataclasses.asdict(e) for e in history.epochs],
        "signals": [dataclasses.asdict(s) for s in history.signals],
        "trades": [dataclasses.asdict(t) for t in history.trades],
        "expected": [dataclasses.asdict(x) for x in history.expected],
        "events": [dataclasses.asdict(e) for e in history.events],
        "downtime": [dataclasses.asdict(d) for d in history.downtime],
        "local_writes": [dataclasses.asdict(w) for w in history.local_writes],
        "device_holders": {k: list(v) for k, v in history.device_holders.items()},
        "streams": [[symbol, interval, t] for (symbol, interval), t in history.streams.items()],
        "signings": None if history.signings is None else [dataclasses.asdict(w) for w in history.signings],
        "schema_components": list(history.schema_components),
        "candles": {
            f"{symbol} {interval}": [[c.open_time, c.open, c.high, c.low, c.close, c.volume] for c in stream]
            for (symbol, interval), stream in history.candles.items()
        },
    }
    path.write_text(json.dumps(doc))


def load_history(path: Path) -> History:
    """Read a history written by :func:`dump_history`."""
    doc = json.loads(path.read_text())
    candles = {}
    for name, rows in doc["candles"].items():
        symbol, interval = name.split(" ")
        candles[(symbol, interval)] = [
            Candle(symbol, interval, r[0], r[1], r[2], r[3], r[4], r[5], True) for r in rows
        ]
    return History(
        user_id=doc["user_id"],
        epochs=[Epoch(**e) for e in doc["epochs"]],
        signals=[StoredSignal(**s) for s in doc["signals"]],
        trades=[StoredTrade(**t) for t in doc["trades"]],
        expected=[ExpectedSignal(**x) for x in doc["expected"]],
        candles=candles,
        horizon=doc["horizon"],
        read_at=doc["read_at"],
        max_hold=doc["max_hold"],
        events=[NemesisEvent(**e) for e in doc["events"]],
        downtime=[Downtime(**d) for d in doc["downtime"]],
        local_writes=[LocalWrite(**w) for w in doc.get("local_writes", [])],
        device_holders=doc.get("device_holders", {}),
        lease_epoch=doc["lease_epoch"],
        seed=doc["seed"],
        # Absent from the histories written before the exactly-once property.
        streams={(r[0], r[1]): r[2] for r in doc.get("streams", [])},
        signings=None if doc.get("signings") is None else [Signing(**w) for w in doc["signings"]],
        schema_components=tuple(doc.get("schema_components", [])),
    )
