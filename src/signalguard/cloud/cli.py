"""``signalguard cloud``: run the cloud worker, configured by environment (see :mod:`.config`).

Exit codes: 0 after an orderly stop (SIGTERM/SIGINT), 1 after an unexpected error (reported to the
database as the machine's ``error`` status first), 2 for a bad or missing configuration (one line on
stderr naming the variable) or an installation without the ``cloud`` extra.

``signalguard cloud --check [--symbols BTCUSDT,ETHUSDT] [--interval 1m]`` checks the configured market
data instead (:mod:`.check`, one line a finding) and exits 0 when the worker could use it, 1 when not,
2 for a bad setting; it needs only the market data's settings.

Only the standard library and :mod:`.config` are imported here, so registering the command costs
nothing; supabase-py, httpx and websockets load when the worker starts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from typing import Any

from signalguard.cloud.config import ConfigError, load_config, load_market_urls

__all__ = ["add_commands", "configure_logging", "run"]

_VARIABLES = """\
environment:
  SIGNALGUARD_SUPABASE_URL        the Supabase project URL (required)
  SIGNALGUARD_SUPABASE_ANON_KEY   the project's anon API key (required)
  SIGNALGUARD_MACHINE_KEY         the machine's key, made in the page (or, instead:)
  SIGNALGUARD_MACHINE_TOKEN       the machine's JWT: sub = owner, machine_id = cloud_machines.id
  SIGNALGUARD_MARKET_DATA_URL     Binance REST base (default https://api.binance.com)
  SIGNALGUARD_MARKET_STREAM_URL   kline WebSocket base (default: derived from the REST base)
  SIGNALGUARD_LOG_LEVEL           DEBUG, INFO (default), WARNING or ERROR
  SIGNALGUARD_HEALTH_PORT         GET /health's port (default 8080; 0 or off: none)
  SIGNALGUARD_HEALTH_HOST         the address it listens on (default 127.0.0.1; the image: 0.0.0.0)

exit codes: 0 stopped by SIGTERM/SIGINT (within 22 s), 1 unexpected error, 2 bad configuration
  with --check: 0 the market data is usable, 1 it is not, 2 bad configuration
"""

#: Binance's symbol names: upper-case letters and digits (a few have more; none has a comma).
_SYMBOL = re.compile(r"[A-Z0-9_.-]{1,20}")


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
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the configured market data (SIGNALGUARD_MARKET_DATA_URL, SIGNALGUARD_MARKET_STREAM_URL) "
        "and exit: one line per finding; 0 usable, 1 not, 2 bad configuration",
    )
    parser.add_argument(
        "--symbols",
        default="",
        metavar="A,B",
        help="with --check: the symbols whose klines and stream to check (default BTCUSDT, or the first "
        "listed)",
    )
    parser.add_argument(
        "--interval", default="1m", help="with --check: the kline interval to check (default %(default)s)"
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


def run(args: argparse.Namespace) -> int:
    """Run the worker until it stops; return the exit code. Never raises (see the module docstring)."""
    if getattr(args, "check", False):
        return check(args)
    if getattr(args, "symbols", "") or getattr(args, "interval", "1m") != "1m":
        print("signalguard cloud: --symbols and --interval go with --check", file=sys.stderr)
        return 2
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


def check(args: argparse.Namespace) -> int:
    """``signalguard cloud --check``: print the market data's findings; 0 usable, 1 not, 2 bad settings."""
    from signalguard.core.candles import SUPPORTED_INTERVALS

    try:
        rest_url, stream_url = load_market_urls(os.environ)
    except ConfigError as exc:
        print(f"signalguard cloud --check: {exc}", file=sys.stderr)
        return 2
    symbols = [s.strip().upper() for s in str(args.symbols).split(",") if s.strip()]
    bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
    if bad:
        print(
            f"signalguard cloud --check: --symbols has a name that is not a symbol: {bad[0]!r:.40}",
            file=sys.stderr,
        )
        return 2
    if args.interval not in SUPPORTED_INTERVALS:
        print(
            f"signalguard cloud --check: --interval must be a Binance interval (1m, 5m, 1h, ...), "
            f"got {args.interval!r:.20}",
            file=sys.stderr,
        )
        return 2
    try:
        from signalguard.cloud.check import check_market
        from signalguard.cloud.market import BinanceMarketData
    except ImportError as exc:
        print(
            f"signalguard cloud: the cloud extra is not installed ({exc}); install 'signalguard[cloud]'",
            file=sys.stderr,
        )
        return 2
    # The worker's own messages (a region fallback) are findings here, printed once as such.
    logging.getLogger("signalguard.cloud.market").setLevel(logging.ERROR)

    async def checked() -> bool:
        market = BinanceMarketData(rest_url, stream_url, timeout=10.0)
        try:
            return await check_market(
                market,
                symbols=symbols,
                interval=args.interval,
                out=lambda finding: print(finding.line, flush=True),
            )
        finally:
            await market.aclose()

    print(f"market data: REST {rest_url}, streams {stream_url}", flush=True)
    usable = asyncio.run(checked())
    print(
        "usable: the worker can run on this market data" if usable else "not usable: see the FAIL lines above"
    )
    return 0 if usable else 1
