"""The cloud's lease keeper: its deadline counts from the renewal's send time; a verdict drops it."""

from __future__ import annotations

import pytest

from signalguard.core.guard import LeaseAnswer, ProtocolError
from signalguard.core.lease import LeaseKeeper


def granted(epoch: int, acquired_at_us: int | None = None) -> LeaseAnswer:
    return LeaseAnswer(
        you_hold=True,
        epoch=epoch,
        expires_in_seconds=30.0,
        reason=None,
        retry_in_seconds=None,
        takeover_available=False,
        machine_status="running",
        error_message=None,
        acquired_at_us=acquired_at_us,
        granted=True,
    )


def test_keeper_deadline_counts_from_the_renewals_send_time() -> None:
    keeper = LeaseKeeper(lease_seconds=30.0, margin=1.0)
    assert not keeper.may_generate(0.0)
    answer = granted(7, acquired_at_us=5_000_000)
    assert keeper.granted(answer, sent_at=100.0) is True
    assert keeper.may_generate(128.9) and not keeper.may_generate(129.0)
    assert keeper.granted(answer, sent_at=110.0) is False  # a renewal: same epoch
    assert keeper.deadline == 139.0
    assert keeper.window_start_us(7) == 5_000_000 and keeper.window_start_us(6) is None
    keeper.drop("guard verdict SG001")
    assert keeper.epoch is None and not keeper.may_generate(111.0) and keeper.reason == "guard verdict SG001"


def test_the_keeper_signs_from_the_gaps_start_when_the_database_gives_it() -> None:
    keeper = LeaseKeeper()
    answer = granted(9, acquired_at_us=50_000_000)
    with_gap = LeaseAnswer(
        you_hold=True, epoch=9, expires_in_seconds=30.0, reason=None, retry_in_seconds=None,
        takeover_available=False, machine_status="running", error_message=None,
        acquired_at_us=50_000_000, granted=True, signs_from_us=20_000_000,
    )  # fmt: skip
    keeper.granted(with_gap, sent_at=1.0)
    assert keeper.window_start_us(9) == 20_000_000
    keeper.granted(answer, sent_at=2.0)  # a database without the gap rule: the window's own start
    assert keeper.window_start_us(9) == 50_000_000


def test_the_keeper_remembers_only_recent_windows() -> None:
    keeper = LeaseKeeper()
    for epoch in range(1, 21):
        keeper.granted(granted(epoch, acquired_at_us=epoch * 1_000_000), sent_at=float(epoch))
    assert keeper.window_start_us(20) == 20_000_000 and keeper.window_start_us(13) == 13_000_000
    assert keeper.window_start_us(12) is None


def test_one_answer_type_reads_the_claims_of_both_sides() -> None:
    lease = {
        "epoch": 4,
        "expires_in_seconds": 29.5,
        "acquired_at": "2026-12-06T10:00:00+00:00",
        "expires_at": "2026-12-06T10:00:30+00:00",
    }
    claim = {
        "you_hold": True,
        "granted": True,
        "takeover_available": False,
        "lease": lease,
        "machine": None,
        "reason": None,
        "retry_in_seconds": None,
    }
    answer = LeaseAnswer.from_json(claim)
    assert answer.granted and answer.you_hold and answer.epoch == 4
    assert answer.expires_at_us is not None and answer.acquired_at_us is not None
    assert answer.expires_at_us - answer.acquired_at_us == 30_000_000
    # A status poll is no claim: not granted, whatever it says of the lease.
    status = {k: v for k, v in claim.items() if k != "granted"}
    assert not LeaseAnswer.from_json(status).granted
    with pytest.raises(ProtocolError, match="granted"):
        LeaseAnswer.from_json(claim | {"granted": "yes"})
