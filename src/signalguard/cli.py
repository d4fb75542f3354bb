"""The ``signalguard`` command."""

from __future__ import annotations

import argparse
import sys

from signalguard import schemastatus


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand."""
    parser = argparse.ArgumentParser(prog="signalguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        from signalguard.devstack import cli as devstack_cli
    except ImportError:  # installed without the devstack extra (e.g. the cloud image)
        pass
    else:
        devstack_cli.add_commands(sub)
    try:
        from signalguard.replay import cli as replay_cli
    except ImportError:  # installed without aiohttp (the devstack extra)
        pass
    else:
        replay_cli.add_commands(sub)
    try:
        from signalguard.devstack import site as site_cli
    except ImportError:  # a build without the devstack package
        pass
    else:
        site_cli.add_commands(sub)
    # Plain Python: psycopg or httpx load only when the check runs.
    schemastatus.add_commands(sub)
    try:
        from signalguard.cloud import cli as cloud_cli
    except ImportError:  # a build without the cloud package
        pass
    else:
        cloud_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        # The local stack's errors are for people: one line, no traceback. (Imported here, and only
        # if installed: the cloud image has no devstack dependencies.)
        try:
            from signalguard.devstack.postgres import StackError
        except ImportError:
            raise exc from None
        if isinstance(exc, StackError):
            print(f"signalguard: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
