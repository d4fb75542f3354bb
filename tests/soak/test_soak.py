"""The short handoff soak: the whole system under at least 50 nemesis events, then the history checker.

The run is :mod:`soakkit`'s (the long one is ``python -m bench.soak --events 200 --seed N``). The seed is
fixed so that a failure replays with the printed command; ``SIGNALGUARD_SOAK_SEED`` and
``SIGNALGUARD_SOAK_EVENTS`` choose another run. The verdict printed counts every violation.

What this test lets through: the violations of the findings that have a regression test of their own
(``test_soak_findings.py``, strict xfails: when a finding is fixed its test passes, fails as an
unexpected pass, and its entry below is removed with the xfail marker). Any other violation fails.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from soakkit import SoakOptions, run_soak

pytestmark = pytest.mark.stack

SEED = int(os.environ.get("SIGNALGUARD_SOAK_SEED", "20251003"))
EVENTS = max(50, int(os.environ.get("SIGNALGUARD_SOAK_EVENTS", "50")))

#: (kind, cause) of each known finding -> the regression test that pins it.
KNOWN = {
    ("lost_signal", "unflushed at SIGKILL"): "test_signals_a_worker_generated_survive_its_sigkill",
    ("lost_signal", "holder down (killed)"): "test_a_restarted_worker_generates_for_its_renewed_window",
    ("trade_exit_not_by_rule", "adopted after its exit candle closed"): (
        "test_an_adopted_trade_exits_by_its_rule_after_a_gap"
    ),
}


@pytest.mark.timeout(600)
def test_the_short_soak() -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="signalguard-soak-"))
    result = run_soak(SoakOptions(seed=SEED, events=EVENTS, log_dir=log_dir))
    verdict = result.verdict
    # The run did what a soak is for: many events, handoffs both ways, signals and trades to judge.
    assert sum(verdict.events_by_kind.values()) == EVENTS
    assert verdict.figures["handoffs_between_kinds"] >= 2, verdict.report()
    assert verdict.figures["signals_checked"] >= 100, verdict.report()
    assert verdict.figures["trades_closed"] >= 20, verdict.report()
    known = {k: n for k, n in verdict.by_cause().items() if k in KNOWN}
    for (kind, cause), n in sorted(known.items()):
        print(f"known finding {kind} [{cause}]: {n} (pinned by {KNOWN[(kind, cause)]})")
    unknown = [v for v in verdict.violations if (v.kind, v.cause) not in KNOWN]
    assert not unknown, (
        f"{len(unknown)} violations beyond the known findings (seed {SEED}, logs and history.json in "
        f"{log_dir}):\n" + verdict.report()
    )
