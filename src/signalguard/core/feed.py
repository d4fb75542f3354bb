"""The feed planner: which market streams to open, what to fetch, what to feed, when to try again.

Sans-I/O, like the guard: it makes every decision of keeping the engine fed with closed candles and
makes no request itself. The one driver (:class:`signalguard.market.feed.MarketFeed`) runs it on either
host, with the page's ``fetch``/``WebSocket`` or the worker's httpx/websockets, and tells it what came
back. Time is passed in (wall-clock seconds); nothing here reads a clock.

For each (symbol, interval) the running traders watch, the plan is:

1. **verify** a stream it has not seen served yet with one small REST request, before any connection
   names it: a stream the market data refuses (an unknown symbol, an interval the source lacks, a
   region block) must not take the connection of the others down with it;
2. **connect**: the served streams, in groups of at most :data:`STREAMS_PER_CONNECTION` (never more
   than Binance's :data:`BINANCE_MAX_STREAMS`), one combined stream each, opened before the history is
   fetched so that every candle closing from then on is delivered. Binance cuts a connection after
   24 hours; the driver reconnects on its own before (``market.limits.MAX_CONNECTION_AGE``), and the
   catch-up of step 3 fills the candles that closed in between, so the series has no gap;
3. **catch up** by REST (:meth:`FeedPlanner.catch_up`): the newest closed candles the warm-up rule asks
   for (see :mod:`signalguard.core.traders`), and on a reconnect the candles missed meanwhile;
4. **live**: feed each closed stream candle (:meth:`FeedPlanner.live`); one not newer than the last fed
   is skipped (the REST overlap, a repeated event), one that skips open times asks for the missing
   ones first, so the engine sees the same unbroken series as the reference run.

**A stream that fails, fails alone.** A refusal that names one stream (HTTP 4xx other than the rate
limits) marks that stream failed with a plain reason (:attr:`FeedPlanner.problems`); the traders that
watch it are told (:func:`trader_problems`), every other stream goes on, and the failed one is tried
again on the one back-off schedule (:mod:`signalguard.core.backoff`). Anything else (the network, 5xx,
rate limits, a stream closing) fails the connection, which is retried on the same schedule.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from signalguard.core.backoff import BACKOFF, Backoff
from signalguard.core.candles import Candle, next_open_time
from signalguard.core.engine import HistoryNeed, TraderRecord
from signalguard.core.ports import Stream
from signalguard.core.traders import TraderDefinitionError, parse_trader

__all__ = [
    "BINANCE_MAX_STREAMS",
    "MAX_PROBLEM",
    "STREAMS_PER_CONNECTION",
    "CatchUp",
    "FeedPlanner",
    "GapFill",
    "LiveAction",
    "LiveStep",
    "ProblemReporter",
    "Stream",
    "StreamFailure",
    "trader_problems",
]

#: Binance's limit of streams on one WebSocket connection.
BINANCE_MAX_STREAMS: Final = 1024
#: Streams per WebSocket connection: well under Binance's 1,024, so the URL naming them stays short
#: (a stream name is about 20 characters).
STREAMS_PER_CONNECTION: Final = 200
#: Longest problem line a trader gets (the database's limit).
MAX_PROBLEM: Final = 300


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The REST requests of one stream's catch-up after its connection opened."""

    stream: Stream
    #: Open time of the first candle a reconnect may have missed (None: nothing fed yet).
    missed_from: int | None
    #: Newest closed candles to fetch for the warm-up (0: the stream is warm).
    history: int


@dataclass(frozen=True, slots=True)
class GapFill:
    """Closed candles of ``stream`` opening in ``[first_open, before_open)`` to fetch and feed first."""

    stream: Stream
    first_open: int
    before_open: int


class LiveAction(enum.Enum):
    """What to do with a candle that came on a stream."""

    #: Not for the engine: still forming, not a watched stream, or already fed.
    SKIP = "skip"
    #: Feed it now.
    FEED = "feed"
    #: Candles are missing before it: fetch :attr:`LiveStep.gap`, feed those, then ask again.
    FILL = "fill"


@dataclass(frozen=True, slots=True)
class LiveStep:
    """:meth:`FeedPlanner.live`'s answer: the action, and the gap to fill for :attr:`LiveAction.FILL`."""

    action: LiveAction
    gap: GapFill | None = None


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """A stream the market data refuses: why, how often in a row, and when to try it again."""

    #: One plain line, e.g. ``NOSUCHUSDT 1m: the market data does not serve it (Invalid symbol.)``.
    reason: str
    failures: int
    #: Wall-clock seconds of the next try.
    retry_at: float


