"""Catching up with a lease window: which candles may signal under which epoch, and the held-back matches.

A lease's window can open before the engine may emit: the claim's answer arrives a round trip after
the database opened the window, and a restarted executor renews the window its previous process held
(a cloud machine's lease outlives a killed worker by up to 30 s). The candles that closed in between
belong to the window, so their signals must still be written. So a stream's warm-up history is
:data:`EVALUATED_CANDLES` longer than the warm-up rule of :mod:`signalguard.core.traders` asks
(:func:`warm_up_candles`): the oldest candles prime the indicators, the newest are *evaluated* like
live candles (:func:`primed_candles` says where the split falls). While the engine may not emit, the
matches of evaluated candles are kept (:meth:`CatchUp.keep`; the last :data:`CATCH_UP_CANDLES`
candles with matches per stream). :meth:`CatchUp.set_lease` takes the window's start: at a grant, the
kept matches whose candle closed inside the window are released to be emitted under its epoch, and no
candle that closed before it is ever signalled under that epoch (the database would refuse it).
Without a window start, kept matches are dropped and historical candles are only kept.

Earlier windows of the same holder. A cloud machine killed while holding the lease keeps its window
open until the lease expires (30 s); if it comes back after that, it is granted a new epoch, and the
candles that closed in the tail of the old window were nobody else's to signal: the database accepts a
signal only under an epoch its writer held, with its candle inside that epoch's window. So
``set_lease`` also takes the earlier windows this holder held (:class:`LeaseWindow`, read from the
database's epoch history), and a kept or historical match whose candle closed inside one of them is
signalled under *that* epoch (:meth:`CatchUp.epoch_at`). Only the holder whose window it was can
write it, and only while it holds the live lease, so this never makes two executors.

:class:`CatchUp` holds the window and the kept matches; it creates no signal. The
:class:`~signalguard.core.engine.SignalManager` asks it, for each candle with matches, whether to
keep them or under which epoch to emit them, and emits what a grant releases.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from signalguard.core.candles import INTERVALS, Candle, next_open_time

#: Candles of each stream evaluated (not just primed) at warm-up, and candles with matches kept while the
#: engine may not emit: a window that opened up to this many candles ago is caught up. 60 covers the
#: 30 s lease twice over at the shortest interval (1s), and an hour at 1m.
CATCH_UP_CANDLES: Final = 60

#: Candles of each stream evaluated at warm-up: one more than :data:`CATCH_UP_CANDLES`, because the
#: gap a new epoch signs reaches back that many intervals from its grant *inclusive* (migration
#: ``gapless_handoff``: ``close >= started_at - 60 × interval``), which is 61 closes when the grant
#: falls on a candle boundary; the warm-up comes before the grant, so its newest 61 cover them all.
EVALUATED_CANDLES: Final = CATCH_UP_CANDLES + 1

#: How far before its window an epoch may sign at most (the database's ``private.catch_up_limit()``).
CATCH_UP_LIMIT_US: Final = 2 * 3600 * 1_000_000


def catch_up_horizon_us(interval: str) -> int:
    """How far before its window's start an epoch signs a stream's candles (µs): 2 h or 60 candles.

    The database's ``private.catch_up_horizon(interval)``; a candle that closed earlier is refused
    (``SG011``), so the engine does not emit it. A month has no fixed length: its horizon is 2 h.
    """
    length = INTERVALS.get(interval)
    return CATCH_UP_LIMIT_US if length is None else min(CATCH_UP_LIMIT_US, CATCH_UP_CANDLES * length * 1000)


#: The matches of one candle: (trader id, matched condition labels) per trader that signalled.
Matches = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class LeaseWindow:
    """An earlier epoch's window held by the same holder: ``[start_us, end_us)``, database clock (µs)."""

    epoch: int
    start_us: int
    end_us: int


@dataclass(frozen=True, slots=True)
class Release:
    """Kept matches a grant releases: emit them on ``candle`` under ``epoch``."""

    candle: Candle
    matches: Matches
    epoch: int


def close_us(candle: Candle) -> int:
    """When a candle closed, epoch microseconds (the database's unit for a window's start)."""
    return next_open_time(candle.interval, candle.open_time) * 1000


def warm_up_candles(history: int) -> int:
    """The closed candles to fetch for a stream whose traders' warm-up rule asks for ``history``."""
    return history + EVALUATED_CANDLES


