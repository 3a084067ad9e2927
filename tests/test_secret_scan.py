"""The sentinel scanner finds what it looks for: a scan that reports 0 must be
able to report more."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
import secret_scan
import sqlalchemy as sa

from tests.conftest import drop_pg_database, fresh_pg_database


def test_the_scanner_finds_a_planted_sentinel_in_every_spelling(tmp_path: Path) -> None:
    token = secrets.token_hex(12)
    spellings = {
        "plain.txt": token.encode(),
        "utf16.bin": f"key={token}".encode("utf-16-le"),
        "hex.txt": token.encode().hex().encode(),
        "b64-0.txt": base64.b64encode(token.encode()),
        "b64-1.txt": base64.b64encode(b"x" + token.encode()),
        "b64-2.txt": base64.b64encode(b"xy" + token.encode() + b"z"),
        "nested/deep.db": b"\x00\x01" + token.encode() + b"\x00",
    }
    for rel, data in spellings.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "clean.txt").write_text(token[:-1] + "-")  # a near miss is no hit
    found = secret_scan.scan_tree(tmp_path, token)
    assert set(found["hits"]) == {str(tmp_path / rel) for rel in spellings}
    assert found["files"] == len(spellings) + 1


def test_the_scan_on_several_processes_finds_what_one_finds(tmp_path: Path) -> None:
    """The suite's scan runs on every CPU: split over processes it reads every file and finds every
    hit, the last file of the tree included."""
    token = secrets.token_hex(12)
    for i in range(700):  # several chunks of files
        data = token.encode() if i % 97 == 0 or i == 699 else b"nothing here %d" % i
        (tmp_path / f"d{i % 7}" / f"f{i:04d}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / f"d{i % 7}" / f"f{i:04d}.txt").write_bytes(data)
    one = secret_scan.scan_tree(tmp_path, token)
    several = secret_scan.scan_tree(tmp_path, token, workers=2)
    assert several == one
    assert one["files"] == 700 and one["occurrences"] == len([i for i in range(700) if i % 97 == 0]) + 1


@pytest.mark.postgres
def test_the_scanner_finds_a_sentinel_in_a_postgresql_database() -> None:
    token = secrets.token_hex(12)
    url, admin = fresh_pg_database(None)
    try:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (note text, blob bytea, doc jsonb)")
            conn.exec_driver_sql("CREATE TABLE clean (note text)")
            conn.execute(
                sa.text(
                    "INSERT INTO t VALUES (:a, NULL, NULL), (NULL, :b, NULL), (NULL, NULL, :c), ('x', NULL, NULL)"
                ),
                {"a": f"key={token}", "b": b"\x00" + token.encode(), "c": f'{{"k": "{token}"}}'},
            )
            conn.execute(sa.text("INSERT INTO clean VALUES (:a)"), {"a": token[:-1]})
        engine.dispose()
        assert secret_scan.scan_pg_database(url, token) == 3
    finally:
        drop_pg_database(url, admin)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_the_scanner_finds_a_sentinel_in_a_compressed_event_log_row(db_url: str, backend: str) -> None:
    """The shared event log compresses each transaction's events: a sentinel leaked into an event's
    payload is not in the database's bytes as written, and the scanner still finds it."""
    from cmdc_nb.store import event_log

    token = secrets.token_hex(12)
    events = [("test:leak", f"e{i}", {"filler": "x" * 200, "i": i}) for i in range(6)]
    events.append(("test:leak", "leak", {"key": token}))
    blob = event_log.encode(events)
    assert token.encode() not in blob  # compressed: the plain scan alone would miss it
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO event_log (origin, inserted_at, events) VALUES ('o', CURRENT_TIMESTAMP, :e)"
            ),
            {"e": blob},
        )
    engine.dispose()
    if backend == "sqlite":
        path = Path(sa.make_url(db_url).database or "")
        found = secret_scan.scan_tree(path.parent, token)
        assert found["occurrences"] == 1 and str(path) in found["hits"]
    else:
        assert secret_scan.scan_pg_database(db_url, token) == 1