class FeedPlanner:
    """The decisions of the market feed; see the module documentation."""

    def __init__(self, *, backoff: Backoff = BACKOFF, per_connection: int = STREAMS_PER_CONNECTION) -> None:
        """Plan with ``backoff`` (tests scale it) and at most ``per_connection`` streams a connection.

        ``per_connection`` is bounded by :data:`BINANCE_MAX_STREAMS`: Binance refuses a larger one.
        """
        self.backoff = backoff
        self._per_connection = min(BINANCE_MAX_STREAMS, max(1, per_connection))
        self._watched: list[Stream] = []
        self._needs: dict[Stream, int] = {}
        self._last: dict[Stream, int] = {}
        self._served: set[Stream] = set()
        self._failed: dict[Stream, StreamFailure] = {}
        #: Closed candles fed (live and gap fills).
        self.candles = 0
        #: Candles fetched by REST to fill gaps.
        self.gap_candles = 0

    # -- what is watched ----------------------------------------------------------------------

    def need(self, needs: Iterable[HistoryNeed]) -> None:
        """Streams to prime before their next live candle (what ``set_traders`` returned)."""
        for n in needs:
            key = (n.symbol, n.interval)
            self._needs[key] = max(self._needs.get(key, 0), n.candles)

    def watch(self, streams: Sequence[Stream]) -> None:
        """Watch exactly ``streams`` (the engine's); what a stream no longer watched knew is forgotten.

        A stream watched again later starts over: verified, warmed up, its failures counted anew.
        """
        self._watched = list(dict.fromkeys(streams))
        keep = set(self._watched)
        for table in (self._needs, self._last, self._failed):
            for key in [k for k in table if k not in keep]:
                del table[key]
        self._served &= keep

    @property
    def watched(self) -> list[Stream]:
        """The streams watched, in the engine's order."""
        return list(self._watched)

    @property
    def pending_warmups(self) -> int:
        """Streams still waiting for their history."""
        return len(self._needs)

    # -- verify and connect -------------------------------------------------------------------

    def to_verify(self, streams: Sequence[Stream]) -> list[Stream]:
        """Those of ``streams`` not yet seen served and not failed: probe each before connecting."""
        return [s for s in streams if s not in self._served and s not in self._failed]

    def served(self, stream: Stream) -> None:
        """The market data answered for ``stream``: it may be named in a connection."""
        if stream in self._watched:
            self._served.add(stream)
            self._failed.pop(stream, None)

    def refused(self, stream: Stream, reason: str, now: float, *, not_before: float = 0.0) -> StreamFailure:
        """The market data refused ``stream`` (not the connection): fail it alone, retry it later.

        ``not_before``: seconds the exchange asked for no requests (its rate limit's ``Retry-After``);
        the next try is no sooner, whatever the back-off says.
        """
        before = self._failed.get(stream)
        failures = (before.failures if before else 0) + 1
        wait = max(self.backoff.delay(failures), not_before)
        failure = StreamFailure(reason[:MAX_PROBLEM], failures, now + wait)
        if stream in self._watched:
            self._failed[stream] = failure
            self._served.discard(stream)
        return failure

    def connections(self) -> list[tuple[Stream, ...]]:
        """The watched streams not failed, in groups of at most one connection's worth."""
        ok = [s for s in self._watched if s not in self._failed]
        n = self._per_connection
        return [tuple(ok[i : i + n]) for i in range(0, len(ok), n)]

    def open_streams(self, group: Sequence[Stream]) -> list[Stream]:
        """Those of a connection's ``group`` to name in it: served (a failed stream never is)."""
        return [s for s in group if s in self._served]

    def due(self, now: float) -> list[Stream]:
        """Failed streams whose next try has come."""
        return [s for s, f in self._failed.items() if f.retry_at <= now]

    def next_retry(self) -> float | None:
        """When the earliest failed stream is tried again (None: none failed)."""
        return min((f.retry_at for f in self._failed.values()), default=None)

    def retry_count(self, stream: Stream) -> int:
        """Candles to ask for when trying a failed stream again: what its catch-up will ask.

        A stream refused only its history (the 1-candle probe passed) must be asked the history
        again, or it would look served, join a connection and be refused again, every few seconds.
        """
        return max(1, self._needs.get(stream, 0))

    @property
    def problems(self) -> dict[Stream, str]:
        """Why each failed stream is not fed: one plain line a stream."""
        return {s: f.reason for s, f in self._failed.items()}

    def connection_delay(self, failures: int) -> float:
        """Seconds before reconnecting after ``failures`` failures of a connection in a row."""
        return self.backoff.delay(failures)

    # -- catch up -----------------------------------------------------------------------------

    def catch_up(self, streams: Sequence[Stream]) -> list[CatchUp]:
        """The REST requests after a connection of ``streams`` opened (streams that need none left out)."""
        out: list[CatchUp] = []
        for s in streams:
            last = self._last.get(s)
            missed = next_open_time(s[1], last) if last is not None else None
            history = self._needs.get(s, 0)
            if missed is not None or history:
                out.append(CatchUp(s, missed, history))
        return out

    def caught_up(self, stream: Stream, history: Sequence[Candle] | None) -> None:
        """Record a stream's catch-up: its missed candles were fed (:meth:`fed`), ``history`` warmed up.

        ``history`` None: none was asked for (or the stream was refused meanwhile: it is asked again).
        """
        if history is None:
            return
        if history:
            self._last[stream] = max(self._last.get(stream, -1), history[-1].open_time)
        self._needs.pop(stream, None)

    # -- live ---------------------------------------------------------------------------------

    def live(self, candle: Candle) -> LiveStep:
        """What to do with a candle from the stream (see :class:`LiveAction`)."""
        key = (candle.symbol, candle.interval)
        if not candle.closed or key not in self._served:  # served excludes failed (see refused)
            return LiveStep(LiveAction.SKIP)
        last = self._last.get(key)
        if last is None:
            return LiveStep(LiveAction.FEED)
        if candle.open_time <= last:
            return LiveStep(LiveAction.SKIP)
        expected = next_open_time(candle.interval, last)
        if candle.open_time > expected:
            return LiveStep(LiveAction.FILL, GapFill(key, expected, candle.open_time))
        return LiveStep(LiveAction.FEED)

    def fed(self, candle: Candle, *, gap: bool = False) -> None:
        """``candle`` went to the engine (``gap``: fetched by REST to fill a gap)."""
        key = (candle.symbol, candle.interval)
        self._last[key] = max(self._last.get(key, -1), candle.open_time)
        self.candles += 1
        if gap:
            self.gap_candles += 1

    def evaluated_until(self) -> int | None:
        """Where this side's evaluation stands; None when no stream has been fed.

        It is the close (epoch ms, exchange time) of the earliest candle not yet fed on any served
        stream that has been fed: every candle that closed before it has been fed on every such
        stream. A holder that lets go gives it to the database with its release
        (``p_evaluated_until``): its window then ends there, and the candles that closed after it (the
        one that closed as a tab was closing, those of a worker's final outbox drain) are the next
        holder's to sign, not nobody's. Streams never fed (still warming up) or failed are left out:
        they would hold the window's end back for the candles of every other stream, which would then
        be evaluated twice.
        """
        ends = (
            next_open_time(key[1], next_open_time(key[1], last))
            for key, last in self._last.items()
            if key in self._served
        )
        return min(ends, default=None)

    # -- the page's line ----------------------------------------------------------------------

    def describe(self, rejected: int = 0) -> str:
        """One line: streams, candles, failed streams, dropped messages."""
        streams = len(self._watched)
        candles = self.candles
        text = f"{streams} stream{'' if streams == 1 else 's'}, {candles} candle{'' if candles == 1 else 's'}"
        if self._failed:
            names = ", ".join(f"{s} {i}" for s, i in sorted(self._failed))
            n = len(self._failed)
            text += f"; {n} not served ({names}), retried"
        if rejected:
            text += f", {rejected} malformed message{'' if rejected == 1 else 's'} dropped"
        return text


