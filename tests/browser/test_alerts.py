"""Alerts for new signals: what is new, once per signal across tabs, the channels a trader chose."""

from __future__ import annotations

import json

from signalguard.browser.alerts import (
    DEFAULT_CHANNELS,
    GROUP_OVER,
    LEDGER_KEY,
    LEDGER_SIZE,
    OVERLAP_MS,
    WAIT_MS,
    AlertCenter,
    AlertFeed,
    Arrival,
    Channel,
    Ledger,
    arrivals,
    channels_key,
    compose,
    dump_channels,
    parse_channels,
)
from signalguard.browser.ports import Permission
from signalguard.browser.testing import FakeAttention

T0 = 1_765_000_000_000  # epoch ms
TRADER = "7f0c9a52-0000-4000-8000-000000000001"
OTHER = "7f0c9a52-0000-4000-8000-000000000002"


def iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def row(key: str, stored_ms: int, trader: str = TRADER, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "signal_key": key,
        "trader_id": trader,
        "symbol": "BTCUSDT",
        "interval": "1m",
        "price": 42123.5,
        "source": "cloud",
        "candle_open_time": "2025-12-06T10:15:00+00:00",
        "matched_conditions": ["RSI(14) 27.4 < 30"],
        "created_at": iso(stored_ms),
    }
    return base | extra


def arrival(key: str, stored_ms: int = T0, trader: str = TRADER) -> Arrival:
    return arrivals([row(key, stored_ms, trader)])[0]


def center(attention: FakeAttention, *, notes: list[str] | None = None, user: str = "u1") -> AlertCenter:
    return AlertCenter(
        user,
        attention,
        attention,
        lambda: {TRADER: "RSI dip", OTHER: "Volume"},
        on_note=(notes if notes is not None else []).append,
    )


def choose(c: AlertCenter, channel: Channel, on: bool = True, trader: str = TRADER) -> int:
    drawn: list[None] = []
    c.choose(trader, channel, on, lambda: drawn.append(None))
    return len(drawn)


# -- stored choices ---------------------------------------------------------------------------------


def test_choices_round_trip_and_unknown_channels_are_dropped() -> None:
    text = dump_channels({TRADER: frozenset({Channel.SOUND, Channel.NOTIFY})})
    assert parse_channels(text) == ({TRADER: frozenset({Channel.SOUND, Channel.NOTIFY})}, None)
    assert parse_channels(json.dumps({TRADER: ["sound", "pager", 3]}))[0] == {
        TRADER: frozenset({Channel.SOUND})
    }
    assert parse_channels(None) == ({}, None)


def test_unreadable_choices_are_reset_and_said() -> None:
    for text in ("{", "[1]", '"x"'):
        choices, problem = parse_channels(text)
        assert choices == {}
        assert problem == "the stored alert choices were unreadable and were reset"
    attention = FakeAttention()
    attention.prefs[channels_key("u1")] = "{not json"
    notes: list[str] = []
    c = center(attention, notes=notes)
    assert notes == ["Alerts: the stored alert choices were unreadable and were reset."]
    assert c.channels(TRADER) == DEFAULT_CHANNELS


# -- what is new ---------------------------------------------------------------------------------


def test_rows_without_a_key_or_a_time_are_skipped() -> None:
    rows = [row("a", T0), {"signal_key": "b"}, row("", T0), "x", row("c", T0, created_at="soon")]
    assert [a.key for a in arrivals(rows)] == ["a"]
    assert arrivals({"not": "a list"}) == []


def test_the_first_read_primes_and_later_reads_alert_each_signal_once() -> None:
    feed = AlertFeed()
    assert feed.after() is None
    assert feed.observe(arrivals([row("old1", T0), row("old2", T0 + 5)])) == []
    assert feed.primed
    # The overlap brings back rows already seen: only the new one is new, and only once.
    later = arrivals([row("old2", T0 + 5), row("new", T0 + 10)])
    assert [a.key for a in feed.observe(later)] == ["new"]
    assert feed.observe(later) == []


def test_a_row_committed_late_with_an_older_time_is_still_new() -> None:
    feed = AlertFeed()
    feed.observe(arrivals([row("a", T0)]))
    feed.observe(arrivals([row("c", T0 + 3000)]))
    # "b" began before "c" and committed after it: within the overlap, so it is read and alerted.
    assert [a.key for a in feed.observe(arrivals([row("b", T0 + 1000), row("c", T0 + 3000)]))] == ["b"]


