"""The soak's checker on hand-made histories: a clean one passes, and each kind of violation is found.

Every test starts from one consistent history (a browser epoch, then a cloud epoch; signals of both
inside their windows; a trade opened by the browser and closed by it at its expiry) and breaks exactly
one thing, so a check that could never fail would show up here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from checker import (
    KINDS,
    SECOND,
    Downtime,
    Epoch,
    ExpectedSignal,
    History,
    LocalWrite,
    NemesisEvent,
    StoredSignal,
    StoredTrade,
    check,
)
from soakdb import dump_history, load_history, local_writes, shifted

from signalguard.core.candles import Candle

USER = "00000000-0000-4000-8000-000000000001"
PLAIN = "00000000-0000-4000-8000-0000000000a1"
TRADED = "00000000-0000-4000-8000-0000000000b2"
MACHINE = "00000000-0000-4000-8000-0000000000c3"
T0 = 1_759_449_600 * SECOND
MS = 1000
HOLD = 12 * SECOND


def at(seconds: float) -> int:
    return T0 + int(seconds * SECOND)


def candles(n: int = 120) -> list[Candle]:
    out = []
    for i in range(n):
        price = 100.0 + i % 7
        out.append(
            Candle(
                symbol="BTCUSDT",
                interval="1s",
                open_time=at(i) // MS,
                open=price,
                high=price + 1,
                low=price - 1,
                close=price + 0.5,
                volume=1.0,
                closed=True,
            )
        )
    return out


CANDLES = candles()


def close_of(open_s: int) -> float:
    return CANDLES[open_s].close


def signal(trader: str, open_s: int, source: str, epoch: int) -> StoredSignal:
    return StoredSignal(
        signal_key=f"{USER}:{trader}:BTCUSDT:1s:{at(open_s) // MS}",
        trader_id=trader,
        symbol="BTCUSDT",
        interval="1s",
        open_time=at(open_s),
        price=close_of(open_s),
        source=source,
        machine_id=MACHINE if source == "cloud" else None,
        epoch=epoch,
    )


def expected(trader: str, open_s: int, *, certain: bool = True) -> ExpectedSignal:
    return ExpectedSignal(trader, "BTCUSDT", "1s", at(open_s), close_of(open_s), certain)


def trade_of(s: StoredSignal, **changes: Any) -> StoredTrade:
    entry = s.close_time
    # The rule: the first candle opening at or after the entry that closes at or after the expiry.
    exit_open = (entry + HOLD - SECOND - T0) // SECOND
    base = StoredTrade(
        signal_key=s.signal_key,
        trader_id=s.trader_id,
        symbol=s.symbol,
        interval=s.interval,
        status="closed",
        side="long",
        size=100 / s.price,
        entry_price=s.price,
        entry_time=entry,
        source=s.source,
        machine_id=s.machine_id,
        epoch=s.epoch,
        created_at=entry + SECOND // 2,
        updated_at=entry + HOLD + SECOND // 2,
        expires_at=entry + HOLD,
        close_source=s.source,
        close_machine_id=s.machine_id,
        close_epoch=s.epoch,
        exit_time=entry + HOLD,
        exit_price=close_of(exit_open),
        exit_reason="expiry",
    )
    return dataclasses.replace(base, **changes)


def clean() -> History:
    epochs = [
        Epoch(1, "local", "tab-a1-holder", None, at(0), at(40), "yielded_to_cloud"),
        Epoch(2, "cloud", MACHINE, MACHINE, at(41), at(130)),
    ]
    signals = [
        signal(PLAIN, 5, "local", 1),
        signal(TRADED, 10, "local", 1),
        signal(PLAIN, 50, "cloud", 2),
        signal(PLAIN, 60, "cloud", 2),
    ]
    return History(
        user_id=USER,
        epochs=epochs,
        signals=signals,
        trades=[trade_of(signals[1])],
        expected=[
            expected(PLAIN, 5),
            expected(TRADED, 10),
            expected(PLAIN, 50),
            expected(PLAIN, 60),
            # Possible only (an indicator within epsilon of its threshold): not required.
            expected(PLAIN, 70, certain=False),
            # Inside the start margin of epoch 2: not required.
            expected(PLAIN, 40),
            # Between the windows: nobody held the lease.
            expected(PLAIN, 39),
        ],
        candles={("BTCUSDT", "1s"): CANDLES},
        horizon=at(110),
        read_at=at(125),
        max_hold={TRADED: HOLD},
        events=[NemesisEvent(1, "worker_start", at(30), at(30))],
        local_writes=[
            LocalWrite("A", "write_signals", 1, "BTCUSDT 1s ..."),
            LocalWrite("A", "write_trades", 1, "a trade"),
        ],
        device_holders={"A": ["tab-a1-holder", "tab-a2-holder"], "B": ["tab-b1-holder"]},
        lease_epoch=2,
        seed=7,
    )


def kinds(history: History) -> dict[str, int]:
    return {k: n for k, n in check(history).by_kind().items() if n}


def test_the_clean_history_passes() -> None:
    verdict = check(clean())
    assert verdict.ok, verdict.report()
    assert verdict.figures["signals_checked"] == 4
    assert verdict.figures["expected_in_margins"] == 1
    assert verdict.figures["trades_checked"] == 1
    assert verdict.figures["handoffs"] == 1
    assert set(verdict.by_kind()) == set(KINDS)
    assert "verdict: OK" in verdict.report()


def test_a_duplicate_signal_is_found() -> None:
    h = clean()
    h.signals = [*h.signals, h.signals[0]]
    assert kinds(h) == {"duplicate_signal": 2}  # by key, and by (trader, symbol, candle)


def test_a_signal_under_an_epoch_never_granted_is_found() -> None:
    h = clean()
    h.signals = [*h.signals[:3], dataclasses.replace(h.signals[3], epoch=9)]
    assert kinds(h) == {"signal_unheld_epoch": 1}


def test_a_signal_under_the_other_kind_of_epoch_is_found() -> None:
    h = clean()
    # A browser write carrying the cloud's epoch (its candle is inside that window).
    h.signals = [*h.signals[:3], dataclasses.replace(h.signals[3], source="local", machine_id=None)]
    assert kinds(h) == {"signal_unheld_epoch": 1}


def test_a_cloud_signal_of_another_machine_is_found() -> None:
    h = clean()
    other = "00000000-0000-4000-8000-0000000000d4"
    h.signals = [*h.signals[:3], dataclasses.replace(h.signals[3], machine_id=other)]
    assert kinds(h) == {"signal_unheld_epoch": 1}


def test_a_signal_whose_candle_closed_outside_its_epoch_is_found() -> None:
    h = clean()
    # Generated by the browser after its lease moved to the cloud (the candle closed at 61 s).
    stale = signal(PLAIN, 60, "local", 1)
    h.signals = [*h.signals[:3], stale]
    assert kinds(h) == {"signal_outside_window": 1}


def test_a_browser_writing_under_another_devices_epoch_is_found() -> None:
    h = clean()
    h.local_writes = [
        *h.local_writes,
        # Device B under device A's epoch (twice: one violation), and a browser under the cloud's.
        LocalWrite("B", "write_signals", 1, "x"),
        LocalWrite("B", "write_signals", 1, "y"),
        LocalWrite("A", "update_signal_statuses", 2, "z"),
        LocalWrite("A", "write_trades", 7, "never granted"),
    ]
    assert kinds(h) == {"write_by_non_holder": 3}


def test_local_writes_are_read_from_the_requests() -> None:
    rpcs: dict[str, list[tuple[str, Any]]] = {
        "A": [
            ("claim_local_lease", {"p_holder_id": "tab-a1-holder"}),
            (
                "write_signals",
                {"p_signals": [{"symbol": "BTCUSDT", "interval": "1s", "candle_open_time": 5, "epoch": 3}]},
            ),
            (
                "update_signal_statuses",
                {"p_changes": [{"signal_key": "k1", "status": "active", "updated_epoch": 3}]},
            ),
            ("write_trades", {"p_ops": [{"op": "close", "signal_key": "k2", "epoch": 4}]}),
            ("execution_status", None),
        ],
        "B": [("execution_status", {"p_holder_id": "tab-b1-holder"})],
    }
    writes, holders = local_writes(rpcs)
    assert holders == {"A": ["tab-a1-holder"], "B": ["tab-b1-holder"]}
    assert writes == [
        LocalWrite("A", "write_signals", 3, "BTCUSDT 1s 5"),
        LocalWrite("A", "update_signal_statuses", 3, "k1"),
        LocalWrite("A", "write_trades", 4, "k2"),
    ]


def test_overlapping_windows_are_found() -> None:
    h = clean()
    h.epochs = [dataclasses.replace(h.epochs[0], valid_until=at(42)), h.epochs[1]]
    assert kinds(h) == {"overlapping_epochs": 1}


def test_a_gap_in_the_epochs_and_a_stale_lease_row_are_found() -> None:
    h = clean()
    h.epochs = [h.epochs[0], dataclasses.replace(h.epochs[1], epoch=3)]
    h.signals = [dataclasses.replace(s, epoch=3) if s.epoch == 2 else s for s in h.signals]
    assert kinds(h) == {"overlapping_epochs": 2}  # 3 follows 1; the lease row names 2


def test_a_lost_signal_is_found_with_its_cause() -> None:
    h = clean()
    h.signals = [s for s in h.signals if s.open_time != at(60)]
    verdict = check(h)
    assert {k: n for k, n in verdict.by_kind().items() if n} == {"lost_signal": 1}
    # Classified by the latest nemesis event before the candle closed (the worker start at 30 s) ...
    assert verdict.lost_by_cause() == {"after worker_start": 1}
    h.events = []
    assert check(h).lost_by_cause() == {"unexplained": 1}
    # The same loss after a SIGKILL of the holder, less than a flush period later.
    h.events = [NemesisEvent(1, "worker_sigkill", at(65), at(65))]
    assert check(h).lost_by_cause() == {"unflushed at SIGKILL": 1}
    # ... and while the holder was known to be down.
    h.downtime = [Downtime("cloud", at(55), at(70), "killed")]
    assert check(h).lost_by_cause() == {"holder down (killed)": 1}
    # Down time of the other kind explains nothing.
    h.downtime = [Downtime("local", at(55), at(70), "killed")]
    assert check(h).lost_by_cause() == {"unflushed at SIGKILL": 1}


def test_losses_near_the_window_edges_and_the_horizon() -> None:
    h = clean()
    h.expected = [*h.expected, expected(PLAIN, 38), expected(PLAIN, 100), expected(PLAIN, 115)]
    verdict = check(h)
    # 38 s closes at 39 s, 1 s before epoch 1 ends: in the margin. 100 s is inside the window and
    # before the horizon (no margin there: the window goes on): lost. 115 s is after the horizon.
    assert verdict.count("lost_signal") == 1 and "00:01:40" in verdict.violations[0].detail
    assert verdict.figures["expected_after_horizon"] == 1
    assert verdict.figures["expected_in_margins"] == 2


def test_a_phantom_signal_and_a_wrong_price_are_found() -> None:
    h = clean()
    h.signals = [*h.signals, signal(PLAIN, 80, "cloud", 2)]
    assert kinds(h) == {"phantom_signal": 1}
    h = clean()
    h.signals = [*h.signals[:3], dataclasses.replace(h.signals[3], price=1.0)]
    assert kinds(h) == {"phantom_signal": 1}


def test_a_possible_signal_may_be_stored() -> None:
    h = clean()
    h.signals = [*h.signals, signal(PLAIN, 70, "cloud", 2)]
    assert check(h).ok


def test_a_trade_opened_or_closed_under_an_epoch_not_held_is_found() -> None:
    h = clean()
    (t,) = h.trades
    h.trades = [dataclasses.replace(t, source="cloud", machine_id=MACHINE)]
    assert kinds(h) == {"trade_unheld_epoch": 1}
    h.trades = [dataclasses.replace(t, created_at=at(45))]  # epoch 1 had ended
    assert kinds(h) == {"trade_unheld_epoch": 1}
    h.trades = [dataclasses.replace(t, close_epoch=2)]  # the cloud's epoch, closed by the browser
    assert kinds(h) == {"trade_close_unheld_epoch": 1}
    h.trades = [dataclasses.replace(t, updated_at=at(41))]  # epoch 1 had ended
    assert kinds(h) == {"trade_close_unheld_epoch": 1}
    h.trades = [dataclasses.replace(t, close_source=None, close_epoch=None)]
    assert kinds(h) == {"trade_close_unheld_epoch": 1}


def test_a_trade_closed_before_its_entry_is_found() -> None:
    h = clean()
    (t,) = h.trades
    h.trades = [dataclasses.replace(t, exit_time=t.entry_time - SECOND)]
    assert kinds(h) == {"trade_exit_before_entry": 1}


def test_a_trade_closed_against_its_rule_is_found() -> None:
    h = clean()
    (t,) = h.trades
    assert t.exit_time is not None and t.exit_price is not None
    late = t.exit_time + 5 * SECOND
    h.trades = [dataclasses.replace(t, exit_time=late, exit_price=close_of((late - T0) // SECOND - 1))]
    assert kinds(h) == {"trade_exit_not_by_rule": 1}
    h.trades = [dataclasses.replace(t, exit_price=t.exit_price + 1)]
    assert kinds(h) == {"trade_exit_not_by_rule": 1}
    h.trades = [dataclasses.replace(t, exit_reason="take_profit")]
    assert kinds(h) == {"trade_exit_not_by_rule": 1}
    # Closed late by an executor whose epoch began after the exit candle: it adopted the trade late.
    h.trades = [
        dataclasses.replace(
            t,
            close_source="cloud",
            close_machine_id=MACHINE,
            close_epoch=2,
            updated_at=at(45),
            exit_time=at(42),
            exit_price=close_of(41),
        )
    ]
    assert check(h).by_cause() == {("trade_exit_not_by_rule", "adopted after its exit candle closed"): 1}
    # A manual close is the user's: any time, any price.
    h.trades = [dataclasses.replace(t, exit_reason="manual", exit_price=1.0)]
    assert kinds(h) == {}


def test_trades_without_signals_duplicates_and_missing_trades_are_found() -> None:
    h = clean()
    (t,) = h.trades
    h.trades = [t, t]
    assert kinds(h) == {"trade_duplicate": 1}
    h.trades = [t, trade_of(signal(TRADED, 20, "local", 1))]
    assert kinds(h) == {"trade_without_signal": 1}
    h.trades = []
    assert kinds(h) == {"missing_trade": 1}
    # A traded signal too recent to be judged yet is not missing its trade.
    h.read_at = at(40)
    h.horizon = at(30)
    assert kinds(h) == {}


def test_a_trade_left_open_without_an_executor_is_found() -> None:
    h = clean()
    (t,) = h.trades
    still = dataclasses.replace(
        t,
        status="open",
        close_source=None,
        close_epoch=None,
        exit_time=None,
        exit_price=None,
        exit_reason=None,
    )
    h.trades = [still]
    assert kinds(h) == {"orphan_open_trade": 1}
    # Within its holding time (and the slack) it is not an orphan yet.
    h.read_at = t.entry_time + HOLD + 10 * SECOND
    assert kinds(h) == {}


def test_the_report_prints_every_figure_and_the_seed() -> None:
    h = clean()
    h.signals = h.signals[:3]
    text = check(h).report()
    for needle in ("seed: 7", "events applied: 1", "worker_start: 1", "signals_checked: 4", "lost_signal: 1"):
        assert needle in text
    assert text.endswith("verdict: VIOLATED")


@pytest.mark.parametrize(("op", "harder", "easier"), [("<", 49.99, 50.01), (">", 50.01, 49.99)])
def test_thresholds_move_both_ways(op: str, harder: float, easier: float) -> None:
    definition: dict[str, Any] = {
        "interval": "1s",
        "conditions": [{"indicator": "rsi", "period": 2, "op": op, "value": 50}],
    }
    assert shifted(definition, 0.01)["conditions"][0]["value"] == pytest.approx(harder)
    assert shifted(definition, -0.01)["conditions"][0]["value"] == pytest.approx(easier)
    assert definition["conditions"][0]["value"] == 50
    with pytest.raises(ValueError, match="cooldown"):
        shifted({**definition, "cooldown_candles": 3}, 0.01)


def test_a_history_survives_its_json(tmp_path: Path) -> None:
    h = clean()
    h.signals = h.signals[:3]
    h.downtime = [Downtime("cloud", at(55), at(70), "killed")]
    dump_history(h, tmp_path / "history.json")
    again = load_history(tmp_path / "history.json")
    assert again == h
    assert check(again).report() == check(h).report()
