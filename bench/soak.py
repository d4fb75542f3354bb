"""The long handoff soak: ``python -m bench.soak --events 200 --seed N``.

The same run as ``tests/soak/test_soak.py`` (see ``tests/soak/soakkit.py``), with as many events as
asked. It prints the seed, every event as it is applied, then the checker's figures and every violation
by kind; the exit status is 0 only if there is no violation of any kind. Each run keeps its logs
(``events.log``, ``worker.log``, the pages' console errors) and its whole history (``history.json``) in
its log folder; ``--recheck FOLDER/history.json`` judges that history again without running anything.

The exactly-once property (every candle evaluated by exactly one executor; see ``tests/soak/checker.py``)
is always reported: judged candles, missed, duplicated, and where the misses fell. A miss is a violation
once the database reports the ``gapless_handoff`` schema component; ``--exactly-once require`` makes it
one regardless (to judge an older run by the new rule), ``--exactly-once report`` never.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT / "tests" / "soak", ROOT / "tests" / "e2e"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from checker import Rules, check  # noqa: E402
from soakdb import load_history  # noqa: E402
from soakkit import SoakOptions, run_soak  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="nemesis events to apply (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="the seed of the nemesis and the market")
    parser.add_argument("--quiet", type=float, default=30.0, help="quiet seconds before the check")
    parser.add_argument(
        "--long-stop",
        type=float,
        default=0.05,
        help="probability that a SIGSTOP outlasts the lease (35 s); default 0.05",
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="where the logs go (default: a temp dir)")
    parser.add_argument(
        "--exactly-once",
        choices=("auto", "require", "report"),
        default="auto",
        help="whether a missed evaluation is a violation: as the database says (auto: the gapless_handoff "
        "component), always, or never",
    )
    parser.add_argument(
        "--recheck",
        type=Path,
        metavar="HISTORY_JSON",
        help="judge a finished run's history.json again (no stack, no browser) and print the verdict",
    )
    args = parser.parse_args(argv)
    rules = Rules(exactly_once={"auto": None, "require": True, "report": False}[args.exactly_once])
    if args.recheck is not None:
        try:
            history = load_history(args.recheck)
        except OSError as exc:
            print(f"--recheck: cannot read {args.recheck}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except (ValueError, KeyError, TypeError) as exc:
            # Not a history this soak wrote (malformed JSON, missing or mistyped fields).
            print(f"--recheck: {args.recheck} is not a soak history: {exc!r}", file=sys.stderr)
            return 2
        verdict = check(history, rules)
        print(verdict.report(examples=1000))
        return 0 if verdict.ok else 1
    result = run_soak(
        SoakOptions(
            seed=args.seed,
            events=args.events,
            quiet=args.quiet,
            long_stop=args.long_stop,
            log_dir=args.log_dir,
            rules=rules,
        )
    )
    return 0 if result.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
