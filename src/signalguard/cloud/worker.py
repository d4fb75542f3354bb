"""The cloud worker: start-up and handoff, heartbeat and lease, traders, market data, writes, stop.

Life of a worker (:meth:`CloudWorker.run`)::

    schema check ─▶ heartbeat 'starting' ─▶ load traders, open the market feed (warm-up) ─┐
    ┌──────────────────────────────────────────────────────────────────────────────────────┘
    └▶ claim the cloud lease every 2 s while a browser holds it ('local_lease_live': the browser sees
       'starting' within 5 s and yields, or its lease runs out within 30 s)
       ─▶ granted: heartbeat 'running', generate under the epoch the database returned
       ─▶ every 10 s: heartbeat + claim again (the renewal); a candle's new signals and trades are
          written as soon as its burst is drained, status changes every 10 s (one batch each);
          every 30 s: reload the traders
       after each write (and when a retry is due): the user's webhook deliveries, claimed, posted and
          recorded under the held epoch (signalguard.webhooks)
    SIGTERM/SIGINT ─▶ stop generating, heartbeat 'stopping', write what is queued (at most 10 s),
                      release the lease, heartbeat 'stopped' (sets stopped_at), exit 0; at most
                      Timings.stop_deadline (22 s). What could not be written is logged, and the
                      release ends the window before the oldest unsent signal's candle, so that the
                      next holder's gap signs it again
    unexpected error ─▶ stop generating, write what is queued (at most 5 s), heartbeat 'error' with
                        the message (ends the lease), exit 1

The worker writes nothing before it holds the lease: the engine is fed from the start (so its
indicators and cooldowns match the browser's), but emits only while the core's ``LeaseKeeper`` says
so, and only for candles that closed inside the held window. Generation stops at once on a refused
claim, on a guard verdict about a write, and when renewals have failed for the lease's length counted
from the last successful renewal's send time.

Nothing generated under the lease is lost to a crash. New signals are written within a fraction of a
second (not at the next 10 s flush), so a SIGKILL loses at most the batch in flight; and a worker
restarted while its machine's lease still runs renews the same epoch, whose window opened under the
previous process: the engine's warm-up evaluates its newest candles, and the signals of those that
closed inside the window are written at the grant (the signal key absorbs the ones already there). See
:mod:`signalguard.core.engine`, "Catching up with a window".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from signalguard.cloud.config import Timings, WorkerConfig
from signalguard.cloud.database import (
    Database,
    DatabaseError,
    DatabaseRefused,
    DatabaseUnavailable,
    SupabaseDatabase,
)
from signalguard.cloud.health import HealthServer
from signalguard.cloud.market import BinanceMarketData, MarketData
from signalguard.cloud.sync import FlushReport, StateSynchronizer
from signalguard.cloud.webhooks import HttpxPoster, rpc_port
from signalguard.core.candles import timestamp_us
from signalguard.core.codes import WEBHOOKS, GuardError
from signalguard.core.engine import LeaseWindow, SignalManager, TraderRecord, sort_effects
from signalguard.core.feed import ProblemReporter, Stream, trader_problems
from signalguard.core.lease import LeaseKeeper
from signalguard.core.outbox import EntryKind, Rejection
from signalguard.core.ports import HttpPoster
from signalguard.core.positions import TradeBook
from signalguard.market.feed import MarketFeed
from signalguard.webhooks import DeliveryProblem, DeliverySummary, WebhookDriver

__all__ = ["CloudWorker", "SchemaMismatch", "WorkerStats", "run_worker"]

log = logging.getLogger("signalguard.cloud")

#: REST requests in flight at once during a market catch-up (Binance weighs a klines request at 2 of
#: 6000 a minute, a limit the shared request path keeps; a machine may watch hundreds of streams).
REST_CONCURRENCY: Final = 8

T = TypeVar("T")


class SchemaMismatch(RuntimeError):
    """The database lacks a schema component this worker needs (the message names the migration)."""


@dataclass(slots=True)
class WorkerStats:
    """Figures for the log and for tests."""

    #: Seconds from start to the first granted lease.
    lease_after: float | None = None
    #: Refusal reasons seen before the first grant, in order, without repeats.
    waited_for: tuple[str, ...] = ()
    #: Open signals adopted from the database at new leases.
    adopted: int = 0
    #: Open trades taken over from the database (at new leases and re-checks).
    trades_adopted: int = 0
    #: Seconds the stop took (SIGTERM to 'stopped').
    stop_took: float | None = None


class CloudWorker:
    """One user's cloud machine; see the module documentation."""

    def __init__(
        self,
        config: WorkerConfig,
        db: Database,
        market: MarketData,
        *,
        timings: Timings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        poster: HttpPoster | None = None,
    ) -> None:
        """Prepare a worker; :meth:`run` runs it. ``db``, ``market``, ``poster`` stay the caller's to close.

        ``poster`` posts the user's webhooks (:class:`~signalguard.cloud.webhooks.HttpxPoster` in
        :func:`run_worker`); without one the worker delivers none.
        """
        self.config = config
        self.timings = timings or Timings()
        self.db = db
        self._clock = clock
        self.manager = SignalManager(config.owner_id)
        self.keeper = LeaseKeeper(self.timings.lease, self.timings.lease_margin)
        self.sync = StateSynchronizer(
            db,
            config.machine_id,
            on_verdict=self._on_verdict,
            live_epoch=lambda: self.keeper.epoch,
            clock=clock,
        )
        self.feed = MarketFeed(
            market,
            self.manager,
            self._route_effects,
            wall=wall,
            on_problems=self._on_problems,
            backoff=self.timings.backoff,
            rest_concurrency=REST_CONCURRENCY,
            max_connection_age=self.timings.stream_max_age,
        )
        self.webhooks = (
            None
            if poster is None
            else WebhookDriver(
                rpc_port(db),
                poster,
                stack_urls=(config.supabase_url,),
                on_problem=self._on_webhook_problem,
                timeout=self.timings.webhook_post,
                backoff=self.timings.backoff,
            )
        )
        #: What the webhook deliveries came to so far (the database's outcomes, counted).
        self.webhook_outcomes: Counter[str] = Counter()
        self._deliver_soon = asyncio.Event()
        self._records: list[TraderRecord] = []
        self._stream_problems: dict[Stream, str] = {}
        self._reporter = ProblemReporter()
        self.stats = WorkerStats()
        #: The machine status this worker reports with each heartbeat.
        self.status = "starting"
        self.stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._reclaim = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._write_soon = asyncio.Event()
        self._streams_changed = asyncio.Event()
        self._traders_key: list[tuple[str, str, str, bool]] | None = None
        self._authorized: tuple[bool, int | None] = (False, None)
        # This machine's windows before the held epoch (read at each new epoch): the engine signals the
        # candles that closed in their tails under them (a killed worker back after its lease expired).
        self._earlier: list[LeaseWindow] = []
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._failing_since: float | None = None
        self._trades_checked = clock()
        self._started = clock()
        #: When the database last answered (the worker's clock); ``None`` until it first does.
        self.db_answered_at: float | None = None
        #: The last claim's refusal reason while not holding the lease (``None`` once granted).
        self.lease_refusal: str | None = None
        #: When a flush last wrote a batch that the database answered in full.
        self.last_write_at: float | None = None

    def now(self) -> float:
        """The worker's clock (monotonic seconds): what :mod:`.health` measures ages against."""
        return self._clock()

    @property
    def started_at(self) -> float:
        """When :meth:`run` began, on the worker's clock."""
        return self._started

    @property
    def stream_problems(self) -> dict[Stream, str]:
        """The market streams that fail now, with why."""
        return dict(self._stream_problems)

    # -- running ----------------------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        """Begin the orderly stop (what SIGTERM and SIGINT do)."""
        if self._stop.is_set():
            log.info("%s: already stopping", reason)
            return
        self.stop_reason = reason
        self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; return the exit code (0 after an orderly stop, 1 after an error)."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self.request_stop, sig.name)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                    continue
                installed.append(sig)
        self._started = self._clock()
        try:
            return await self._run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()

    async def _run(self) -> int:
        work = asyncio.create_task(self._work(), name="signalguard-cloud-work")
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():  # a stop was requested (or this call is being cancelled)
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if not work.cancelled() and (exc := work.exception()) is not None:
            return await self._fail(_root(exc))
        return await self._shutdown()

    async def _work(self) -> None:
        problems = await self._retry("checking the schema", self.db.schema_problems)
        if problems:
            raise SchemaMismatch(" ".join(problems))
        await self._retry("the first heartbeat", lambda: self.db.heartbeat("starting"))
        log.info(
            "machine %s of user %s: starting; market data %s",
            self.config.machine_id,
            self.config.owner_id,
            self.config.market_data_url,
        )
        self._apply_traders(await self._retry("loading the traders", self.db.load_traders))
        async with asyncio.TaskGroup() as group:
            group.create_task(self._lease_loop(), name="lease")
            group.create_task(self._market_loop(), name="market")
            group.create_task(self._flush_loop(), name="flush")
            group.create_task(self._traders_loop(), name="traders")
            group.create_task(self._webhook_loop(), name="webhooks")

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Call until the database answers (transient failures only; verdicts propagate)."""
        attempts = 0
        while True:
            try:
                answer = await call()
                self.db_answered_at = self._clock()
                return answer
            except DatabaseUnavailable as exc:
                attempts += 1
                delay = self.timings.backoff.delay(attempts)
                if attempts == 1 or attempts % 10 == 0:
                    log.warning("%s failed (%s); retrying in %.0f s", what, exc, delay)
            await asyncio.sleep(delay)

    async def _pause(self, seconds: float, wake: asyncio.Event) -> bool:
        """Sleep ``seconds``, or less if ``wake`` is set; True if it was (it is cleared on return)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
        woken = wake.is_set()
        wake.clear()
        return woken

    # -- the lease --------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        waited: list[str] = []
        while not await self._lease_cycle(waited):
            await self._pause(self.timings.claim_retry, self._reclaim)
        self.stats.lease_after = self._clock() - self._started
        self.stats.waited_for = tuple(waited)
        log.info(
            "lease granted: epoch %s, %.1f s after start%s",
            self.keeper.epoch,
            self.stats.lease_after,
            f" (waited: {', '.join(waited)})" if waited else "",
        )
        self.status = "running"
        while True:
            ok = await self._lease_cycle(waited)
            await self._pause(self.timings.heartbeat if ok else self.timings.claim_retry, self._reclaim)

    async def _lease_cycle(self, waited: list[str]) -> bool:
        """Heartbeat, then claim (or renew); apply the answer. True if the worker holds the lease."""
        try:
            await self.db.heartbeat(self.status)
            sent_at = self._clock()
            answer = await self.db.claim_lease()
        except DatabaseUnavailable as exc:
            if self._failing_since is None:
                self._failing_since = self._clock()
                log.warning(
                    "heartbeat/renewal failed (%s); retrying every %.0f s", exc, self.timings.claim_retry
                )
            self._authorize()
            return False
        self.db_answered_at = self._clock()
        self.lease_refusal = None if answer.granted else (answer.reason or "refused")
        if self._failing_since is not None:
            log.info("the database answers again after %.1f s", self._clock() - self._failing_since)
            self._failing_since = None
            self._flush_now.set()  # what failed in the meantime need not wait out its back-off
        new_epoch = False
        if answer.granted:
            new_epoch = self.keeper.granted(answer, sent_at)
            if new_epoch and self.stats.lease_after is not None:  # the first grant: see the lease loop
                log.info("holding the lease again, under epoch %d", answer.epoch)
            if new_epoch:
                self._earlier = await self._earlier_windows(answer.epoch)
        else:
            reason = answer.reason or "refused"
            if self.keeper.epoch is not None:
                log.warning("the lease was refused (%s): not generating", reason)
            elif not waited or waited[-1] != reason:
                log.info(
                    "waiting for the lease: %s%s",
                    reason,
                    f" (retry in {answer.retry_in_seconds:.1f} s)" if answer.retry_in_seconds else "",
                )
            if self.stats.lease_after is None and (not waited or waited[-1] != reason):
                waited.append(reason)
            self.keeper.drop(reason)
        self._authorize()
        if new_epoch:
            await self._adopt()  # after authorizing: the candles arriving meanwhile are the lease's
        elif answer.granted and self._clock() - self._trades_checked >= self.timings.trades_recheck:
            await self._adopt_trades()
        return answer.granted

    async def _earlier_windows(self, epoch: int) -> list[LeaseWindow]:
        """The machine's own windows before ``epoch``; none if they cannot be read promptly.

        Bounded: generation under the new epoch waits for this answer (the candles arriving meanwhile
        are kept, not lost), and without it only the tails of earlier windows go unfilled.
        """
        try:
            async with asyncio.timeout(self.timings.earlier_windows):
                return await self.db.earlier_windows(epoch)
        except (DatabaseError, TimeoutError) as exc:
            why = str(exc) or "no answer"
            log.warning("earlier lease windows not read (%s): their tails are not caught up", why)
            return []

    async def _adopt(self) -> None:
        """Track the user's open signals and manage their open trades under the new lease.

        They are another executor's, or a previous run's.
        """
        try:
            signals = await self.db.load_open_signals()
            book = await self.db.load_trades()
        except DatabaseUnavailable as exc:
            log.warning("could not load open signals and trades to adopt: %s", exc)
            return
        before = len(self.manager.tracked())
        self.manager.adopt(signals)
        adopted = len(self.manager.tracked()) - before
        self.stats.adopted += adopted
        if adopted:
            log.info("adopted %d open signal%s", adopted, "" if adopted == 1 else "s")
        await self._adopt_trades(book)

    async def _adopt_trades(self, book: TradeBook | None = None) -> None:
        """Manage the open trades the database holds that this worker does not.

        At a new lease, and every ``trades_recheck`` seconds: an open that landed after the last read
        (an outbox replayed late) is then not orphaned.
        """
        if book is None:
            try:
                book = await self.db.load_trades()
            except DatabaseUnavailable as exc:
                log.warning("could not re-read the open trades: %s", exc)
                return
        held = {t.key for t in self.manager.open_trades()}
        self.manager.adopt_trades(book.open, book.traded)
        new = [t for t in book.open if t.key not in held]
        self.stats.trades_adopted += len(new)
        if new:
            log.info("managing %d open trade%s from the database", len(new), "" if len(new) == 1 else "s")
        self._trades_checked = self._clock()
        # A trade on a stream no trader watches restarts the feed (StreamsChanged), which fetches the
        # candles it missed; otherwise they are fetched here.
        if not self._route_effects():
            await self.feed.fill_trades()

    def _authorize(self) -> None:
        """Tell the engine what the keeper says now, and wake up again at the keeper's deadline."""
        now = self._clock()
        may = self.keeper.may_generate(now)
        decision = (may, self.keeper.epoch if may else None)
        if decision != self._authorized:
            epoch = decision[1]
            caught_up = self.manager.caught_up
            earlier = self.manager.caught_up_earlier
            since = self.keeper.window_start_us(epoch) if epoch is not None else None
            opened = self.keeper.window_opened_us(epoch) if epoch is not None else None
            self.manager.authorize(may, epoch, since, self._earlier if may else (), opened)
            self._authorized = decision
            if may:
                log.info("generating under epoch %s", epoch)
                if self.manager.caught_up > caught_up:
                    n = self.manager.caught_up - caught_up
                    log.info(
                        "caught up %d signal%s of candles that closed before this process could generate "
                        "(%d in earlier windows of this machine)",
                        n,
                        "" if n == 1 else "s",
                        self.manager.caught_up_earlier - earlier,
                    )
                self._route_effects()
            elif self.keeper.renewed_sent_at is not None:
                log.warning("not generating: no lease renewal for %.1f s", now - self.keeper.renewed_sent_at)
            else:
                # Losing the lease while running is worth a warning; starting or stopping is not.
                level = logging.WARNING if self.status == "running" else logging.INFO
                log.log(level, "not generating: %s", self.keeper.reason or "not holding the lease")
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        deadline = self.keeper.deadline
        if may and deadline is not None:
            self._deadline_timer = asyncio.get_running_loop().call_later(
                max(0.0, deadline - now), self._authorize
            )

    def _on_verdict(self, verdicts: Sequence[GuardError], rejections: Sequence[Rejection]) -> None:
        codes = ", ".join(sorted({v.value for v in verdicts}))
        log.error(
            "the database refused writes as not the executor's (%s): stopping generation, re-claiming", codes
        )
        self.keeper.drop(f"guard verdict {codes}")
        self._authorize()
        self._reclaim.set()

    # -- traders and market data ------------------------------------------------------------------

    def _apply_traders(self, records: list[TraderRecord]) -> None:
        key = sorted((r.id, r.name, json.dumps(r.definition, sort_keys=True), r.enabled) for r in records)
        if key == self._traders_key:
            return
        self.manager.set_traders(records)
        self._traders_key = key
        self._records = records
        self._route_effects()  # the streams to watch (StreamsChanged) restart the feed
        streams = len(self.manager.streams())
        log.info(
            "traders: %d enabled, watching %d stream%s", len(records), streams, "" if streams == 1 else "s"
        )

    async def _traders_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timings.traders_poll)
            try:
                records = await self.db.load_traders()
            except DatabaseUnavailable as exc:
                log.warning("reloading the traders failed (%s); keeping the current ones", exc)
                continue
            self._apply_traders(records)

    async def _market_loop(self) -> None:
        while True:
            self._streams_changed.clear()
            feed = asyncio.create_task(self.feed.run(), name="feed")
            changed = asyncio.create_task(self._streams_changed.wait())
            try:
                await asyncio.wait({feed, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                if not feed.done():
                    feed.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feed
            if not feed.cancelled() and (exc := feed.exception()) is not None:
                raise exc

    def _route_effects(self) -> bool:
        """Move the engine's effects to the synchronizer (or the log); True if the streams changed."""
        drained = sort_effects(self.manager.drain())
        for write in drained.writes:
            self.sync.add(write)
        if drained.new_rows:
            self._write_soon.set()
        for failed in drained.failed:
            log.warning(
                "trader %s (%s) taken out of service: %s: %s",
                failed.trader_id,
                failed.name,
                failed.code,
                failed.message,
            )
        if drained.streams is None:
            return False
        self.feed.need(drained.streams.needs)
        self._streams_changed.set()
        return True

    # -- writes -----------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            # Woken early when the database answers again after failing (retry the head right away,
            # whatever its back-off), and when a candle brought new signals or trades: those are
            # written within ``signal_write`` seconds, one batch for the whole candle burst, so that a
            # crash loses none that the database would have accepted. Status changes ride along, or
            # wait for the 10 s rhythm.
            waits = {
                asyncio.create_task(self._flush_now.wait()): True,
                asyncio.create_task(self._write_soon.wait()): False,
            }
            try:
                done, _ = await asyncio.wait(
                    waits, timeout=self.timings.flush, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in waits:
                    task.cancel()
            force = self._flush_now.is_set()
            if self._write_soon.is_set() and not force:
                await asyncio.sleep(self.timings.signal_write)  # the rest of the burst
            self._flush_now.clear()
            self._write_soon.clear()
            report = await self.sync.flush(force=force)
            if report.batches and not report.failed:
                self.last_write_at = self._clock()
            if report.batches or report.failed or not done:
                self._log_flush(report)
            await self._report_problems()
            # The signals just written may have webhook deliveries: the webhook loop claims them (in
            # a task of its own, so that a slow receiver never holds up the next signal's write).
            self._deliver_soon.set()

    # -- webhooks ---------------------------------------------------------------------------------

    async def _webhook_loop(self) -> None:
        """Deliver the user's due webhooks while generating.

        After each flush, when a retry is due, and at least every ``flush`` seconds (a delivery another
        holder left in flight comes due without a write of this one).
        """
        wait = self.timings.flush
        while True:
            await self._pause(wait, self._deliver_soon)
            wait = self.timings.flush
            epoch = self.keeper.epoch
            if (
                self.webhooks is None
                or epoch is None
                or not self.keeper.may_generate(self._clock())
                or not self.db.has_component(WEBHOOKS)
            ):
                continue
            summary = await self.webhooks.deliver_due(epoch)
            self._log_webhooks(summary)
            if summary.more:
                wait = 0.0
            elif summary.next_retry_in is not None:
                wait = min(wait, summary.next_retry_in)

    def _log_webhooks(self, summary: DeliverySummary) -> None:
        self.webhook_outcomes.update(summary.recorded)
        if summary.claimed:
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.recorded.items()))
            log.info("webhooks: %d claimed (%s)", summary.claimed, outcomes or "nothing recorded")

    def _on_webhook_problem(self, problem: DeliveryProblem) -> None:
        if problem.kind != "delivery":
            # A claim or record refused for want of the lease is the lease loop's business; the rows
            # come due again for whoever holds it.
            log.warning("webhooks: %s", problem.message)
        elif problem.final:
            log.warning("webhook delivery of %s failed: %s", problem.signal_key, problem.message)
        else:
            log.info("webhook delivery of %s not done yet: %s", problem.signal_key, problem.message)

    def _on_problems(self, problems: dict[Stream, str]) -> None:
        """The feed's failed streams changed: the database hears it with the next flush."""
        if problems != self._stream_problems:
            self._stream_problems = dict(problems)
            self._write_soon.set()

    async def _report_problems(self) -> None:
        """Tell the database which traders do not generate and why (only while holding the lease)."""
        epoch = self.keeper.epoch
        problems = trader_problems(self._records, self._stream_problems)
        payload = self._reporter.plan(problems, (r.id for r in self._records if r.enabled), epoch)
        if not payload or epoch is None:
            return
        try:
            await self.db.report_trader_problems(epoch, payload)
        except DatabaseError as exc:
            log.warning("reporting the traders' market-data problems failed (tried again): %s", exc)
            self._reporter.failed()
            return
        self._reporter.sent(payload, epoch)
        for trader, line in payload.items():
            if line is not None:
                log.warning("trader %s does not generate: %s", trader, line)

    def _log_flush(self, report: FlushReport) -> None:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
        outcomes = outcomes or ("nothing answered" if report.failed else "nothing to write")
        failed = f"; failed: {report.failed}" if report.failed else ""
        log.info(
            "flush: %d batch%s (%s)%s; queued %d; totals: %s; engine matches %d; candles %d, malformed %d",
            report.batches,
            "" if report.batches == 1 else "es",
            outcomes,
            failed,
            len(self.sync),
            self.sync.counters.summary(),
            self.manager.matches,
            self.feed.candles,
            self.feed.parser.rejected,
        )

    # -- stopping ---------------------------------------------------------------------------------

    async def _best_effort(self, what: str, call: Awaitable[T]) -> T | None:
        try:
            async with asyncio.timeout(self.timings.stop_call):
                return await call
        except (DatabaseError, TimeoutError) as exc:
            log.warning("%s failed: %s", what, exc)
            return None

    def _stop_generating(self, reason: str) -> None:
        self.keeper.drop(reason)
        self._authorize()
        self._route_effects()

    async def _shutdown(self) -> int:
        started = self._clock()
        log.info("stopping (%s)", self.stop_reason)
        self.status = "stopping"
        # Where evaluation stops, read as generation stops: the candles that close while the outbox
        # drains are the next holder's to sign, and the release says so.
        evaluated_until = (
            self.feed.planner.evaluated_until() if self.keeper.may_generate(self._clock()) else None
        )
        self._stop_generating("stopping")
        await self._best_effort("heartbeat 'stopping'", self.db.heartbeat("stopping"))
        if not await self.sync.drain(self.timings.stop_flush):
            unsent = self.sync.unsent()
            log.error("%d writes could not be sent before the stop; unsent: %s", len(self.sync), unsent)
            earliest = _earliest_signal_candle_ms(unsent)
            if evaluated_until is not None and earliest is not None and earliest < evaluated_until:
                # End the window before the oldest unsent signal's candle: the next holder's gap then
                # covers it and signs it again (its key absorbs any copy that did land).
                log.warning("the lease's window ends before the oldest unsent signal's candle")
                evaluated_until = earliest
        answer = await self._best_effort("releasing the lease", self.db.release_lease(evaluated_until))
        await self._best_effort("heartbeat 'stopped'", self.db.heartbeat("stopped"))
        self.status = "stopped"
        self.stats.stop_took = self._clock() - started
        log.info(
            "stopped in %.1f s (lease %s); %s; unsent %d",
            self.stats.stop_took,
            "released" if answer is not None and not answer.you_hold else "not released",
            self.sync.counters.summary(),
            len(self.sync),
        )
        return 0

    async def _fail(self, exc: BaseException) -> int:
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, DatabaseRefused | SchemaMismatch):
            # A verdict on this machine's configuration or database: the message says it all.
            log.error("cannot run: %s", message)
        else:
            log.error("unexpected error: %s", message, exc_info=exc)
        self.status = "error"
        try:
            self._stop_generating("error")
        except Exception as again:  # the engine itself may be what failed
            log.error("could not drain the engine: %s", again)
        try:
            if not await self.sync.drain(self.timings.error_flush):
                log.error("%d writes could not be sent; unsent: %s", len(self.sync), self.sync.unsent())
        except Exception as again:
            log.error("could not write what was queued: %s", again)
        await self._best_effort("heartbeat 'error'", self.db.heartbeat("error", message))
        log.info("exiting after the error; %s", self.sync.counters.summary())
        return 1


