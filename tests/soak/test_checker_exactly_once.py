"""The checker's exactly-once property on hand-made histories, and the evidence it reads.

The base history is what today's database leaves: three epochs (a browser, the cloud, a browser again)
with gaps between their windows, one trader that matches every candle, every candle of a window signed
by that window's epoch and no candle of a gap signed. The figures are counted by hand:

- closes 1..9 s: before the first grant (9 candles, not judged);
- epoch 1 (local) [10, 40): 30 judged in its window;
- gap [40, 45) before epoch 2: 5 judged (within the 60 s reach);
- epoch 2 (cloud) [45, 100): 55 judged;
- gap before epoch 3, which starts at 170: closes 100..109 are beyond the reach (10), 110..169 judged (60);
- epoch 3 (local) [170, 300): 20 judged (closes 170..189); closes 190..200 after the horizon (11).

So 170 judged (105 in windows, 65 in gaps), and today 65 missed, all in gaps.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from checker import (
    GAPLESS_COMPONENT,
    SECOND,
    Downtime,
    Epoch,
    ExpectedSignal,
    History,
    Rules,
    Signing,
    StoredSignal,
    check,
    check_exactly_once,
)
from soakdb import (
    always_matches,
    dump_history,
    expected_signals,
    load_history,
    read_rows,
    record_signings,
    shifted,
    stream_observers,
)
from soakkit import EVERY_CANDLE_TRADER, TRADED_TRADER

from signalguard.core.candles import Candle, parse_rest_kline
from signalguard.core.engine import TraderRecord
from signalguard.core.traders.validation import parse_trader
from signalguard.replay.series import kline_row
from signalguard.replay.synthetic import generate

USER = "00000000-0000-4000-8000-000000000001"
EVERY = "00000000-0000-4000-8000-0000000000e1"
RSI = "00000000-0000-4000-8000-0000000000a1"
MACHINE = "00000000-0000-4000-8000-0000000000c3"
T0 = 1_759_449_600 * SECOND
MS = 1000
STREAM = ("BTCUSDT", "1s")


def at(seconds: float) -> int:
    return T0 + int(seconds * SECOND)


def candles(n: int = 200) -> list[Candle]:
    return [
        Candle("BTCUSDT", "1s", at(i) // MS, 100.0, 105.0, 99.0, 100.0 + i % 5, 1.0, True) for i in range(n)
    ]


CANDLES = candles()
EPOCHS = [
    Epoch(1, "local", "tab-a1", None, at(10), at(40), "yielded_to_cloud"),
    Epoch(2, "cloud", MACHINE, MACHINE, at(45), at(100), "released"),
    Epoch(3, "local", "tab-b1", None, at(170), at(300)),
]


def signal(open_s: int, epoch: int, trader: str = EVERY) -> StoredSignal:
    source = "cloud" if epoch == 2 else "local"
    return StoredSignal(
        signal_key=f"{USER}:{trader}:BTCUSDT:1s:{at(open_s) // MS}",
        trader_id=trader,
        symbol="BTCUSDT",
        interval="1s",
        open_time=at(open_s),
        price=CANDLES[open_s].close,
        source=source,
        machine_id=MACHINE if source == "cloud" else None,
        epoch=epoch,
    )


def signing(s: StoredSignal, epoch: int | None = None) -> Signing:
    e = s.epoch if epoch is None else epoch
    source = "cloud" if e == 2 else "local"
    return Signing(
        s.trader_id,
        s.symbol,
        s.interval,
        s.open_time,
        e,
        source,
        MACHINE if source == "cloud" else None,
        s.close_time,
    )


def window_of(close_s: int) -> int | None:
    for e in EPOCHS:
        if e.started_at <= at(close_s) < e.valid_until:
            return e.epoch
    return None


def today() -> History:
    """Every candle closing in a window signed by its epoch; the gaps unsigned (today's rule)."""
    signals = [signal(i, e) for i in range(len(CANDLES)) if (e := window_of(i + 1)) is not None]
    # The warm-up candle (the first) has no previous close: the trader cannot fire on it.
    expected = [
        ExpectedSignal(EVERY, "BTCUSDT", "1s", at(i), CANDLES[i].close) for i in range(1, len(CANDLES))
    ]
    return History(
        user_id=USER,
        epochs=EPOCHS,
        signals=[s for s in signals if s.open_time != at(0)],
        trades=[],
        expected=expected,
        candles={STREAM: CANDLES},
        horizon=at(190),
        read_at=at(205),
        lease_epoch=3,
        seed=5,
        # Lists, as a history read back from its JSON has them.
        events=[],
        downtime=[],
        local_writes=[],
        streams={STREAM: EVERY},
        signings=[signing(s) for s in signals if s.open_time != at(0)],
    )


def gapless() -> History:
    """What the gapless rule leaves: each gap within the reach signed by the epoch that follows it."""
    h = today()
    gap = [signal(i, 2) for i in range(39, 44)] + [signal(i, 3) for i in range(109, 169)]
    h.signals = sorted([*h.signals, *gap], key=lambda s: s.open_time)
    h.signings = [*(h.signings or ()), *(signing(s) for s in gap)]
    h.schema_components = ("core", GAPLESS_COMPONENT)
    return h


def kinds(h: History, rules: Rules | None = None) -> dict[str, int]:
    return {k: n for k, n in check(h, rules).by_kind().items() if n}


def test_todays_rule_misses_every_gap_candle_and_reports_it_without_failing() -> None:
    verdict = check(today())
    once = verdict.exactly_once
    assert not once.enforced and once.signings_recorded
    assert (once.judged, once.missed, once.duplicated) == (170, 65, 0)
    assert once.figures == {
        "streams": 1,
        "streams_unobserved": 0,
        "judged": 170,
        "judged_in_windows": 105,
        "judged_in_gaps": 65,
        "unobservable": 0,
        "before_first_grant": 9,
        "beyond_reach": 10,
        "no_executor": 0,
        "after_horizon": 11,
        "signings": 116,
    }
    assert once.missed_by_place() == {"gap": 65}
    assert once.missed_by_boundary() == {("gap", "1 local -> 2 cloud"): 5, ("gap", "2 cloud -> 3 local"): 60}
    first = once.misses[0]
    assert (first.open_time, first.close_time) == (at(39), at(40))
    assert first.cause == "handoff 1 local -> 2 cloud"
    # Reported, not a violation: the database does not claim the gapless handoff.
    assert verdict.ok, verdict.report()
    text = verdict.report()
    assert (
        f"exactly once (reported only (no {GAPLESS_COMPONENT})): judged 170, missed 65, duplicated 0" in text
    )
    assert "missed by place: gap 65" in text
    assert "gap 2 cloud -> 3 local: 60" in text


def test_a_miss_is_a_violation_once_the_database_claims_the_gapless_handoff() -> None:
    h = today()
    h.schema_components = ("core", GAPLESS_COMPONENT)
    assert kinds(h) == {"missed_evaluation": 65}
    assert check(h).exactly_once.enforced
    # The rules override the database either way.
    assert kinds(h, Rules(exactly_once=False)) == {}
    h.schema_components = ()
    assert kinds(h, Rules(exactly_once=True)) == {"missed_evaluation": 65}


def test_the_gapless_rule_passes_and_its_gap_signals_are_not_outside_their_window() -> None:
    h = gapless()
    verdict = check(h)
    assert verdict.ok, verdict.report()
    assert (verdict.exactly_once.missed, verdict.exactly_once.duplicated) == (0, 0)
    assert verdict.exactly_once.judged == 170
    # Without the component, those gap signals are outside their epoch's window (today's rule).
    h.schema_components = ()
    assert kinds(h) == {"signal_outside_window": 65}


def test_a_gap_signal_beyond_the_reach_or_in_another_epochs_window_is_still_outside() -> None:
    h = gapless()
    beyond = signal(105, 3)  # closes at 106: the gap before epoch 3 reaches back to 110 only
    stolen = signal(80, 3)  # closes at 81, inside epoch 2's window
    h.signals = [s for s in h.signals if s.open_time not in (at(105), at(80))] + [beyond, stolen]
    h.signings = [signing(s) for s in h.signals]
    assert kinds(h) == {"signal_outside_window": 2}
    # The epoch before the gap may not sign it either: it is the next holder's.
    h = gapless()
    late = signal(41, 1)
    h.signals = [s for s in h.signals if s.open_time != at(41)] + [late]
    h.signings = [signing(s) for s in h.signals]
    assert kinds(h) == {"signal_outside_window": 1}


def test_misses_say_where_they_fell() -> None:
    h = today()
    # Closes at 10 (the start of epoch 1), 39 (its end), 60 (inside epoch 2).
    gone = {at(9), at(38), at(59)}
    h.signals = [s for s in h.signals if s.open_time not in gone]
    h.downtime = [Downtime("cloud", at(55), at(70), "killed")]
    once = check_exactly_once(h)
    assert once.missed == 68
    assert once.missed_by_place() == {"gap": 65, "window start": 1, "window end": 1, "inside window": 1}
    by_boundary = once.missed_by_boundary()
    assert by_boundary[("window start", "nobody -> 1 local")] == 1
    assert by_boundary[("window end", "1 local -> 2 cloud")] == 1
    assert by_boundary[("inside window", "2 cloud")] == 1
    inside = next(f for f in once.misses if f.place == "inside window")
    assert inside.cause == "holder down (killed)"
    assert "signed by nobody: inside window of epoch 2 [2 cloud]" in inside.detail


def test_a_candle_signed_under_two_epochs_is_a_duplicate_even_when_the_rows_show_one() -> None:
    h = today()
    # Epoch 1 wrote the candle closing at 39; epoch 2's write of it was absorbed as a duplicate.
    first = signal(38, 1)
    h.signings = [*(h.signings or ()), signing(first, epoch=2)]
    verdict = check(h)
    once = verdict.exactly_once
    assert once.duplicated == 1
    (dup,) = once.duplicates
    assert (dup.signed_by, dup.place, dup.boundary) == ((1, 2), "window end", "1 local -> 2 cloud")
    # A duplicate is a violation whatever the database claims: at most once always held.
    assert {k: n for k, n in verdict.by_kind().items() if n} == {"duplicate_evaluation": 1}
    # Another trader's signal of the same candle, under the other epoch: the candle was evaluated twice.
    h = today()
    other = signal(38, 2, trader=RSI)
    h.signals = [*h.signals, other]
    h.expected = [*h.expected, ExpectedSignal(RSI, "BTCUSDT", "1s", at(38), CANDLES[38].close)]
    assert check_exactly_once(h).duplicated == 1
    # Without recorded signings only the rows speak: one row, no duplicate to see.
    h = today()
    h.signings = None
    once = check_exactly_once(h)
    assert not once.signings_recorded and once.duplicated == 0
    assert "signings not recorded" in once.report_lines()[0]


def test_unobserved_streams_and_unobservable_candles_are_counted_not_judged() -> None:
    h = today()
    h.streams = {STREAM: EVERY, ("ETHUSDT", "1s"): None}
    h.expected = [dataclasses.replace(x, certain=False) if x.open_time == at(60) else x for x in h.expected]
    once = check_exactly_once(h)
    assert once.figures["streams"] == 2 and once.figures["streams_unobserved"] == 1
    assert once.figures["unobservable"] == 1 and once.judged == 169
    h.streams = {STREAM: None}
    assert check_exactly_once(h).judged == 0


def test_after_the_last_window_with_nobody_holding_the_lease_nothing_is_owed() -> None:
    h = today()
    h.epochs = [*EPOCHS[:2], dataclasses.replace(EPOCHS[2], valid_until=at(180))]
    h.signals = [s for s in h.signals if s.close_time < at(180)]
    h.signings = [w for w in h.signings or () if w.at < at(180)]
    once = check_exactly_once(h)
    assert once.figures["no_executor"] == 10  # closes 180..189
    assert once.missed == 65
    # A window that ended before the horizon has an end margin.
    h.signals = [s for s in h.signals if s.open_time != at(178)]
    assert check_exactly_once(h).missed_by_boundary()[("window end", "3 local -> nobody")] == 1


def test_the_reach_is_two_hours_or_sixty_candles() -> None:
    rules = Rules()
    assert rules.reach("1s") == 60 * SECOND
    assert rules.reach("1m") == 3600 * SECOND
    assert rules.reach("1h") == 2 * 3600 * SECOND
    assert Rules(gap_candles=10).reach("1s") == 10 * SECOND


def test_the_new_fields_survive_the_json(tmp_path: Path) -> None:
    h = gapless()
    dump_history(h, tmp_path / "history.json")
    again = load_history(tmp_path / "history.json")
    assert again == h
    assert check(again).report() == check(h).report()
    # A history written before the property has none of them: nothing is judged, nothing fails.
    doc = json.loads((tmp_path / "history.json").read_text())
    for name in ("streams", "signings", "schema_components"):
        del doc[name]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    old = load_history(tmp_path / "old.json")
    assert old.signings is None and not old.streams and not old.schema_components
    assert check_exactly_once(old).judged == 0


# -- the observable ---------------------------------------------------------------------------------


def test_the_soaks_every_candle_trader_is_valid_and_recognised() -> None:
    parse_trader(json.dumps(EVERY_CANDLE_TRADER))
    assert always_matches(EVERY_CANDLE_TRADER)
    assert not always_matches(TRADED_TRADER)
    base: dict[str, Any] = {"interval": "1s", "cooldown_candles": 0}
    for condition, always in [
        ({"indicator": "rsi", "period": 2, "op": "<=", "value": 100}, True),
        ({"indicator": "rsi", "period": 2, "op": ">=", "value": 0}, True),
        ({"indicator": "rsi", "period": 2, "op": "<", "value": 100}, False),
        ({"indicator": "price_change_pct", "period": 1, "op": ">", "value": -100}, True),
        ({"indicator": "price_change_pct", "period": 1, "op": ">=", "value": -99}, False),
        ({"indicator": "close_vs_sma", "period": 2, "op": ">="}, False),
    ]:
        assert always_matches({**base, "conditions": [condition]}) is always, condition
    # A cooldown skips candles; "all" needs every condition to hold, "any" one.
    every: list[Any] = [{"indicator": "price_change_pct", "period": 1, "op": ">=", "value": -100}]
    assert EVERY_CANDLE_TRADER["conditions"] == every
    never: list[Any] = [{"indicator": "rsi", "period": 2, "op": "<", "value": 35}]
    assert not always_matches({**base, "conditions": every, "cooldown_candles": 1})
    assert not always_matches({**base, "conditions": [*every, *never]})
    assert always_matches({**base, "match": "any", "conditions": [*every, *never]})


def test_the_reference_engine_fires_the_every_candle_trader_on_every_warm_candle() -> None:
    series = generate(("BTCUSDT", "ETHUSDT"), interval="1s", candles=300, seed=3, warmup=100, spacing=60)
    served: dict[tuple[str, str], list[Candle]] = {}
    for symbol, bars in series.series.bars.items():
        opens = [T0 // MS + i * 1000 for i in range(len(bars))]
        served[(symbol, "1s")] = [
            parse_rest_kline(kline_row(b, o, 1000), symbol=symbol, interval="1s", now_ms=o + 1000)
            for b, o in zip(bars, opens, strict=True)
        ]
    traders = [
        TraderRecord(EVERY, "Every candle", EVERY_CANDLE_TRADER),
        TraderRecord(RSI, "Fast RSI, traded", TRADED_TRADER),
    ]
    expected = expected_signals(USER, traders, served)
    for stream, stream_candles in served.items():
        fired = {
            x.open_time for x in expected if x.trader_id == EVERY and x.certain and x.symbol == stream[0]
        }
        # Certainly on every candle but the first (no previous close to compare with).
        assert fired == {c.open_time * MS for c in stream_candles[1:]}
    assert stream_observers(traders) == {("BTCUSDT", "1s"): EVERY, ("ETHUSDT", "1s"): EVERY}
    assert stream_observers(traders[1:]) == {("BTCUSDT", "1s"): None, ("ETHUSDT", "1s"): None}


def test_a_threshold_at_the_cores_bound_stays_when_loosened() -> None:
    every = shifted(EVERY_CANDLE_TRADER, -0.01)["conditions"][0]
    assert every["value"] == -100  # -100.01 would be refused: the trader would signal nothing
    assert shifted(EVERY_CANDLE_TRADER, 0.01)["conditions"][0]["value"] == pytest.approx(-99.99)
    rsi = {**EVERY_CANDLE_TRADER, "conditions": [{"indicator": "rsi", "period": 2, "op": "<=", "value": 100}]}
    assert shifted(rsi, -0.01)["conditions"][0]["value"] == 100
    assert shifted(rsi, 0.01)["conditions"][0]["value"] == pytest.approx(99.99)


# -- the signings, recorded by the database ----------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    from e2ekit import make_stack

    s = make_stack("http://127.0.0.1:9")  # no market data is read here
    yield s
    s.reset()


@pytest.mark.stack
def test_the_database_records_inserted_and_duplicate_writes_not_refused_ones(stack: Any) -> None:
    from e2ekit import FAST_TRADER, fresh_user
    from psycopg.types.json import Jsonb

    with stack.connect() as conn:
        record_signings(conn)
        record_signings(conn)  # idempotent
    _, uid = fresh_user(stack, definition=FAST_TRADER)
    with stack.connect() as conn:
        trader = conn.execute("select id::text from public.traders where user_id = %s", (uid,)).fetchone()[0]

    def as_browser(sql: str, *args: Any) -> Any:
        with stack.connect() as conn, conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": uid}),))
            return conn.execute(sql, args).fetchone()[0]

    grant = as_browser("select public.claim_local_lease(%s)", f"tab-{uuid.uuid4()}")
    assert grant["granted"] is True
    epoch = grant["lease"]["epoch"]
    with stack.connect() as conn:
        # The window opened 20 s ago: candles that closed since are its own.
        conn.execute(
            "update public.lease_epochs set started_at = started_at - interval '20 seconds' "
            "where user_id = %s and epoch = %s",
            (uid, epoch),
        )
        now_ms = int(conn.execute("select extract(epoch from clock_timestamp()) * 1000").fetchone()[0])
    second = now_ms // 1000 * 1000

    def item(open_ms: int) -> dict[str, Any]:
        return {
            "trader_id": trader,
            "symbol": "BTCUSDT",
            "interval": "1s",
            "candle_open_time": open_ms,
            "price": 100,
            "matched_conditions": ["x"],
            "source": "local",
            "machine_id": None,
            "epoch": epoch,
        }

    inside, also, refused = second - 5000, second - 6000, second - 7000
    outcomes = as_browser("select public.write_signals(%s)", Jsonb([item(inside)]))
    assert [o["outcome"] for o in outcomes] == ["inserted"]
    # A batch with a refused row (a browser token writing a cloud signal): the fast path is rolled back,
    # then each row is tried on its own.
    batch = [item(inside), {**item(refused), "source": "cloud"}, item(also)]
    outcomes = as_browser("select public.write_signals(%s)", Jsonb(batch))
    assert [o["outcome"] for o in outcomes] == ["duplicate", "rejected", "inserted"]
    with stack.connect() as conn:
        rows = read_rows(conn, uid)
    assert rows.signings is not None
    assert sorted((w.open_time // 1000, w.epoch, w.source) for w in rows.signings) == [
        (also, epoch, "local"),
        (inside, epoch, "local"),
        (inside, epoch, "local"),
    ]
    assert len(rows.signals) == 2
    # What schema_version() reports (the gapless handoff only once its migration has landed).
    assert rows.schema_components
