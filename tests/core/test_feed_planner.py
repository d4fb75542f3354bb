"""The feed planner (core/feed.py), branch by branch: what to verify, connect, catch up, feed and retry.

Plain synchronous tests: the planner makes no request and reads no clock, so time is a number passed
in. Also the traders' problem lines (``trader_problems``) and what the executor sends of them
(``ProblemReporter``).
"""

from __future__ import annotations

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.candles import Candle
from signalguard.core.engine import HistoryNeed, TraderRecord
from signalguard.core.feed import (
    MAX_PROBLEM,
    STREAMS_PER_CONNECTION,
    CatchUp,
    FeedPlanner,
    GapFill,
    LiveAction,
    LiveStep,
    ProblemReporter,
    Stream,
    StreamFailure,
    trader_problems,
)

M = 60_000
H = 3_600_000
#: An hour boundary (2023-11-14T22:00Z), so 1m and 1h candles both align on it.
T0 = 1_700_000_000_000 // H * H
#: 2024-01-01T00:00Z and 2024-02-01T00:00Z: one monthly candle apart.
JAN = 1_704_067_200_000
FEB = 1_706_745_600_000

BTC: Stream = ("BTCUSDT", "1m")
ETH: Stream = ("ETHUSDT", "1m")
SOL: Stream = ("SOLUSDT", "1h")
XRP: Stream = ("XRPUSDT", "1m")
ADA: Stream = ("ADAUSDT", "1m")

SCHEDULE = Backoff(1.0, 5.0)


def candle(stream: Stream = BTC, open_time: int = T0, *, closed: bool = True) -> Candle:
    return Candle(stream[0], stream[1], open_time, 10.0, 11.0, 9.0, 10.5, 1.0, closed)


def planner(*streams: Stream, per_connection: int = STREAMS_PER_CONNECTION) -> FeedPlanner:
    p = FeedPlanner(backoff=SCHEDULE, per_connection=per_connection)
    p.watch(list(streams))
    return p


def serving(*streams: Stream, per_connection: int = STREAMS_PER_CONNECTION) -> FeedPlanner:
    """A planner watching ``streams``, every one of them verified."""
    p = planner(*streams, per_connection=per_connection)
    for s in streams:
        p.served(s)
    return p


def need(stream: Stream, candles: int) -> HistoryNeed:
    return HistoryNeed(stream[0], stream[1], candles)


# -- need and watch ------------------------------------------------------------------------------


def test_need_keeps_the_largest_count_a_stream_was_asked_for() -> None:
    p = planner(BTC, ETH)
    p.need([need(BTC, 10), need(BTC, 62), need(ETH, 3), need(BTC, 5)])
    p.need([need(BTC, 20)])
    assert p.pending_warmups == 2
    assert p.catch_up([BTC, ETH]) == [CatchUp(BTC, None, 62), CatchUp(ETH, None, 3)]


def test_watch_keeps_the_engines_order_without_duplicates() -> None:
    p = planner(ETH, BTC, ETH, SOL, BTC)
    assert p.watched == [ETH, BTC, SOL]
    p.watched.append(XRP)  # a copy: the planner's list is its own
    assert p.watched == [ETH, BTC, SOL]
    assert p.connections() == [(ETH, BTC, SOL)]


def test_watch_forgets_what_a_stream_no_longer_watched_knew() -> None:
    p = serving(BTC, ETH, SOL)
    p.need([need(BTC, 62), need(ETH, 62), need(SOL, 5)])
    p.fed(candle(ETH))
    p.refused(BTC, "BTCUSDT 1m: refused", now=100.0)
    p.refused(BTC, "BTCUSDT 1m: refused", now=200.0)

    p.watch([SOL])  # BTC and ETH are no longer watched
    assert p.watched == [SOL]
    assert p.pending_warmups == 1
    assert p.problems == {}
    assert p.next_retry() is None
    assert p.due(10**9) == []
    assert p.catch_up([SOL]) == [CatchUp(SOL, None, 5)]

    # Watched again, they start over: verified again, nothing fed, failures counted anew.
    p.watch([BTC, ETH, SOL])
    assert p.to_verify([BTC, ETH, SOL]) == [BTC, ETH]
    assert p.open_streams([BTC, ETH, SOL]) == [SOL]
    assert p.catch_up([BTC, ETH]) == []  # no need and no last candle remembered
    assert p.live(candle(ETH, T0 + 5 * M)).action is LiveAction.SKIP  # not served any more
    assert p.refused(BTC, "again", now=300.0).failures == 1


