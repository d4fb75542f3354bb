"""The execution guard: scenarios, the answer parser, and properties over random event sequences."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalguard.core.codes import GuardError
from signalguard.core.guard import (
    TRANSITIONS,
    Answered,
    Call,
    CallFailed,
    Effects,
    Event,
    ExecutionGuard,
    LeaseAnswer,
    Mode,
    ProtocolError,
    SchemaChecked,
    Shutdown,
    TabLock,
    TakeoverConfirmed,
    Tick,
    WriteRefused,
)


def answer(
    *,
    you_hold: bool = False,
    epoch: int = 0,
    expires_in: float = 0.0,
    reason: str | None = None,
    retry_in: float | None = None,
    takeover: bool = False,
    machine_status: str | None = "stopped",
    error_message: str | None = None,
) -> LeaseAnswer:
    return LeaseAnswer(you_hold, epoch, expires_in, reason, retry_in, takeover, machine_status, error_message)


def started(now: float = 0.0) -> ExecutionGuard:
    g = ExecutionGuard()
    g.process(SchemaChecked(()), now)
    g.process(TabLock(True), now)
    return g


def holding(now: float = 0.0, epoch: int = 3) -> ExecutionGuard:
    g = started(now)
    g.process(Answered(answer(epoch=epoch, you_hold=True, expires_in=30), sent_at=now), now)
    assert g.mode is Mode.BROWSER
    return g


# -- scenarios ------------------------------------------------------------------------------------


def test_start_free_claim_then_generate() -> None:
    g = started()
    mode, fx = g.process(Answered(answer(), sent_at=0), 0.1)
    assert mode is Mode.UNKNOWN and fx.call is Call.CLAIM and fx.call_in == 0 and not fx.may_generate
    mode, fx = g.process(Answered(answer(you_hold=True, epoch=7, expires_in=30), sent_at=0.2), 0.3)
    assert mode is Mode.BROWSER and fx.may_generate and fx.epoch == 7
    assert fx.badge == "Browser Mode" and fx.toast == "This browser is generating signals"
    # Renewal comes with the poll rhythm, well before the deadline.
    assert fx.call is Call.CLAIM and fx.call_in == 5.0


def test_the_windows_start_goes_with_the_epoch_while_generating() -> None:
    g = started()
    held = LeaseAnswer(True, 7, 30.0, None, None, False, "stopped", None, acquired_at_us=123_000_000)
    _, fx = g.process(Answered(held, sent_at=0.0), 0.1)
    assert (fx.may_generate, fx.epoch, fx.since_us) == (True, 7, 123_000_000)
    _, fx = g.process(Tick(), 31.0)  # past the deadline, unrenewed: neither epoch nor window
    assert (fx.may_generate, fx.epoch, fx.since_us) == (False, None, None)
    _, fx = g.process(Answered(answer(reason="cloud_healthy", machine_status="running"), sent_at=31), 31.1)
    assert fx.mode is Mode.CLOUD and fx.since_us is None


def test_a_holder_signs_from_the_gaps_start_when_the_database_gives_it() -> None:
    # The gap between the previous epoch's end and this grant is this holder's to sign (migration
    # gapless_handoff): the engine catches up from there, not from the window's start.
    g = started()
    held = LeaseAnswer(
        True,
        8,
        30.0,
        None,
        None,
        False,
        "stopped",
        None,
        acquired_at_us=123_000_000,
        signs_from_us=93_000_000,
    )
    _, fx = g.process(Answered(held, sent_at=0.0), 0.1)
    assert (fx.may_generate, fx.epoch, fx.since_us) == (True, 8, 93_000_000)
    assert held.emits_from_us == 93_000_000
    assert LeaseAnswer(True, 8, 30.0, None, None, False, None, None, acquired_at_us=5).emits_from_us == 5


def test_deadline_counts_from_when_the_request_was_sent() -> None:
    g = started()
    g.process(Answered(answer(you_hold=True, epoch=1, expires_in=30), sent_at=10.0), 12.5)
    assert g.may_generate(39.9)
    assert not g.may_generate(40.0)  # 10.0 + 30, not 12.5 + 30
    mode, fx = g.process(Tick(), 40.0)
    assert mode is Mode.OFFLINE and not fx.may_generate and fx.call is Call.STATUS and fx.call_in == 0
    assert fx.toast == "Connection lost — not generating"


def test_cloud_starting_stops_generation_with_toast() -> None:
    g = holding()
    mode, fx = g.process(Answered(answer(reason="cloud_starting", retry_in=29), sent_at=5), 5.1)
    assert mode is Mode.STARTING and not fx.may_generate and fx.epoch is None
    assert fx.badge == "Cloud starting…"
    assert fx.toast == "Cloud machine starting — this browser stops generating"
    mode, fx = g.process(Answered(answer(reason="cloud_healthy", retry_in=30), sent_at=10), 10.1)
    assert mode is Mode.CLOUD and fx.badge == "Cloud Active"
    assert fx.toast == "Cloud machine started — switching to monitoring mode"
    assert fx.call is Call.STATUS and fx.call_in == 5.0


def test_grace_counts_down_then_resumes() -> None:
    g = started()
    mode, fx = g.process(Answered(answer(reason="cloud_grace", retry_in=23.2), sent_at=0), 0.0)
    assert mode is Mode.GRACE and fx.badge == "Resuming in 24 s"
    assert fx.toast == "Cloud machine stopped — resuming in 24 s"
    _, fx = g.process(Tick(), 10.0)
    assert fx.badge == "Resuming in 14 s" and fx.toast is None and fx.call is Call.KEEP
    _, fx = g.process(Answered(answer(reason="cloud_grace", retry_in=3.0), sent_at=20), 20.0)
    assert fx.call is Call.STATUS and fx.call_in == 3.0  # poll right when the grace ends
    mode, fx = g.process(Answered(answer(), sent_at=23), 23.0)
    assert mode is Mode.GRACE and fx.call is Call.CLAIM
    mode, fx = g.process(Answered(answer(you_hold=True, epoch=4, expires_in=30), sent_at=23), 23.1)
    assert mode is Mode.BROWSER and fx.may_generate


def test_error_takeover_offered_then_confirmed() -> None:
    g = started()
    mode, fx = g.process(
        Answered(
            answer(reason="cloud_error_wait", retry_in=60, machine_status="error", error_message="OOM"),
            sent_at=0,
        ),
        0,
    )
    assert mode is Mode.ERROR and not fx.takeover_offered and fx.badge == "Cloud error"
    assert fx.toast == "Cloud machine error: OOM" and fx.detail == "OOM"
    _, fx = g.process(TakeoverConfirmed(), 1)
    assert fx.call is Call.KEEP  # not offered yet: nothing to confirm
    _, fx = g.process(
        Answered(
            answer(reason="takeover_needs_confirmation", takeover=True, machine_status="error"), sent_at=60
        ),
        60,
    )
    assert fx.takeover_offered and fx.badge == "Cloud error — take over?"
    _, fx = g.process(TakeoverConfirmed(), 61)
    assert fx.call is Call.CLAIM_CONFIRMED and fx.call_in == 0
    mode, fx = g.process(Answered(answer(you_hold=True, epoch=9, expires_in=30), sent_at=61), 61.1)
    assert mode is Mode.BROWSER and fx.epoch == 9 and not fx.takeover_offered


def test_network_loss_keeps_lease_until_deadline_only() -> None:
    g = holding(now=0)
    mode, fx = g.process(CallFailed("timeout"), 6)
    assert mode is Mode.BROWSER and fx.may_generate  # the lease is still ours until 30 s
    assert fx.call is Call.CLAIM and fx.call_in == 1.0
    for t in (8, 12, 17, 22, 27):
        mode, fx = g.process(CallFailed("timeout"), t)
    assert fx.call_in <= 30 - 27
    mode, fx = g.process(Tick(), 30)
    assert mode is Mode.OFFLINE and not fx.may_generate


def test_network_loss_when_not_holding_is_offline_with_backoff() -> None:
    g = started()
    delays = []
    for t in range(5):
        mode, fx = g.process(CallFailed("connection refused"), float(t))
        delays.append(fx.call_in)
    assert mode is Mode.OFFLINE and fx.badge == "Offline — not generating"
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    mode, fx = g.process(Answered(answer(), sent_at=10), 10)
    assert mode is Mode.UNKNOWN and fx.call is Call.CLAIM


def test_refused_write_moves_guard_at_once() -> None:
    g = holding()
    mode, fx = g.process(WriteRefused(GuardError.OUTSIDE_LEASE_WINDOW), 2)
    assert mode is Mode.UNKNOWN and not fx.may_generate
    assert fx.call is Call.STATUS and fx.call_in == 0
    # A refusal that says nothing about the lease (a malformed row) does not stop generation.
    g = holding()
    mode, fx = g.process(WriteRefused(GuardError.INVALID_TRANSITION), 2)
    assert mode is Mode.BROWSER and fx.may_generate


def test_without_the_tab_lock_never_claims() -> None:
    g = ExecutionGuard()
    g.process(SchemaChecked(()), 0)
    mode, fx = g.process(TabLock(False), 0)
    # What the tab with the lock does is the database's to say: until it answers, nothing is claimed.
    assert mode is Mode.UNKNOWN and fx.badge == "Checking…" and not fx.may_generate
    mode, fx = g.process(Answered(answer(), sent_at=1), 1)
    assert mode is Mode.STANDBY and fx.badge == "Another tab is generating"
    assert fx.call is Call.STATUS and not fx.may_generate
    # Even if the database said so, a tab without the lock does not generate.
    mode, fx = g.process(Answered(answer(you_hold=True, epoch=1, expires_in=30), sent_at=2), 2)
    assert mode is Mode.STANDBY and not fx.may_generate
    # The cloud's state is still shown to the mirroring tab.
    mode, fx = g.process(Answered(answer(reason="cloud_healthy"), sent_at=3), 3)
    assert mode is Mode.CLOUD
    # When the other tab closes, this one gets the lock and claims.
    g.process(Answered(answer(), sent_at=4), 4)
    mode, fx = g.process(TabLock(True), 5)
    assert fx.call is Call.CLAIM


def test_a_second_tab_while_the_cloud_generates_says_cloud_active() -> None:
    # However the tab lock's answer and the database's interleave, a tab without the lock shows the
    # cloud as the executor, never "Another tab is generating".
    for lock_first in (True, False):
        g = ExecutionGuard()
        g.process(SchemaChecked(()), 0)
        cloud = Answered(answer(reason="cloud_healthy", machine_status="running"), sent_at=0)
        events = [TabLock(False), cloud] if lock_first else [cloud, TabLock(False)]
        badges = [g.process(e, 0.1)[1].badge for e in events]
        assert "Another tab is generating" not in badges
        assert badges[-1] == "Cloud Active"


def test_other_device_holds_the_lease() -> None:
    g = started()
    mode, fx = g.process(Answered(answer(reason="held_by_other_local", retry_in=12), sent_at=0), 0)
    assert mode is Mode.STANDBY and fx.badge == "Another device is generating"


def test_missing_schema_generates_nothing_until_fixed() -> None:
    g = ExecutionGuard()
    problem = "The database lacks the 'execution_lease' schema: apply supabase/migrations/x.sql."
    mode, fx = g.process(SchemaChecked((problem,)), 0)
    assert mode is Mode.INCOMPATIBLE and fx.detail == problem and fx.call is Call.SCHEMA
    assert "apply supabase/migrations/x.sql" in (fx.toast or "")
    g.process(TabLock(True), 0)
    mode, fx = g.process(Answered(answer(you_hold=True, epoch=1, expires_in=30), sent_at=1), 1)
    assert mode is Mode.INCOMPATIBLE and not fx.may_generate
    mode, fx = g.process(SchemaChecked(()), 31)
    assert mode is Mode.UNKNOWN and fx.call is Call.STATUS


def test_shutdown_releases() -> None:
    g = holding()
    mode, fx = g.process(Shutdown(), 3)
    assert mode is Mode.UNKNOWN and not fx.may_generate and fx.call is Call.RELEASE


def test_unknown_refusal_reason_is_not_guessed() -> None:
    g = started()
    mode, fx = g.process(Answered(answer(reason="moon_phase"), sent_at=0), 0)
    assert mode is Mode.OFFLINE and not fx.may_generate and "moon_phase" in (fx.detail or "")


# -- parsing the database's answer ------------------------------------------------------------------

SERVER_ANSWER: dict[str, Any] = {
    "lease": {
        "live": True,
        "epoch": 4,
        "holder_id": "tab-1",
        "expires_at": "2026-11-21T09:20:01+00:00",
        "machine_id": None,
        "acquired_at": "2026-11-21T09:19:31+00:00",
        "holder_kind": "local",
        "expires_in_seconds": 29.5,
    },
    "reason": None,
    "granted": True,
    "healthy": False,
    "machine": {"id": "m", "status": "stopped", "error_message": None},
    "you_hold": True,
    "may_claim": True,
    "may_generate": True,
    "retry_in_seconds": None,
    "takeover_available": False,
}


def test_parse_server_answer() -> None:
    a = LeaseAnswer.from_json(SERVER_ANSWER)
    window = 1_795_252_771_000_000  # 2026-11-21T09:19:31Z: the epoch's window opened then
    expires = window + 30_000_000
    assert a == LeaseAnswer(
        True, 4, 29.5, None, None, False, "stopped", None, acquired_at_us=window, expires_at_us=expires,
        granted=True,
    )  # fmt: skip
    assert LeaseAnswer.from_json({**SERVER_ANSWER, "lease": {"epoch": 0}}).acquired_at_us is None
    gap = {**SERVER_ANSWER, "lease": {**SERVER_ANSWER["lease"], "signs_from": "2026-11-21T09:19:01+00:00"}}
    assert LeaseAnswer.from_json(gap).signs_from_us == window - 30_000_000
    assert a.signs_from_us is None and a.emits_from_us == window
    no_machine = LeaseAnswer.from_json({**SERVER_ANSWER, "machine": None})
    assert no_machine.machine_status is None


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"lease": None}, "lease: expected an object"),
        ({"you_hold": "yes"}, "you_hold: expected true or false"),
        ({"lease": {**SERVER_ANSWER["lease"], "epoch": -1}}, "epoch: expected a non-negative integer"),
        ({"retry_in_seconds": "soon"}, "retry_in_seconds: expected a number"),
        ({"reason": 5}, "reason: expected a string or null"),
        ({"machine": []}, "machine: expected an object or null"),
        ({"granted": 1}, "granted: expected true or false"),
    ],
)
def test_parse_rejects_malformed_answers(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        LeaseAnswer.from_json({**SERVER_ANSWER, **patch})


# -- properties --------------------------------------------------------------------------------------

REASONS = [
    None,
    "held_by_cloud",
    "cloud_healthy",
    "cloud_starting",
    "cloud_grace",
    "cloud_error_wait",
    "takeover_needs_confirmation",
    "held_by_other_local",
]

answers = st.builds(
    answer,
    you_hold=st.booleans(),
    epoch=st.integers(0, 50),
    expires_in=st.sampled_from([0.0, 5.0, 30.0]),
    reason=st.sampled_from(REASONS),
    retry_in=st.one_of(st.none(), st.floats(0, 120)),
    takeover=st.booleans(),
    machine_status=st.sampled_from([None, "running", "error", "stopped", "starting"]),
    error_message=st.sampled_from([None, "boom"]),
)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(Answered, answers, sent_at=st.just(0.0)),  # sent_at is fixed up per step below
    st.builds(CallFailed, st.sampled_from(["timeout", "HTTP 503"])),
    st.builds(WriteRefused, st.sampled_from(list(GuardError))),
    st.just(Tick()),
    st.just(TakeoverConfirmed()),
    st.builds(TabLock, st.booleans()),
    st.builds(SchemaChecked, st.sampled_from([(), ("missing x",)])),
)
steps = st.lists(st.tuples(events, st.floats(0, 20)), max_size=40)

HEALTHY_CLOUD = {"held_by_cloud", "cloud_healthy", "cloud_starting"}


@settings(max_examples=3000, deadline=None)
@given(steps)
def test_generation_only_in_browser_mode_before_the_deadline(seq: list[tuple[Event, float]]) -> None:
    g = ExecutionGuard()
    now = 0.0
    for event, dt in seq:
        sent = now
        now += dt
        if isinstance(event, Answered):
            event = Answered(event.answer, sent_at=sent)
        mode, fx = g.process(event, now)
        assert fx.mode is mode
        if fx.may_generate:
            assert mode is Mode.BROWSER and fx.epoch is not None and g.may_generate(now)
        else:
            assert fx.epoch is None
        if isinstance(event, Answered) and not event.answer.you_hold and event.answer.reason in HEALTHY_CLOUD:
            assert not fx.may_generate and not g.may_generate(now)
        assert fx.toast is None or fx.toast  # every toast has text
        assert fx.call_in >= 0


REPRESENTATIVE: list[Event] = [
    Answered(answer(), 0),
    Answered(answer(you_hold=True, epoch=1, expires_in=30), 0),
    *[Answered(answer(reason=r, takeover=True), 0) for r in REASONS if r],
    CallFailed("x"),
    WriteRefused(GuardError.LEASE_NOT_HELD),
    Tick(),
    TakeoverConfirmed(),
    TabLock(True),
    TabLock(False),
    SchemaChecked(()),
    SchemaChecked(("missing",)),
]


def test_every_mode_is_reachable_and_can_be_left() -> None:
    """Every sequence of up to three representative events: which modes appear, which are left."""
    reached: set[Mode] = {Mode.UNKNOWN}
    left: set[Mode] = set()
    for depth in (1, 2, 3):
        for path in itertools.product(REPRESENTATIVE, repeat=depth):
            g = ExecutionGuard()
            for i, event in enumerate(path):
                before = g.mode
                mode, _ = g.process(event, float(i))
                reached.add(mode)
                if mode is not before:
                    left.add(before)
    assert reached == set(Mode), set(Mode) - reached
    assert left == set(Mode), set(Mode) - left


def test_table_rows_name_real_modes_and_observations() -> None:
    for (mode, _obs), target in TRANSITIONS.items():
        assert mode is None or isinstance(mode, Mode)
        assert target is None or isinstance(target, Mode)


# -- two devices against one database: never both generating ------------------------------------


@dataclass
class FakeLeaseDb:
    """The lease rules that matter here: one holder, 30 s leases, new epoch on a new holder."""

    holder: str | None = None
    expires: float = 0.0
    epoch: int = 0

    def claim(self, who: str, now: float) -> LeaseAnswer:
        live = self.holder is not None and self.expires > now
        if live and self.holder != who:
            return answer(reason="held_by_other_local", retry_in=self.expires - now)
        if not live or self.holder != who:
            self.epoch += 1
        self.holder, self.expires = who, now + 30
        return answer(you_hold=True, epoch=self.epoch, expires_in=30)

    def status(self, who: str, now: float) -> LeaseAnswer:
        live = self.holder is not None and self.expires > now
        if live and self.holder == who:
            return answer(you_hold=True, epoch=self.epoch, expires_in=self.expires - now)
        if live:
            return answer(reason="held_by_other_local", retry_in=self.expires - now)
        return answer()

    def release(self, who: str, now: float) -> LeaseAnswer:
        if self.holder == who and self.expires > now:
            self.holder = None
        return self.status(who, now)


@dataclass(order=True)
class _Pending:
    at: float
    seq: int
    who: str = field(compare=False)
    kind: str = field(compare=False)
    payload: Any = field(compare=False, default=None)


@settings(max_examples=300, deadline=None)
@given(
    latencies=st.lists(st.floats(0.01, 12.0), min_size=200, max_size=200),
    failures=st.lists(st.booleans(), min_size=200, max_size=200),
)
def test_two_devices_never_generate_at_once(latencies: list[float], failures: list[bool]) -> None:
    db = FakeLeaseDb()
    guards = {"a": ExecutionGuard(), "b": ExecutionGuard()}
    seq = itertools.count()
    lat = iter(latencies * 10)
    fail = iter(failures * 10)
    queue: list[_Pending] = []
    for who, g in guards.items():
        g.process(SchemaChecked(()), 0)
        g.process(TabLock(True), 0)
        heapq.heappush(queue, _Pending(0.0, next(seq), who, "send", Call.STATUS))
    generated_by: set[str] = set()
    for _ in range(400):
        item = heapq.heappop(queue)
        now, who, g = item.at, item.who, guards[item.who]
        if item.kind == "send":
            call = item.payload
            # The request reaches the database after one latency, the answer comes back after another.
            arrive = now + next(lat)
            heapq.heappush(queue, _Pending(arrive, next(seq), who, "serve", (call, now)))
            fx: Effects | None = None
        elif item.kind == "serve":
            call, sent = item.payload
            if next(fail):
                result: Event = CallFailed("dropped")
            elif call is Call.STATUS:
                result = Answered(db.status(who, now), sent_at=sent)
            elif call is Call.RELEASE:
                result = Answered(db.release(who, now), sent_at=sent)
            else:
                result = Answered(db.claim(who, now), sent_at=sent)
            heapq.heappush(queue, _Pending(now + next(lat), next(seq), who, "answer", result))
            fx = None
        else:
            _, fx = g.process(item.payload, now)
        if fx is not None and fx.call not in (Call.KEEP, Call.NONE):
            heapq.heappush(queue, _Pending(now + fx.call_in, next(seq), who, "send", fx.call))
        # The invariant, at every instant something happens.
        generating = [w for w, gg in guards.items() if gg.may_generate(now)]
        assert len(generating) <= 1, (now, generating, db)
        if generating:
            assert db.holder == generating[0] and db.expires > now
            generated_by.update(generating)
    if not any(failures) and max(latencies) < 5:
        # With a working network somebody generates: the property is not vacuous.
        assert generated_by