async def _identify(db: SupabaseDatabase, config: WorkerConfig, timings: Timings) -> WorkerConfig | None:
    """With a machine key: ask the database whose machine this is, until it answers.

    ``None`` if it refuses; the reason is logged (a revoked key, a database without machine keys).
    """
    attempts = 0
    while True:
        try:
            owner, machine = await db.identify()
        except DatabaseRefused as exc:
            log.error("cannot run: %s", exc)
            return None
        except DatabaseUnavailable as exc:
            attempts += 1
            delay = timings.backoff.delay(attempts)
            if attempts == 1 or attempts % 10 == 0:
                log.warning(
                    "asking the database whose machine this key is failed (%s); retrying in %.0f s",
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            continue
        log.info("the machine key is machine %s's, of user %s", machine, owner)
        return dataclasses.replace(config, owner_id=owner, machine_id=machine)


def _earliest_signal_candle_ms(unsent: str) -> int | None:
    """The open time (ms) of the oldest candle among the unsent new signals of :meth:`unsent`'s JSON."""
    known: list[int] = []
    for entry in json.loads(unsent):
        if entry.get("kind") != EntryKind.SIGNAL.value:
            continue
        value = entry.get("payload", {}).get("candle_open_time")
        if isinstance(value, int):  # the engine's rows: epoch milliseconds
            known.append(value)
        elif (us := timestamp_us(value)) is not None:
            known.append(us // 1000)
    return min(known) if known else None


def _root(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) task-group exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _start_health(worker: CloudWorker, config: WorkerConfig) -> HealthServer | None:
    """Serve ``GET /health`` if configured; ``None`` if not served.

    An address in use is logged, not fatal: the signals matter more than the check, and the platform's
    check failing makes the problem visible anyway.
    """
    if config.health_port is None:
        return None
    server = HealthServer(worker, config.health_host, config.health_port)
    try:
        await server.start()
    except OSError as exc:
        log.error(
            "SIGNALGUARD_HEALTH_PORT: cannot listen on %s:%d (%s); running without a health check",
            config.health_host,
            config.health_port,
            exc,
        )
        return None
    return server


async def run_worker(config: WorkerConfig, *, timings: Timings | None = None) -> int:
    """Connect to Supabase and the market, run a :class:`CloudWorker` until it stops; the exit code."""
    timings = timings or Timings()
    db = await SupabaseDatabase.connect(config, timeout=timings.request_timeout)
    if config.machine_key:
        identified = await _identify(db, config, timings)
        if identified is None:
            await db.aclose()
            return 1
        config = identified
    market = BinanceMarketData(
        config.market_data_url,
        config.market_stream_url,
        timeout=timings.request_timeout,
        stall=timings.stream_stall,
        ping_interval=timings.stream_ping,
        ping_timeout=timings.stream_ping_timeout,
    )
    poster = HttpxPoster()
    worker = CloudWorker(config, db, market, timings=timings, poster=poster)
    health = await _start_health(worker, config)
    try:
        return await worker.run()
    finally:
        if health is not None:
            await health.close()
        await poster.aclose()
        await market.aclose()
        await db.aclose()