def test_watch_keeps_what_a_stream_still_watched_knew() -> None:
    p = serving(BTC, ETH)
    p.need([need(BTC, 62)])
    p.fed(candle(ETH))
    p.refused(BTC, "refused", now=0.0)
    p.watch([ETH, BTC])
    assert p.watched == [ETH, BTC]
    assert p.problems == {BTC: "refused"}
    assert p.catch_up([BTC, ETH]) == [CatchUp(BTC, None, 62), CatchUp(ETH, T0 + M, 0)]
    assert p.live(candle(ETH, T0 + M)) == LiveStep(LiveAction.FEED)
    assert p.refused(BTC, "refused", now=10.0).failures == 2


# -- verify and connect --------------------------------------------------------------------------


def test_to_verify_leaves_out_streams_served_or_failed() -> None:
    p = planner(BTC, ETH, SOL, XRP)
    assert p.to_verify([XRP, BTC, ETH, SOL]) == [XRP, BTC, ETH, SOL]
    p.served(ETH)
    p.refused(SOL, "refused", now=0.0)
    assert p.to_verify([XRP, BTC, ETH, SOL]) == [XRP, BTC]
    assert p.to_verify([]) == []


def test_served_is_ignored_for_a_stream_not_watched() -> None:
    p = planner(BTC)
    p.served(SOL)
    p.watch([BTC, SOL])
    assert p.to_verify([BTC, SOL]) == [BTC, SOL]
    assert p.open_streams([BTC, SOL]) == []
    assert p.live(candle(SOL)).action is LiveAction.SKIP


def test_served_clears_a_failure() -> None:
    p = planner(BTC, ETH)
    p.refused(BTC, "BTCUSDT 1m: refused", now=0.0)
    assert p.connections() == [(ETH,)]
    p.served(BTC)
    assert p.problems == {}
    assert p.next_retry() is None
    assert p.due(10**9) == []
    assert p.connections() == [(BTC, ETH)]
    assert p.open_streams([BTC, ETH]) == [BTC]
    assert p.live(candle(BTC)) == LiveStep(LiveAction.FEED)
    # Its failures start over.
    assert p.refused(BTC, "refused", now=10.0).failures == 1


