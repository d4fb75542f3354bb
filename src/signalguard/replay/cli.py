"""``signalguard replay``: serve candles from files or a synthetic series as Binance does, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, datetime

from signalguard.replay.series import CandleFileError, Series, load_files
from signalguard.replay.server import HOST, ReplayServer
from signalguard.replay.synthetic import Planted, generate

DEFAULT_PORT = 9443  # Binance's stream port: easy to recognise in a client's settings
_SHOWN_SETUPS = 10


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``replay``."""
    replay = sub.add_parser(
        "replay",
        help="serve a Binance-compatible market-data replay on 127.0.0.1 until Ctrl-C",
        description="Serve candles as Binance's /api/v3/klines and kline streams. The history ends at "
        "the latest interval boundary when the server starts; live candles then close at real interval "
        "boundaries (at --speed 1), so their close times suit the database's checks.",
    )
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--file",
        action="append",
        metavar="PATH",
        help="a candle file (repeatable): Binance data-dump CSV named SYMBOL-INTERVAL-....csv (or .zip), "
        "or the JSON form",
    )
    source.add_argument("--synthetic", action="store_true", help="a random walk with planted setups")
    replay.add_argument(
        "--symbols", default="BTCUSDT,ETHUSDT", help="synthetic: comma-separated (default %(default)s)"
    )
    replay.add_argument("--interval", default="1m", help="synthetic: kline interval (default %(default)s)")
    replay.add_argument(
        "--candles", type=int, default=2000, help="synthetic: candles per symbol (default %(default)s)"
    )
    replay.add_argument("--seed", type=int, default=1, help="synthetic: random seed (default %(default)s)")
    replay.add_argument(
        "--history",
        type=int,
        default=None,
        help="closed candles served before streaming starts (default: 1000, or half a shorter series)",
    )
    replay.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="candles arrive this many times faster; above 1 their times run ahead of the clock, "
        "so the database refuses their signals (default %(default)s)",
    )
    replay.add_argument(
        "--partial-updates",
        type=int,
        default=None,
        metavar="K",
        help='unclosed ("x": false) updates before each closed candle (default: 1 below 1m, else 3)',
    )
    replay.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1; 0 picks one (default %(default)s)"
    )
    replay.add_argument("--loop", action="store_true", help="start over when the candles run out")
    replay.add_argument(
        "--refuse",
        type=int,
        choices=(451, 429, 418),
        default=None,
        metavar="STATUS",
        help="answer every request with this HTTP status instead, as Binance does: 451 (region blocked), "
        "429 (request limit reached) or 418 (banned); to try a client's handling of them",
    )
    replay.add_argument(
        "--retry-after",
        type=int,
        default=None,
        metavar="SECONDS",
        help="with --refuse 429 or 418: the Retry-After header's seconds (default: none sent)",
    )
    replay.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """Load or generate the candles, then serve them until Ctrl-C or SIGTERM."""
    planted: tuple[Planted, ...] = ()
    try:
        if args.file:
            series = load_files(args.file)
        else:
            symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
            synthetic = generate(symbols, interval=args.interval, candles=args.candles, seed=args.seed)
            series, planted = synthetic.series, synthetic.planted
        server = ReplayServer(
            series,
            history=args.history,
            speed=args.speed,
            partial_updates=args.partial_updates,
            loop=args.loop,
            port=args.port,
        )
        if args.retry_after is not None and (args.refuse is None or args.retry_after < 0):
            raise ValueError("--retry-after needs --refuse 429 or 418, and 0 or more seconds")
        server.refuse(args.refuse, args.retry_after)
    except (CandleFileError, ValueError) as exc:
        print(f"signalguard replay: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(server, series, planted))
    except OSError as exc:  # the port is taken
        print(f"signalguard replay: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(server: ReplayServer, series: Series, planted: tuple[Planted, ...]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        _print_banner(server, series, planted)
        await stop.wait()
        print("stopping…", flush=True)
    finally:
        await server.stop()


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_banner(server: ReplayServer, series: Series, planted: tuple[Planted, ...]) -> None:
    replay = server.replay
    streams = [f"{symbol.lower()}@kline_{series.interval}" for symbol in series.symbols]
    lengths = sorted({len(bars) for bars in series.bars.values()})
    print(f"signalguard replay — DEVELOPMENT ONLY, bound to {HOST}")
    print(
        f"  {', '.join(series.symbols)} on {series.interval}: {'/'.join(map(str, lengths))} candles, "
        f"{replay.history} of them history; speed {replay.speed:g}{', looping' if replay.loop else ''}"
    )
    print()
    print(f"  REST base:  {server.url:<24}  (in place of https://api.binance.com)")
    print(f"  WS base:    {server.ws_url:<24}  (in place of wss://stream.binance.com:9443)")
    print(f"  e.g.        {server.url}/api/v3/klines?symbol={series.symbols[0]}&interval={series.interval}")
    print(f"              {server.ws_url}/ws/{streams[0]}")
    print(f"              {server.ws_url}/stream?streams={'/'.join(streams)}")
    print()
    if server.refusing is not None:
        print(f"  Every request is answered HTTP {server.refusing} (--refuse).")
    print(f"  History ends {_utc(replay.open_time(replay.history))}; the first live candle closes at")
    print(f"  {_utc(replay.open_time(replay.history) + replay.interval)} by the replay's clock.")
    live = [p for p in planted if p.index >= replay.history]
    if planted:
        print(f"  Planted setups: {len(planted)}, {len(live)} in the live part; the next ones (close time):")
        for p in live[:_SHOWN_SETUPS]:
            close = replay.open_time(p.index) + replay.interval
            print(f"    {_utc(close)}  {p.symbol:<10} {p.setup.value:<13} candle {p.index}")
    print()
    print("  Press Ctrl-C to stop.", flush=True)
