"""``signalguard cloud``: run the cloud worker, configured by environment (see :mod:`.config`).

Exit codes: 0 after an orderly stop (SIGTERM/SIGINT), 1 after an unexpected error (reported to the
database as the machine's ``error`` status first), 2 for a bad or missing configuration (one line on
stderr naming the variable) or an installation without the ``cloud`` extra.

Only the standard library and :mod:`.config` are imported here, so registering the command costs
nothing; supabase-py, httpx and websockets load when the worker starts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from signalguard.cloud.config import ConfigError, load_config

__all__ = ["add_commands", "configure_logging", "run"]

_VARIABLES = """\
environment:
  SIGNALGUARD_SUPABASE_URL        the Supabase project URL (required)
  SIGNALGUARD_SUPABASE_ANON_KEY   the project's anon API key (required)
  SIGNALGUARD_MACHINE_TOKEN       the machine's JWT: sub = owner, machine_id = cloud_machines.id (required)
  SIGNALGUARD_MARKET_DATA_URL     Binance REST base (default https://api.binance.com)
  SIGNALGUARD_MARKET_STREAM_URL   kline WebSocket base (default: derived from the REST base)
  SIGNALGUARD_LOG_LEVEL           DEBUG, INFO (default), WARNING or ERROR

exit codes: 0 stopped by SIGTERM/SIGINT, 1 unexpected error, 2 bad configuration
"""


def add_commands(sub: Any) -> None:
    """Register ``cloud`` on the ``signalguard`` command's subparsers."""
    parser = sub.add_parser(
        "cloud",
        help="run the cloud worker (configured by environment)",
        description=(
            "Run the user's cloud machine: claim the execution lease, stream market data, generate "
            "signals and write them while the database says this machine is the executor."
        ),
        epilog=_VARIABLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run)


def configure_logging(level: str) -> None:
    """One line per event on stderr, with a timestamp; HTTP client chatter only at DEBUG."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    if level != "DEBUG":
        # httpx logs every request at INFO: a heartbeat every 10 s would drown the worker's own lines.
        for noisy in ("httpx", "httpcore", "hpack", "websockets"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def run(_args: argparse.Namespace) -> int:
    """Run the worker until it stops; return the exit code. Never raises (see the module docstring)."""
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        print(f"signalguard cloud: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    try:
        from signalguard.cloud.worker import run_worker
    except ImportError as exc:
        print(
            f"signalguard cloud: the cloud extra is not installed ({exc}); install 'signalguard[cloud]'",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(run_worker(config))
    except Exception:
        # run_worker reports errors itself; this is what escaped it (e.g. creating the client).
        logging.getLogger("signalguard.cloud").exception("the worker failed")
        return 1
