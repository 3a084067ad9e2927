"""`cmdc-nb`: the command line. Each sub-command is a thin wrapper over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from cmdc_nb.demo import run_demo

    print(run_demo(args.home, url=args.url))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import cmdc_nb

    ws = cmdc_nb.connect(args.url, home=args.home)
    print(f"{ws.url_display}: schema up to date")
    ws.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cmdc-nb", description="Run, watch and study AI agents.")
    parser.add_argument("--home", help="data directory (default: $CMDC_NB_HOME or ~/.local/share/cmdc_nb)")
    parser.add_argument("--url", help="database URL (default: $CMDC_NB_DATABASE_URL or SQLite in --home)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="create a workspace, a user and a session, and print a summary").set_defaults(
        func=_demo
    )
    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(func=_migrate)
    args = parser.parse_args(argv)
    from cmdc_nb.errors import CmdcError

    try:
        return int(args.func(args))
    except CmdcError as exc:
        print(f"cmdc-nb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
