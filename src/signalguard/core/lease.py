"""The cloud worker's view of its lease: whether it may generate now, and under which epoch.

It sits beside the browser's :class:`~signalguard.core.guard.ExecutionGuard` and reads the same
:class:`~signalguard.core.guard.LeaseAnswer`.

The database is the judge; this only remembers its last answer and how old it is:

- a granted claim records the epoch, the epoch's window start (``acquired_at``, by the database clock)
  and the *send* time of the claim. The database stamped the lease after it received the call, so
  ``send time + lease length`` is no later than the database's own expiry: generating stops at that
  deadline (less a margin for the distance between the exchange's clock, which times candles, and
  the database's), whether or not the renewals that should have extended it are still in flight;
- a refused claim, a verdict on a write (the lease moved) or a stop ends generation at once; only a
  new grant starts it again, always under the epoch that grant returned;
- :meth:`LeaseKeeper.window_start_us` is from when the held epoch signs candles, which the engine
  takes with its authorization: the start of the gap before the epoch where the database gives it
  (``signs_from``, so that the candles that closed between the previous holder's end and this grant
  are evaluated too), else when the epoch's window opened. The engine never emits for a candle that
  closed before (the database would refuse it, ``SG002``), and catches up the ones after it.

Times: ``now`` and ``sent_at`` are the worker's monotonic clock (seconds); window times are the
database's (epoch microseconds), compared with candle close times (exchange epoch milliseconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from signalguard.core.guard import LeaseAnswer

__all__ = ["LeaseKeeper"]


@dataclass(slots=True)
class LeaseKeeper:
    """See the module documentation."""

    #: The database's lease length (``private.lease_ttl()``), seconds.
    lease_seconds: float = 30.0
    #: Generation stops this long before the renewal-based deadline, seconds.
    margin: float = 1.0
    #: The held epoch, or None when the worker does not (or no longer may assume it does) hold the lease.
    epoch: int | None = None
    #: Monotonic send time of the last granted claim.
    renewed_sent_at: float | None = None
    #: Why the worker does not hold the lease (the last refusal, failure or verdict), for the log.
    reason: str | None = "not claimed yet"
    _windows: dict[int, int] = field(default_factory=dict)
    _opened: dict[int, int] = field(default_factory=dict)

    def granted(self, answer: LeaseAnswer, sent_at: float) -> bool:
        """Record a granted claim sent at ``sent_at``; True if it is a new epoch (not a renewal)."""
        new = answer.epoch != self.epoch
        self.epoch = answer.epoch
        self.renewed_sent_at = sent_at
        self.reason = None
        if answer.emits_from_us is not None:
            # The gap's start where the database gives one: this epoch signs from there.
            self._windows[answer.epoch] = answer.emits_from_us
            # Only recent epochs matter (signals still queued); keep the map small.
            for old in sorted(self._windows)[:-8]:
                del self._windows[old]
        if answer.acquired_at_us is not None:
            self._opened[answer.epoch] = answer.acquired_at_us
            for old in sorted(self._opened)[:-8]:
                del self._opened[old]
        return new

    def drop(self, reason: str) -> None:
        """The worker does not hold the lease (refused, released, verdict); a new grant is needed."""
        self.epoch = None
        self.renewed_sent_at = None
        self.reason = reason

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which generation must stop unless a renewal lands first."""
        if self.epoch is None or self.renewed_sent_at is None:
            return None
        return self.renewed_sent_at + self.lease_seconds - self.margin

    def may_generate(self, now: float) -> bool:
        """Whether the worker may generate at ``now``."""
        deadline = self.deadline
        return deadline is not None and now < deadline

    def window_opened_us(self, epoch: int) -> int | None:
        """When ``epoch``'s own window opened (database clock, epoch µs), if this worker was granted it."""
        return self._opened.get(epoch)

    def window_start_us(self, epoch: int) -> int | None:
        """From when ``epoch`` signs candles (database clock, epoch µs), if this worker was granted it."""
        return self._windows.get(epoch)
