"""Search for sentinel secrets where they must never be.

A sentinel is a random token put into API-key variables (and, in the notebook runs, sent to a provider)
so that any place it turns up later is a leak. `needles` spells it the ways a leak could hide it —
plain, UTF-16, JSON-escaped, base64 at each of the three alignments, hex — and `scan_tree` counts every
spelling in every file under a folder (databases with their WAL, logs, exported notebooks, artifacts).
The shared event log stores each transaction's events compressed, so a database's `event_log` rows are
also searched decompressed (`logged_events`), on SQLite and on PostgreSQL.

Instrumentation while a run happens, for what leaves no file of its own:
- `install_event_tap(path)` appends every workspace-bus event and every agent event to `path`;
- `install_log_file(path)` sends `cmdc_nb` and litellm records at DEBUG to `path`.

`python tests/support/secret_scan.py --secret TOKEN --record KEY DIR...` scans folders after a run (the test
command does it after the suite), prints what it found, records the figures and exits 1 on a hit;
`--exports TOKEN` prints the shell lines that put the sentinel keys into the environment.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PROVIDER_KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
)
LOGGERS = ("cmdc_nb", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx")


def sentinel_keys(token: str) -> dict[str, str]:
    """A key-shaped value per provider variable, each carrying `token`."""
    return {var: f"sk-{var.split('_')[0].lower()}-{token}" for var in PROVIDER_KEY_VARIABLES}


def needles(token: str) -> list[bytes]:
    """The byte strings whose presence means `token` leaked."""
    raw = token.encode()
    found = {raw, token.encode("utf-16-le"), json.dumps(token).strip('"').encode(), raw.hex().encode()}
    # base64 of the token starting at any byte alignment: drop the edge characters that depend on
    # the neighbouring bytes and keep the stable middle.
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        found.add(encoded[4 : -4 if len(encoded) > 12 else len(encoded)])
    return sorted(n for n in found if len(n) >= 8)


def count_in(data: bytes, patterns: Iterable[bytes]) -> int:
    return sum(data.count(p) for p in patterns)


def scan_text(text: str, token: str) -> int:
    return count_in(text.encode("utf-8", "surrogatepass"), needles(token))


def scan_tree(root: Path, token: str, *, workers: int = 1) -> dict[str, Any]:
    """Count `token`'s spellings in every regular file under `root` (sockets and links skipped), on
    `workers` processes (the suite's scan reads gigabytes once its tests are done: both CPUs are free)."""
    paths = [str(p) for p in sorted(root.rglob("*"))] if root.exists() else []
    chunks = [paths[i : i + 256] for i in range(0, len(paths), 256)]
    if workers > 1 and len(chunks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
            parts = list(pool.map(_scan_files, chunks, [token] * len(chunks)))
    else:
        parts = [_scan_files(chunk, token) for chunk in chunks]
    hits = {path: n for part in parts for path, n in part[2].items()}
    return {
        "files": sum(part[0] for part in parts),
        "bytes": sum(part[1] for part in parts),
        "occurrences": sum(hits.values()),
        "hits": hits,
    }


def _scan_files(paths: list[str], token: str) -> tuple[int, int, dict[str, int]]:
    patterns = needles(token)
    files = size = 0
    hits: dict[str, int] = {}
    for name in paths:
        path = Path(name)
        try:
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
        except OSError:  # removed while we walked (a test's temporary file): nothing to read
            continue
        files += 1
        size += len(data)
        n = count_in(data, patterns)
        if data.startswith(b"SQLite format 3\0"):
            n += sum(count_in(blob, patterns) for blob in _sqlite_event_log(path))
        if n:
            hits[name] = n
    return files, size, hits


def logged_events(blob: bytes) -> bytes:
    """An `event_log` row's events as JSON text (zlib-compressed unless it starts with `[`); a row
    that does not decompress is searched as it is."""
    data = bytes(blob)
    if data[:1] == b"[":
        return data
    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


def _sqlite_event_log(path: Path) -> list[bytes]:
    """The decompressed `event_log` rows of the SQLite database at `path` (its WAL included: both are
    copied aside first, so the scan never touches a database a test may still hold)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "scan.db"
        try:
            shutil.copyfile(path, copy)
            wal = path.with_name(path.name + "-wal")
            if wal.exists():
                shutil.copyfile(wal, copy.with_name("scan.db-wal"))
        except OSError:
            return []
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            try:
                rows = conn.execute("SELECT events FROM event_log").fetchall()
            except sqlite3.Error:  # not a cmdc_nb workspace, or one from before the batches
                return []
    return [logged_events(blob) for (blob,) in rows if blob is not None]


def scan_pg_database(url: str, token: str) -> int:
    """Rows of every table of a PostgreSQL database whose text form holds `token` (plain or, for bytea,
    hex), and `event_log` rows whose decompressed events hold it — how a test database is searched
    before the test drops it."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            hits = 0
            for table in list(tables):
                hits += conn.execute(
                    sa.text(
                        f'SELECT count(*) FROM "{table}" AS r '
                        "WHERE strpos(r::text, :tok) > 0 OR strpos(r::text, :hex) > 0"
                    ),
                    {"tok": token, "hex": token.encode().hex()},
                ).scalar_one()
            if sa.inspect(conn).has_table("event_log"):
                columns = {c["name"] for c in sa.inspect(conn).get_columns("event_log")}
                if "events" in columns:
                    patterns = needles(token)
                    blobs = conn.execute(sa.text("SELECT events FROM event_log")).scalars()
                    hits += sum(1 for b in blobs if count_in(logged_events(b), patterns))
            return int(hits)
    finally:
        engine.dispose()


def install_log_file(path: Path, *, litellm_debug: bool = False) -> logging.Handler:
    """Send this process's `cmdc_nb` log records, down to DEBUG, and litellm's (down to DEBUG too with
    `litellm_debug`, else at litellm's own level) to `path`.

    Only `cmdc_nb` is lowered: the root logger stays as it is, so SQLAlchemy does not start logging
    every statement (it reads its level from the logging tree). For the whole suite, litellm stays at
    its level: its own stderr handler would print every debug line of thousands of calls."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if name == "cmdc_nb" or litellm_debug:
            logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    return handler


def install_event_tap(path: Path) -> None:
    """Append every event published on any workspace bus and every agent event, as text, to `path`."""
    from cmdc_nb.events._bus import EventBus
    from cmdc_nb.kernel.events import EventLog

    lock = threading.Lock()
    out = path.open("a", encoding="utf-8")
    atexit.register(out.close)

    def write(line: str) -> None:
        with lock:
            out.write(line.replace("\n", "\\n") + "\n")

    publish_many = EventBus.publish_many
    emit = EventLog.emit

    def tapped_publish_many(self: EventBus, items: Any, *, origin: str | None = None) -> Any:
        events = publish_many(self, items, origin=origin)
        for event in events:
            write(f"bus {event.topic} {event.type} {dict(event.payload)!r}")
        return events

    def tapped_emit(self: EventLog, event: Any) -> Any:
        envelope = emit(self, event)
        write(f"agent {envelope.agent_id} {event!r}")
        return envelope

    EventBus.publish_many = tapped_publish_many  # type: ignore[method-assign]
    EventLog.emit = tapped_emit  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--exports"]:  # shell lines putting the sentinel keys into the environment
        for var, value in sentinel_keys(argv[1]).items():
            print(f"export {var}={value}")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secret", required=True, help="the sentinel token")
    ap.add_argument("--record", help="record the figures under this key of secrets.json")
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args(argv)
    totals = {"files": 0, "bytes": 0, "occurrences": 0}
    hits: dict[str, int] = {}
    for folder in args.folders:
        found = scan_tree(folder, args.secret, workers=os.cpu_count() or 1)
        for k in totals:
            totals[k] += found[k]
        hits.update(found["hits"])
    pg_lines = [line.split() for f in args.folders for p in f.rglob("pg-*.txt") for line in p.open()]
    totals["pg_databases"] = len(pg_lines)
    pg_hits = sum(int(n) for _, n in pg_lines)
    totals["occurrences"] += pg_hits
    if pg_hits:
        hits.update({f"postgresql database {name}": int(n) for name, n in pg_lines if int(n)})
    events = sum(1 for f in args.folders for p in f.rglob("events-*.txt") for _ in p.open(errors="replace"))
    logs = sum(1 for f in args.folders for p in f.rglob("log-*.txt") for _ in p.open(errors="replace"))
    print(
        f"sentinel scan: {totals['files']:,} files, {totals['bytes'] / 1e6:,.1f} MB, "
        f"{totals['pg_databases']:,} PostgreSQL test databases "
        f"({events:,} event lines, {logs:,} log lines): {totals['occurrences']} occurrences"
    )
    for path, n in sorted(hits.items()):
        print(f"  {n} in {path}")
    if args.record:
        from reliability import record  # a sibling: this file runs as a script from tests/support

        record("secrets", args.record, {**totals, "event_lines": events, "log_lines": logs})
    return 1 if totals["occurrences"] else 0


if __name__ == "__main__":
    sys.exit(main())
