"""``signalguard dev``, ``signalguard reset`` and ``signalguard token``: the local stack's commands."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from signalguard.devstack.config import StackConfig
from signalguard.devstack.demo_market import describe as describe_demo_market
from signalguard.devstack.demo_market import serving_demo_market
from signalguard.devstack.gateway import Mail
from signalguard.devstack.postgres import StackError
from signalguard.devstack.stack import DEMO_PASSWORD, DEMO_USERS, LocalStack


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the local stack's subcommands."""
    dev = sub.add_parser("dev", help="run the local stack (development only) until Ctrl-C")
    dev.add_argument(
        "--port",
        type=int,
        default=None,
        help="the gateway's port (default $SIGNALGUARD_PORT or 8000)",
    )
    dev.set_defaults(func=cmd_dev)

    reset = sub.add_parser("reset", help="delete the local stack's state (database, secrets, logs)")
    reset.set_defaults(func=cmd_reset)

    token = sub.add_parser("token", help="print a token signed with the local stack's secret")
    token.add_argument("kind", choices=["user", "machine", "anon", "service"])
    token.add_argument("email", nargs="?", help="the user (for user and machine tokens)")
    token.set_defaults(func=cmd_token)


def cmd_dev(args: argparse.Namespace) -> int:
    """Start the stack (and the demo market data), print where it is, and stop everything on Ctrl-C."""
    try:
        config = StackConfig() if args.port is None else StackConfig(gateway_port=args.port)
    except ValueError as exc:  # a malformed SIGNALGUARD_* setting: its name and what is wrong
        print(f"signalguard dev: {exc}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as market:
        if config.demo_market:
            try:
                market.enter_context(serving_demo_market(config.replay_port))
            except OSError as exc:
                print(
                    f"signalguard dev: SIGNALGUARD_REPLAY_PORT: cannot serve the demo market data on "
                    f"port {config.replay_port} ({exc.strerror or exc}); stop what listens there, choose "
                    "another port, or set SIGNALGUARD_MARKET_DATA_URL",
                    file=sys.stderr,
                )
                return 2
        return _run_dev(config)


def print_mail(mail: Mail) -> None:
    """A mail the stack would have sent, as one line of the command's output (its link is the point)."""
    print(mail.line, flush=True)


def _run_dev(config: StackConfig) -> int:
    stack = LocalStack(config, on_mail=print_mail)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("signalguard local stack — DEVELOPMENT ONLY, bound to 127.0.0.1", flush=True)
    report = stack.start()
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in report.timings.items())
    print(f"  started in {report.total:.2f} s ({steps})")
    if report.created_cluster:
        print(f"  new database in {config.state_dir}")
    for name in report.migrations_applied:
        print(f"  applied migration {name}")
    print()
    print(f"  App:       {stack.url}/")
    print(f"  REST API:  {stack.url}/rest/v1")
    print(f"  Sign-in:   {stack.url}/auth/v1")
    print(f"  Anon key:  {config.anon_key()}")
    if config.demo_market:
        print(f"  Market:    {config.market_data_url} ({describe_demo_market()};")
        print("             real data: SIGNALGUARD_MARKET_DATA_URL=https://api.binance.com make dev)")
    else:
        print(f"  Market:    {config.market_data_url} (SIGNALGUARD_MARKET_DATA_URL)")
    print()
    print(f"  Demo users (password: {DEMO_PASSWORD}):")
    for email, what in DEMO_USERS:
        print(f"    {email:<26} {what}")
    print()
    print("  Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            for name, proc in (
                ("postgres", stack.postgres.process),
                ("PostgREST", stack.postgrest.process),
            ):
                if proc is not None and proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    stop.set()
    finally:
        print("stopping…", flush=True)
        stack.stop()
    return 0


def cmd_reset(_args: argparse.Namespace) -> int:
    """Wipe the state folder."""
    stack = LocalStack(StackConfig())
    if stack.postgres.data_dir.joinpath("postmaster.pid").exists():
        print("The local stack seems to be running; stop it first (Ctrl-C).", file=sys.stderr)
        return 1
    stack.reset()
    print(f"removed {stack.config.state_dir}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print a token: anon/service keys need no running stack; user/machine tokens read the DB."""
    config = StackConfig()
    if args.kind == "anon":
        print(config.anon_key())
        return 0
    if args.kind == "service":
        print(config.service_key())
        return 0
    if not args.email:
        print(f"`token {args.kind}` needs the user's email", file=sys.stderr)
        return 2
    stack = LocalStack(config)
    try:
        print(stack.user_token(args.email) if args.kind == "user" else stack.machine_token(args.email))
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:  # the database is not running
        print(
            f"cannot read the local database ({exc.__class__.__name__}); is `make dev` running?",
            file=sys.stderr,
        )
        return 1
    return 0