def primed_candles(count: int, history: int) -> int:
    """Of ``count`` warm-up candles, how many (the oldest) only prime; the rest are evaluated.

    The warm-up rule's ``history`` are primed, since no indicator has settled before them; of the
    rest, at most :data:`EVALUATED_CANDLES`, the newest, are evaluated.
    """
    return max(min(count, history), count - EVALUATED_CANDLES)


@dataclass(slots=True)
class CatchUp:
    """The lease window this side may emit in, its earlier windows, and the matches held back."""

    # The live lease's epoch; None while this side may not generate.
    _epoch: int | None = None
    # From when the live epoch signs (database clock, µs: the gap's start, or the window's); None
    # when it is not known.
    _since_us: int | None = None
    # The live window's own start (µs), which the catch-up horizon counts back from; None: unknown.
    _started_us: int | None = None
    # Earlier windows of this holder (see set_lease), newest first.
    _earlier: tuple[LeaseWindow, ...] = ()
    # Matches of evaluated candles that were not emitted (not allowed to, or no window start known),
    # by stream. Released at a grant whose windows hold them.
    _kept: dict[tuple[str, str], deque[tuple[Candle, Matches]]] = field(default_factory=dict)

    @property
    def may_generate(self) -> bool:
        """Whether this side holds the lease and may emit."""
        return self._epoch is not None

    @property
    def epoch(self) -> int | None:
        """The live lease's epoch while this side may generate; None otherwise."""
        return self._epoch

    def set_lease(
        self,
        epoch: int | None,
        since_us: int | None,
        earlier: Iterable[LeaseWindow],
        started_us: int | None = None,
    ) -> list[Release]:
        """Hold the live lease's window (``epoch`` None: none); at a grant, release the kept matches.

        ``since_us`` is from when the epoch signs (the gap's start, or its window's), ``started_us``
        its window's own start (a gap candle further back than :func:`catch_up_horizon_us` is not
        signed), and ``earlier`` the holder's earlier windows, as
        :meth:`signalguard.core.engine.SignalManager.authorize` takes them. A grant is a new epoch, or
        one held again after a pause: the matches it releases come in candle order across streams, as
        they would have been emitted live, each with the epoch whose window holds its candle; the
        others are dropped. A renewal of the same epoch releases nothing, and losing the lease keeps
        what is kept for the next grant.
        """
        renewed = epoch is not None and epoch == self._epoch
        self._epoch = epoch
        self._since_us = since_us if epoch is not None else None
        self._started_us = started_us if epoch is not None else None
        self._earlier = (
            tuple(
                sorted(
                    (w for w in earlier if w.epoch != epoch and w.start_us < w.end_us),
                    key=lambda w: w.end_us,
                    reverse=True,
                )
            )
            if epoch is not None and since_us is not None
            else ()
        )
        if epoch is None or renewed:
            return []
        kept, self._kept = self._kept, {}
        if self._since_us is None:
            return []  # no window start: which of them the window holds is unknown
        out = []
        entries = sorted(
            itertools.chain.from_iterable(kept.values()), key=lambda e: (close_us(e[0]), e[0].symbol)
        )
        for candle, matches in entries:
            held = self.epoch_at(candle)
            if held is not None:
                out.append(Release(candle, matches, held))
        return out

    def may_emit(self, *, historical: bool) -> bool:
        """Whether a candle's matches may be emitted now (otherwise :meth:`keep` them).

        Not without the lease; and a historical (warm-up) candle not without the window's start,
        since whether the window holds it is unknown.
        """
        return self._epoch is not None and not (historical and self._since_us is None)

    def epoch_at(self, candle: Candle) -> int | None:
        """The epoch ``candle``'s signals are emitted under, or None if no window this holder held has it.

        The live epoch for a candle that closed in the live window (or when its start is unknown: a
        live candle closed after the grant); an earlier window's epoch for one that closed inside it.
        """
        closed = close_us(candle)
        if self._since_us is None or closed >= self._since_us:
            started = self._started_us
            if started is not None and closed < started - catch_up_horizon_us(candle.interval):
                return None  # in the gap, but beyond the horizon the database allows
            return self._epoch
        for window in self._earlier:
            if window.start_us <= closed < window.end_us:
                return window.epoch
        return None

    def keep(self, candle: Candle, matches: Matches) -> None:
        """Hold a candle's matches back for the next grant (the stream's newest candles only)."""
        stream = (candle.symbol, candle.interval)
        kept = self._kept.get(stream)
        if kept is None:
            kept = self._kept[stream] = deque(maxlen=CATCH_UP_CANDLES)
        kept.append((candle, matches))