def trader_problems(traders: Iterable[TraderRecord], problems: Mapping[Stream, str]) -> dict[str, str]:
    """Each enabled trader's problem line, from its streams' (traders with none left out).

    A trader with several failed streams gets their reasons joined; the line is cut to
    :data:`MAX_PROBLEM` characters. Invalid definitions are reported elsewhere (``TraderFailed``).
    """
    if not problems:
        return {}
    out: dict[str, str] = {}
    for record in traders:
        if not record.enabled:
            continue
        try:
            definition = parse_trader(record.definition)
        except TraderDefinitionError:
            continue
        reasons = [
            problems[(symbol, definition.interval)]
            for symbol in definition.symbols
            if (symbol, definition.interval) in problems
        ]
        if reasons:
            line = "; ".join(reasons)
            out[record.id.lower()] = line if len(line) <= MAX_PROBLEM else line[: MAX_PROBLEM - 1] + "…"
    return out


class ProblemReporter:
    """What to send to ``report_trader_problems`` so the database holds the executor's view.

    The executor reports under its live epoch. At a new epoch it sends every trader it runs (a line,
    or null to clear what an earlier holder left); after that only the changes. A failed send is sent
    again whole with the next plan.
    """

    def __init__(self) -> None:
        """Nothing sent yet."""
        self._sent: dict[str, str] = {}
        self._epoch: int | None = None

    def plan(
        self, problems: Mapping[str, str], running: Iterable[str], epoch: int | None
    ) -> dict[str, str | None]:
        """The ``p_problems`` to send now (empty: nothing to send; ``epoch`` None: not the executor)."""
        if epoch is None:
            return {}
        if epoch != self._epoch:
            payload: dict[str, str | None] = {t.lower(): None for t in running}
            payload.update(problems)
            return payload
        payload = {t: None for t in self._sent if t not in problems}
        payload.update({t: line for t, line in problems.items() if self._sent.get(t) != line})
        return payload

    def sent(self, payload: Mapping[str, str | None], epoch: int) -> None:
        """``payload`` was stored under ``epoch``."""
        if epoch != self._epoch:
            self._sent = {}
            self._epoch = epoch
        for trader, line in payload.items():
            if line is None:
                self._sent.pop(trader, None)
            else:
                self._sent[trader] = line

    def failed(self) -> None:
        """A send failed: start over with the next plan (everything again)."""
        self._sent = {}
        self._epoch = None