def test_after_reaches_back_by_the_overlap() -> None:
    feed = AlertFeed()
    feed.observe(arrivals([row("a", T0)]))
    after = feed.after()
    assert after is not None
    assert after.startswith(iso(T0 - OVERLAP_MS)[:19])


def test_an_empty_first_read_makes_every_later_signal_new() -> None:
    feed = AlertFeed()
    assert feed.observe([]) == []
    assert feed.after() is None  # nothing to read after: the next read takes the newest rows again
    assert [a.key for a in feed.observe(arrivals([row("first", T0)]))] == ["first"]


# -- once per signal across tabs --------------------------------------------------------------------


def test_the_ledger_claims_each_key_once_across_tabs_and_stays_bounded() -> None:
    prefs = FakeAttention()
    one, two = Ledger(prefs), Ledger(prefs)
    assert one.claim(["a", "b"]) == ["a", "b"]
    assert two.claim(["b", "c", "c"]) == ["c"]
    one.claim([f"k{i}" for i in range(LEDGER_SIZE + 10)])
    kept = json.loads(prefs.prefs[LEDGER_KEY])
    assert len(kept) == LEDGER_SIZE
    assert kept[-1] == f"k{LEDGER_SIZE + 9}"
    prefs.prefs[LEDGER_KEY] = "garbage"
    assert one.claim(["a"]) == ["a"]


def test_only_the_tab_holding_the_lock_notifies_and_chimes() -> None:
    shared: dict[str, str] = {}
    tabs = [FakeAttention(Permission.GRANTED), FakeAttention(Permission.GRANTED)]
    for tab in tabs:
        tab.prefs = shared
    leader, follower = center(tabs[0]), center(tabs[1])
    choose(leader, Channel.NOTIFY)
    choose(leader, Channel.SOUND)
    leader.set_leader(True, T0)
    follower.set_leader(False, T0)
    for c in (leader, follower):
        c.arrived([arrival("s1")], T0)
    assert [n[2] for n in tabs[0].notes] == ["signalguard:s1"]
    assert tabs[0].chimes == 1
    assert tabs[1].notes == [] and tabs[1].chimes == 0


def test_a_new_holder_alerts_what_the_old_one_did_not_and_nothing_twice() -> None:
    shared: dict[str, str] = {}
    tabs = [FakeAttention(Permission.GRANTED), FakeAttention(Permission.GRANTED)]
    for tab in tabs:
        tab.prefs = shared
    old, new = center(tabs[0]), center(tabs[1])
    choose(old, Channel.NOTIFY)
    old.set_leader(True, T0)
    # Both read s1; the old holder alerts it. s2 reaches only the other tab before the old one closes.
    old.arrived([arrival("s1")], T0)
    new.arrived([arrival("s1")], T0)
    new.arrived([arrival("s2", T0 + 1000)], T0 + 1000)
    new.set_leader(True, T0 + 2000)
    assert [n[2] for n in tabs[0].notes] == ["signalguard:s1"]
    assert [n[2] for n in tabs[1].notes] == ["signalguard:s2"]


def test_what_waited_too_long_is_not_alerted_by_a_late_holder() -> None:
    tab = FakeAttention(Permission.GRANTED)
    c = center(tab)
    choose(c, Channel.NOTIFY)
    c.arrived([arrival("s1", T0)], T0)
    c.set_leader(True, T0 + WAIT_MS + 1)
    assert tab.notes == []


# -- the channels -------------------------------------------------------------------------------


def test_the_title_counts_what_arrived_while_nobody_looked() -> None:
    tab = FakeAttention()
    c = center(tab)
    c.set_leader(True, T0)
    c.arrived([arrival("seen")], T0)  # the user is looking: nothing unseen
    assert tab.title_count == 0
    tab.is_looking = False
    c.arrived([arrival("a"), arrival("b", T0 + 1)], T0)
    assert tab.title_count == 2 and c.unseen == 2
    tab.look()
    assert tab.title_count == 0 and c.unseen == 0


def test_a_trader_without_the_count_is_not_counted() -> None:
    tab = FakeAttention()
    tab.is_looking = False
    c = center(tab)
    choose(c, Channel.COUNT, on=False)
    c.arrived([arrival("a")], T0)
    assert tab.title_count == 0
    c.arrived([arrival("b", trader=OTHER)], T0)  # the other trader keeps the default
    assert tab.title_count == 1