def test_refused_counts_failures_and_schedules_the_retry_on_the_back_off() -> None:
    p = serving(BTC)
    failures = [p.refused(BTC, "BTCUSDT 1m: refused", now=100.0 * n) for n in range(1, 7)]
    assert [f.failures for f in failures] == [1, 2, 3, 4, 5, 6]
    assert [f.retry_at - 100.0 * n for n, f in enumerate(failures, start=1)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert failures[0] == StreamFailure("BTCUSDT 1m: refused", 1, 101.0)
    assert p.next_retry() == 605.0
    # A stream refused is neither served nor verified again: only the retries ask for it.
    assert p.to_verify([BTC]) == []
    assert p.open_streams([BTC]) == []
    assert p.connections() == []
    assert p.live(candle(BTC)).action is LiveAction.SKIP


def test_refused_follows_the_planners_schedule() -> None:
    p = FeedPlanner(backoff=Backoff(0.01, 0.05))
    p.watch([BTC])
    assert [p.refused(BTC, "r", now=0.0).retry_at for _ in range(4)] == [0.01, 0.02, 0.04, 0.05]
    default = FeedPlanner()
    default.watch([BTC])
    assert default.backoff == BACKOFF
    assert default.refused(BTC, "r", now=10.0).retry_at == 11.0


def test_refused_cuts_the_reason_to_the_longest_problem_line() -> None:
    p = planner(BTC, ETH)
    failure = p.refused(BTC, "x" * 500, now=0.0)
    assert failure.reason == "x" * MAX_PROBLEM
    exact = "y" * MAX_PROBLEM
    assert p.refused(ETH, exact, now=0.0).reason == exact
    assert p.problems == {BTC: "x" * MAX_PROBLEM, ETH: exact}


def test_refused_does_not_record_a_stream_not_watched() -> None:
    p = planner(BTC)
    failure = p.refused(SOL, "SOLUSDT 1h: refused", now=10.0)
    assert failure == StreamFailure("SOLUSDT 1h: refused", 1, 11.0)
    assert p.problems == {}
    assert p.next_retry() is None
    assert p.due(10**9) == []
    assert p.connections() == [(BTC,)]
    assert p.refused(SOL, "again", now=20.0).failures == 1  # nothing counted either
    assert p.describe() == "1 stream, 0 candles"


def test_connections_group_the_streams_not_failed() -> None:
    streams = [BTC, ETH, SOL, XRP, ADA]
    p = planner(*streams, per_connection=2)
    assert p.connections() == [(BTC, ETH), (SOL, XRP), (ADA,)]
    p.refused(ETH, "refused", now=0.0)
    assert p.connections() == [(BTC, SOL), (XRP, ADA)]
    # Unverified streams are in a group: its connection verifies them before naming them.
    assert p.open_streams((BTC, SOL)) == []
    for s in streams:
        p.refused(s, "refused", now=0.0)
    assert p.connections() == []


def test_connections_hold_at_least_one_stream_each() -> None:
    assert planner(BTC, ETH, SOL, per_connection=0).connections() == [(BTC,), (ETH,), (SOL,)]
    assert planner(BTC, ETH, SOL, per_connection=-3).connections() == [(BTC,), (ETH,), (SOL,)]
    assert planner(BTC, ETH, SOL).connections() == [(BTC, ETH, SOL)]
    assert planner().connections() == []


def test_connections_fill_a_connection_with_the_default_count() -> None:
    symbols = [f"S{i:03d}USDT" for i in range(STREAMS_PER_CONNECTION + 1)]
    p = planner(*[(s, "1m") for s in symbols])
    groups = p.connections()
    assert [len(g) for g in groups] == [STREAMS_PER_CONNECTION, 1]
    assert groups[1] == ((symbols[-1], "1m"),)


def test_open_streams_names_the_served_streams_of_a_group_in_its_order() -> None:
    p = planner(BTC, ETH, SOL, XRP)
    p.served(SOL)
    p.served(BTC)
    p.served(XRP)
    assert p.open_streams((BTC, ETH, SOL, XRP)) == [BTC, SOL, XRP]
    p.refused(SOL, "refused", now=0.0)
    assert p.open_streams((BTC, ETH, SOL, XRP)) == [BTC, XRP]
    assert p.open_streams(()) == []


def test_due_and_next_retry() -> None:
    p = serving(BTC, ETH, SOL)
    assert p.next_retry() is None
    assert p.due(10**9) == []
    p.refused(ETH, "ETHUSDT 1m: refused", now=0.5)  # retried at 1.5
    p.refused(BTC, "BTCUSDT 1m: refused", now=0.0)  # retried at 1.0
    assert p.next_retry() == 1.0
    assert p.due(0.99) == []
    assert p.due(1.0) == [BTC]
    assert p.due(1.5) == [ETH, BTC]
    p.refused(BTC, "BTCUSDT 1m: refused", now=1.0)  # the second failure: retried at 3.0
    assert p.next_retry() == 1.5
    assert p.due(2.0) == [ETH]
    p.served(ETH)
    assert p.next_retry() == 3.0
    assert p.due(2.0) == []
    assert p.due(3.0) == [BTC]


def test_problems_name_each_failed_stream_with_its_reason() -> None:
    p = planner(BTC, ETH, SOL)
    assert p.problems == {}
    p.refused(SOL, "SOLUSDT 1h: gone", now=0.0)
    p.refused(BTC, "BTCUSDT 1m: gone", now=0.0)
    p.refused(BTC, "BTCUSDT 1m: still gone", now=1.0)
    problems = p.problems
    assert problems == {SOL: "SOLUSDT 1h: gone", BTC: "BTCUSDT 1m: still gone"}
    problems.clear()  # a copy
    assert len(p.problems) == 2


def test_connection_delay_follows_the_schedule() -> None:
    p = planner(BTC)
    assert [p.connection_delay(n) for n in range(0, 7)] == [1.0, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    scaled = FeedPlanner(backoff=Backoff(0.01, 0.05))
    assert [scaled.connection_delay(n) for n in range(1, 5)] == [0.01, 0.02, 0.04, 0.05]
    assert FeedPlanner().connection_delay(3) == BACKOFF.delay(3) == 4.0


# -- catch up ------------------------------------------------------------------------------------


def test_catch_up_asks_the_history_the_needs_want() -> None:
    p = serving(BTC, ETH, SOL)
    p.need([need(SOL, 5), need(BTC, 62)])
    assert p.catch_up([BTC, ETH, SOL]) == [CatchUp(BTC, None, 62), CatchUp(SOL, None, 5)]
    assert p.catch_up([SOL, BTC]) == [CatchUp(SOL, None, 5), CatchUp(BTC, None, 62)]
    assert p.catch_up([ETH]) == []  # neither history nor a candle fed: nothing to ask
    assert p.catch_up([]) == []


def test_catch_up_asks_what_a_reconnect_missed_after_the_last_candle_fed() -> None:
    p = serving(BTC, SOL, ("BTCUSDT", "1M"))
    p.fed(candle(BTC, T0 + 3 * M))
    p.fed(candle(SOL, T0 + 2 * H))
    p.fed(candle(("BTCUSDT", "1M"), JAN))
    assert p.catch_up([BTC, SOL, ("BTCUSDT", "1M")]) == [
        CatchUp(BTC, T0 + 4 * M, 0),
        CatchUp(SOL, T0 + 3 * H, 0),
        CatchUp(("BTCUSDT", "1M"), FEB, 0),
    ]
    p.need([need(BTC, 62)])  # a trader changed: history too
    assert p.catch_up([BTC]) == [CatchUp(BTC, T0 + 4 * M, 62)]


def test_caught_up_without_history_keeps_the_need() -> None:
    p = serving(BTC)
    p.need([need(BTC, 62)])
    p.caught_up(BTC, None)  # none asked for, or refused meanwhile
    assert p.pending_warmups == 1
    assert p.catch_up([BTC]) == [CatchUp(BTC, None, 62)]
    assert p.live(candle(BTC)) == LiveStep(LiveAction.FEED)


def test_caught_up_with_an_empty_history_clears_the_need() -> None:
    p = serving(BTC)
    p.need([need(BTC, 62)])
    p.caught_up(BTC, [])  # the exchange has no candles yet
    assert p.pending_warmups == 0
    assert p.catch_up([BTC]) == []
    assert p.live(candle(BTC)) == LiveStep(LiveAction.FEED)  # nothing fed: the first candle is fed


def test_caught_up_history_moves_the_last_candle_but_never_back() -> None:
    p = serving(BTC, ETH)
    p.need([need(BTC, 2), need(ETH, 2)])
    p.caught_up(BTC, [candle(BTC, T0), candle(BTC, T0 + M)])
    assert p.pending_warmups == 1
    assert p.catch_up([BTC, ETH]) == [CatchUp(BTC, T0 + 2 * M, 0), CatchUp(ETH, None, 2)]
    assert p.live(candle(BTC, T0 + M)).action is LiveAction.SKIP
    assert p.live(candle(BTC, T0 + 2 * M)) == LiveStep(LiveAction.FEED)

    p.fed(candle(ETH, T0 + 9 * M))  # fed meanwhile (the missed candles of a reconnect)
    p.caught_up(ETH, [candle(ETH, T0), candle(ETH, T0 + M)])
    assert p.catch_up([ETH]) == [CatchUp(ETH, T0 + 10 * M, 0)]


# -- live ----------------------------------------------------------------------------------------


def test_live_skips_a_candle_still_forming() -> None:
    p = serving(BTC)
    assert p.live(candle(BTC, closed=False)) == LiveStep(LiveAction.SKIP)
    p.fed(candle(BTC, T0))
    assert p.live(candle(BTC, T0 + 5 * M, closed=False)) == LiveStep(LiveAction.SKIP)


def test_live_skips_a_stream_not_served_or_failed_or_not_watched() -> None:
    p = planner(BTC, ETH)
    assert p.live(candle(BTC)) == LiveStep(LiveAction.SKIP)  # not verified yet
    p.served(ETH)
    p.fed(candle(ETH, T0))
    p.refused(ETH, "ETHUSDT 1m: refused", now=0.0)  # named in a connection, then refused
    assert p.live(candle(ETH, T0 + M)) == LiveStep(LiveAction.SKIP)
    assert p.live(candle(ETH, T0 + 5 * M)) == LiveStep(LiveAction.SKIP)  # no gap asked either
    assert p.live(candle(SOL)) == LiveStep(LiveAction.SKIP)


def test_live_feeds_the_first_candle_of_a_stream() -> None:
    p = serving(BTC, SOL)
    assert p.live(candle(BTC, T0 + 7 * M)) == LiveStep(LiveAction.FEED, None)
    assert p.live(candle(SOL, T0 + 5 * H)) == LiveStep(LiveAction.FEED)


def test_live_skips_the_overlap_with_what_was_fed() -> None:
    p = serving(BTC)
    p.fed(candle(BTC, T0 + M))
    assert p.live(candle(BTC, T0 + M)) == LiveStep(LiveAction.SKIP)  # a repeated event
    assert p.live(candle(BTC, T0)) == LiveStep(LiveAction.SKIP)  # the REST overlap


def test_live_feeds_the_next_candle() -> None:
    p = serving(BTC, SOL)
    p.fed(candle(BTC, T0))
    p.fed(candle(SOL, T0))
    assert p.live(candle(BTC, T0 + M)) == LiveStep(LiveAction.FEED)
    assert p.live(candle(SOL, T0 + H)) == LiveStep(LiveAction.FEED)


def test_live_asks_for_the_gap_before_a_candle_that_skips_open_times() -> None:
    p = serving(BTC, SOL, ("BTCUSDT", "1M"))
    p.fed(candle(BTC, T0))
    p.fed(candle(SOL, T0))
    assert p.live(candle(BTC, T0 + 4 * M)) == LiveStep(LiveAction.FILL, GapFill(BTC, T0 + M, T0 + 4 * M))
    assert p.live(candle(BTC, T0 + 2 * M)) == LiveStep(LiveAction.FILL, GapFill(BTC, T0 + M, T0 + 2 * M))
    assert p.live(candle(SOL, T0 + 3 * H)) == LiveStep(LiveAction.FILL, GapFill(SOL, T0 + H, T0 + 3 * H))
    month: Stream = ("BTCUSDT", "1M")
    p.fed(candle(month, JAN))
    march = 1_709_251_200_000  # 2024-03-01T00:00Z
    assert p.live(candle(month, FEB)) == LiveStep(LiveAction.FEED)
    assert p.live(candle(month, march)) == LiveStep(LiveAction.FILL, GapFill(month, FEB, march))

    # The gap fed (from REST), the candle is fed next; a partial fill asks for the rest.
    p.fed(candle(BTC, T0 + M), gap=True)
    assert p.live(candle(BTC, T0 + 4 * M)) == LiveStep(LiveAction.FILL, GapFill(BTC, T0 + 2 * M, T0 + 4 * M))
    p.fed(candle(BTC, T0 + 2 * M), gap=True)
    p.fed(candle(BTC, T0 + 3 * M), gap=True)
    assert p.live(candle(BTC, T0 + 4 * M)) == LiveStep(LiveAction.FEED)


def test_fed_counts_candles_and_gap_candles_and_never_moves_back() -> None:
    p = serving(BTC, ETH)
    assert (p.candles, p.gap_candles) == (0, 0)
    p.fed(candle(BTC, T0))
    p.fed(candle(BTC, T0 + M), gap=True)
    p.fed(candle(ETH, T0 + 5 * M))
    p.fed(candle(ETH, T0 + 2 * M), gap=True)  # older than the last fed: the last stays
    assert (p.candles, p.gap_candles) == (4, 2)
    assert p.live(candle(ETH, T0 + 6 * M)) == LiveStep(LiveAction.FEED)
    assert p.live(candle(BTC, T0 + 2 * M)) == LiveStep(LiveAction.FEED)


# -- the page's line -----------------------------------------------------------------------------


def test_describe_counts_streams_and_candles() -> None:
    assert planner().describe() == "0 streams, 0 candles"
    one = serving(BTC)
    assert one.describe() == "1 stream, 0 candles"
    two = serving(BTC, ETH)
    two.fed(candle(BTC, T0))
    two.fed(candle(ETH, T0))
    assert two.describe() == "2 streams, 2 candles"


def test_describe_names_the_failed_streams_in_order() -> None:
    p = planner(XRP, SOL, BTC)
    p.refused(XRP, "XRPUSDT 1m: refused", now=0.0)
    assert p.describe() == "3 streams, 0 candles; 1 not served (XRPUSDT 1m), retried"
    p.refused(BTC, "BTCUSDT 1m: refused", now=0.0)
    p.refused(SOL, "SOLUSDT 1h: refused", now=0.0)
    assert p.describe() == (
        "3 streams, 0 candles; 3 not served (BTCUSDT 1m, SOLUSDT 1h, XRPUSDT 1m), retried"
    )


def test_describe_counts_the_malformed_messages_dropped() -> None:
    p = planner(BTC, ETH)
    assert p.describe(0) == "2 streams, 0 candles"
    assert p.describe(1) == "2 streams, 0 candles, 1 malformed message dropped"
    assert p.describe(3) == "2 streams, 0 candles, 3 malformed messages dropped"
    p.refused(ETH, "ETHUSDT 1m: refused", now=0.0)
    assert (
        p.describe(2)
        == "2 streams, 0 candles; 1 not served (ETHUSDT 1m), retried, 2 malformed messages dropped"
    )


# -- the traders' problem lines ------------------------------------------------------------------


def definition(symbols: list[str], interval: str = "1m") -> dict[str, object]:
    return {
        "version": 1,
        "symbols": symbols,
        "interval": interval,
        "conditions": [{"indicator": "close_vs_sma", "period": 2, "op": ">"}],
    }


BTC_BROKEN = "BTCUSDT 1m: the market data does not serve this stream (Invalid symbol.; HTTP 400)"
ETH_BROKEN = "ETHUSDT 1m: the market data is not available from this region (HTTP 451)"


def test_trader_problems_joins_the_reasons_of_a_traders_failed_streams() -> None:
    traders = [
        TraderRecord("AAAA-1111", "both", definition(["ETHUSDT", "SOLUSDT", "BTCUSDT"])),
        TraderRecord("bbbb-2222", "one", definition(["BTCUSDT"])),
        TraderRecord("cccc-3333", "fine", definition(["SOLUSDT"])),
        TraderRecord("dddd-4444", "hourly", definition(["BTCUSDT"], "1h")),  # another stream
    ]
    problems = {BTC: BTC_BROKEN, ETH: ETH_BROKEN}
    assert trader_problems(traders, problems) == {
        "aaaa-1111": f"{ETH_BROKEN}; {BTC_BROKEN}",
        "bbbb-2222": BTC_BROKEN,
    }


def test_trader_problems_skips_disabled_and_invalid_traders() -> None:
    traders = [
        TraderRecord("aaaa", "off", definition(["BTCUSDT"]), enabled=False),
        TraderRecord("bbbb", "invalid", {"version": 1, "symbols": ["BTCUSDT"]}),
        TraderRecord("cccc", "not even an object", "BTCUSDT"),
        TraderRecord("dddd", "on", definition(["BTCUSDT"])),
    ]
    assert trader_problems(traders, {BTC: BTC_BROKEN}) == {"dddd": BTC_BROKEN}


def test_trader_problems_without_problems_is_empty() -> None:
    traders = [TraderRecord("aaaa", "on", definition(["BTCUSDT"]))]
    assert trader_problems(traders, {}) == {}
    assert trader_problems([], {BTC: BTC_BROKEN}) == {}


def test_trader_problems_cuts_a_long_line_with_an_ellipsis() -> None:
    traders = [
        TraderRecord("long", "long", definition(["BTCUSDT", "ETHUSDT"])),
        TraderRecord("exact", "exact", definition(["XRPUSDT"])),
    ]
    reason = "r" * 200
    exact = "e" * MAX_PROBLEM
    lines = trader_problems(traders, {BTC: reason, ETH: reason, XRP: exact})
    assert len(lines["long"]) == MAX_PROBLEM
    assert lines["long"] == (f"{reason}; {reason}")[: MAX_PROBLEM - 1] + "…"
    assert lines["exact"] == exact  # at the limit: whole


# -- what the executor reports ---------------------------------------------------------------------


def test_problem_reporter_sends_nothing_without_an_epoch() -> None:
    reporter = ProblemReporter()
    assert reporter.plan({"aaaa": "line"}, ["AAAA", "bbbb"], None) == {}
    reporter.sent({"aaaa": "line"}, 3)
    assert reporter.plan({"aaaa": "other"}, ["aaaa"], None) == {}


def test_problem_reporter_sends_every_running_trader_at_a_new_epoch() -> None:
    reporter = ProblemReporter()
    plan = reporter.plan({"aaaa": "BTCUSDT 1m: refused"}, ["AAAA", "BBBB", "cccc"], 3)
    assert plan == {"aaaa": "BTCUSDT 1m: refused", "bbbb": None, "cccc": None}
    assert reporter.plan({}, ["AAAA"], 3) == {"aaaa": None}  # nothing sent yet: whole again
    assert reporter.plan({}, [], 3) == {}


def test_problem_reporter_sends_only_the_changes_within_an_epoch() -> None:
    reporter = ProblemReporter()
    running = ["aaaa", "bbbb", "cccc"]
    first = reporter.plan({"aaaa": "one"}, running, 3)
    reporter.sent(first, 3)
    assert reporter.plan({"aaaa": "one"}, running, 3) == {}
    assert reporter.plan({"aaaa": "two"}, running, 3) == {"aaaa": "two"}
    assert reporter.plan({"aaaa": "one", "bbbb": "new"}, running, 3) == {"bbbb": "new"}
    assert reporter.plan({}, running, 3) == {"aaaa": None}  # cleared

    both = reporter.plan({"aaaa": "two", "bbbb": "new"}, running, 3)
    assert both == {"aaaa": "two", "bbbb": "new"}
    reporter.sent(both, 3)
    assert reporter.plan({"bbbb": "new", "cccc": "three"}, running, 3) == {"aaaa": None, "cccc": "three"}
    reporter.sent({"aaaa": None, "cccc": "three"}, 3)
    assert reporter.plan({"bbbb": "new", "cccc": "three"}, running, 3) == {}
    assert reporter.plan({}, running, 3) == {"bbbb": None, "cccc": None}
    reporter.sent({"bbbb": None, "cccc": None}, 3)
    assert reporter.plan({}, running, 3) == {}  # cleared once, not again


def test_problem_reporter_after_a_failed_send_sends_everything_again() -> None:
    reporter = ProblemReporter()
    running = ["aaaa", "bbbb"]
    reporter.sent(reporter.plan({"aaaa": "one"}, running, 3), 3)
    assert reporter.plan({"aaaa": "one"}, running, 3) == {}
    reporter.failed()
    assert reporter.plan({"aaaa": "one"}, running, 3) == {"aaaa": "one", "bbbb": None}


def test_problem_reporter_starts_over_at_a_new_epoch_after_a_send() -> None:
    reporter = ProblemReporter()
    running = ["aaaa", "bbbb"]
    reporter.sent(reporter.plan({"aaaa": "one"}, running, 3), 3)
    whole = reporter.plan({"aaaa": "one"}, running, 4)
    assert whole == {"aaaa": "one", "bbbb": None}
    reporter.sent(whole, 4)
    assert reporter.plan({"aaaa": "one"}, running, 4) == {}
    assert reporter.plan({}, running, 5) == {"aaaa": None, "bbbb": None}


def test_problem_reporter_forgets_what_it_sent_under_an_earlier_epoch() -> None:
    reporter = ProblemReporter()
    reporter.sent({"cccc": "a trader no longer run"}, 3)
    now = reporter.plan({}, ["aaaa"], 4)
    assert now == {"aaaa": None}
    reporter.sent(now, 4)
    assert reporter.plan({}, ["aaaa"], 4) == {}  # nothing of epoch 3 to clear under epoch 4


def test_a_failed_stream_is_retried_with_what_its_catch_up_asks() -> None:
    p = FeedPlanner()
    p.watch([("BTCUSDT", "1m"), ("ETHUSDT", "1m")])
    p.need([HistoryNeed("BTCUSDT", "1m", 62)])
    assert p.retry_count(("BTCUSDT", "1m")) == 62  # its warm-up history
    assert p.retry_count(("ETHUSDT", "1m")) == 1  # warm already: one candle says it is served


# -- where evaluation stands (a release's p_evaluated_until) ----------------------------------------


def test_evaluated_until_is_the_earliest_next_close_over_the_fed_streams() -> None:
    p = serving(BTC, ETH, SOL)
    assert p.evaluated_until() is None  # nothing fed yet
    p.fed(candle(BTC, T0 + 5 * M))
    # BTC's candle opening T0+5m closed at T0+6m; the next one closes at T0+7m, not evaluated yet.
    assert p.evaluated_until() == T0 + 7 * M
    p.fed(candle(ETH, T0 + 3 * M))
    assert p.evaluated_until() == T0 + 5 * M  # ETH lags: its T0+4m candle (closing T0+5m) is not fed
    # An hourly stream: its next candle closes an hour after the last one closed, so it holds
    # nothing back; one a candle behind does.
    p.fed(candle(SOL, T0 - H))
    assert p.evaluated_until() == T0 + 5 * M
    q = serving(BTC, SOL)
    q.fed(candle(BTC, T0 + 5 * M))
    q.fed(candle(SOL, T0 - 2 * H))
    assert q.evaluated_until() == T0
    p.fed(candle(ETH, T0 + 9 * M))
    assert p.evaluated_until() == T0 + 7 * M


def test_evaluated_until_leaves_out_streams_not_fed_failed_or_no_longer_watched() -> None:
    p = serving(BTC, ETH, XRP)
    p.fed(candle(BTC, T0 + 5 * M))
    p.fed(candle(ETH, T0 + 1 * M))
    assert p.evaluated_until() == T0 + 3 * M  # XRP, never fed, is left out
    p.refused(ETH, "HTTP 400: Invalid symbol", now=0.0)
    assert p.evaluated_until() == T0 + 7 * M  # a failed stream does not hold the others back
    p.watch([XRP])
    assert p.evaluated_until() is None


def test_evaluated_until_counts_months_by_the_calendar() -> None:
    p = serving(("BTCUSDT", "1M"))
    p.fed(candle(("BTCUSDT", "1M"), JAN))
    # January's candle closed on 1 February; February's closes on 1 March (29 days later in 2024).
    assert p.evaluated_until() == FEB + 29 * 24 * H