def test_notifications_ask_for_permission_from_the_click_and_a_refusal_is_shown() -> None:
    tab = FakeAttention(Permission.DEFAULT)
    tab.answer = Permission.DENIED
    c = center(tab)
    assert choose(c, Channel.NOTIFY) == 1  # redrawn: the switch goes back off
    assert tab.asked == 1
    assert Channel.NOTIFY not in c.channels(TRADER)
    assert "blocked for this site" in c.note()
    # Refused once: never asked again from the page.
    choose(c, Channel.NOTIFY)
    assert tab.asked == 1
    assert Channel.NOTIFY not in c.channels(TRADER)


def test_a_granted_permission_keeps_the_choice_in_the_browser() -> None:
    tab = FakeAttention(Permission.DEFAULT)
    c = center(tab)
    choose(c, Channel.NOTIFY)
    assert tab.asked == 1
    assert c.channels(TRADER) == {Channel.NOTIFY, Channel.COUNT}
    assert c.note() == ""
    again = center(tab)  # a reload, or another tab of the browser
    assert again.channels(TRADER) == {Channel.NOTIFY, Channel.COUNT}
    choose(again, Channel.NOTIFY, on=False)
    assert again.channels(TRADER) == {Channel.COUNT}
    assert tab.asked == 1


def test_a_choice_made_in_another_tab_is_kept_when_this_one_changes_another_trader() -> None:
    shared: dict[str, str] = {}
    one, two = FakeAttention(Permission.GRANTED), FakeAttention(Permission.GRANTED)
    one.prefs = two.prefs = shared
    a, b = center(one), center(two)
    choose(a, Channel.SOUND)
    choose(b, Channel.SOUND, trader=OTHER)
    assert parse_channels(shared[channels_key("u1")])[0] == {
        TRADER: frozenset({Channel.SOUND, Channel.COUNT}),
        OTHER: frozenset({Channel.SOUND, Channel.COUNT}),
    }


def test_unsupported_notifications_are_said_only_to_someone_who_wants_them() -> None:
    tab = FakeAttention(Permission.UNSUPPORTED)
    c = center(tab)
    assert c.note() == ""
    tab.prefs[channels_key("u1")] = dump_channels({TRADER: frozenset({Channel.NOTIFY})})
    c.reload_choices()
    assert "cannot show notifications" in c.note()


def test_a_sound_alone_chimes_without_a_notification() -> None:
    tab = FakeAttention(Permission.GRANTED)
    c = center(tab)
    choose(c, Channel.SOUND)
    c.set_leader(True, T0)
    c.arrived([arrival("a")], T0)
    assert tab.chimes == 1 and tab.notes == []


def test_choices_are_per_user() -> None:
    tab = FakeAttention(Permission.GRANTED)
    choose(center(tab, user="u1"), Channel.SOUND)
    assert center(tab, user="u2").channels(TRADER) == DEFAULT_CHANNELS


# -- what a notification says -----------------------------------------------------------------------


def test_one_signal_names_its_trader_stream_price_candle_and_source() -> None:
    alert = compose([arrival("k1")], lambda _t: frozenset({Channel.NOTIFY}), {TRADER: "RSI dip"})
    assert alert is not None
    assert alert.title == "New signal"
    assert alert.body == "RSI dip: BTCUSDT 1m at 42,123.50, candle 10:15 UTC (cloud): RSI(14) 27.4 < 30"
    assert alert.tag == "signalguard:k1"
    assert alert.notify and not alert.sound


def test_many_signals_at_once_make_one_notification() -> None:
    many = [arrivals([row(f"k{i}", T0 + i, symbol=f"S{i}USDT")])[0] for i in range(GROUP_OVER + 4)]
    alert = compose(many, lambda _t: frozenset({Channel.NOTIFY}), {})
    assert alert is not None
    assert alert.title == f"{GROUP_OVER + 4} new signals"
    assert alert.body.endswith(" and 3 more")
    assert alert.tag == f"signalguard:k{GROUP_OVER + 3}"


def test_no_alert_when_no_trader_of_theirs_wants_one() -> None:
    assert compose([arrival("k")], lambda _t: frozenset({Channel.COUNT}), {}) is None
