"""The shared event log: one row per committed transaction, its events compressed together; ids never
reused; migration 0013 converts the rows of the old layout (one per event) and back."""

from __future__ import annotations

import decimal
import logging
import uuid
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts, sessions
from cmdc_nb.store import event_log
from cmdc_nb.store.models import EventLogEntry
from cmdc_nb.workspace import Workspace


def test_a_batch_comes_back_as_it_went_in() -> None:
    call = uuid.uuid4()
    events = [
        ("session:s:agent_calls", "agent_call_completed", {"agent_call_id": str(call), "cost_usd": "0.1"}),
        ("user:u:costs", "cost_recorded", {"id": call, "cost": decimal.Decimal("0.25"), "nan": float("nan")}),
        ("session:s:messages", "message_created", {"content": "ünïcode ✓", "sequence": 2, "none": None}),
    ]
    back = event_log.decode(event_log.encode(events))
    assert back[0] == events[0]
    topic, type_, payload = back[1]
    # what is not JSON is written as its text (the transaction is not failed over an event)
    assert (topic, type_, payload["id"], payload["cost"]) == (
        "user:u:costs",
        "cost_recorded",
        str(call),
        "0.25",
    )
    assert payload["nan"] != payload["nan"]  # NaN survives as NaN
    assert back[2] == events[2]


def test_a_round_of_events_is_compressed_and_a_tiny_batch_is_not() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    payload = {"session_id": ids[0], "agent_call_id": ids[1], "user_id": ids[2], "model": "scripted/x"}
    round_ = [(f"session:{ids[0]}:agent_calls", f"agent_call_{k}", dict(payload, step=k)) for k in range(7)]
    plain = len(repr(round_).encode())
    blob = event_log.encode(round_)
    assert blob[:1] != b"[" and len(blob) * 3 < plain  # compressed to well under a third
    tiny = event_log.encode([("t", "e", {})])
    assert tiny == b'[["t","e",{}]]'  # zlib would have made it longer: kept as JSON
    # a small batch takes a small window (cheaper to set up), a large one zlib's usual: both read back
    big = [(f"t{k}", "e", {"text": uuid.uuid4().hex * 40}) for k in range(10)]
    for batch, window in ((round_, 12), (big, 15)):
        packed = event_log.encode(batch)
        assert (packed[0] >> 4) + 8 == window  # the zlib header's window size
        assert event_log.decode(packed) == [(t, e, p) for t, e, p in batch]


@pytest.mark.parametrize(
    "blob",
    [b"", b"not json", b"[1, 2]", b'{"a": 1}', b'[["t", "e", []]]', b"x\x9c\x00garbage", b"[" + b"\xff" * 10],
)
def test_what_is_not_a_batch_is_refused_with_a_value_error(blob: bytes) -> None:
    with pytest.raises(ValueError, match="not an event batch"):
        event_log.decode(blob)


def _write(ws: Workspace, n: int, topic: str = "test:log") -> None:
    with ws.transaction() as tx:
        for i in range(n):
            tx.publish(topic, "numbered", {"i": i})


def _batches(ws: Workspace, after: int = 0) -> list[event_log.LoggedBatch]:
    with ws.engine.connect() as conn:
        return event_log.read_after(conn, after)


@pytest.fixture
def shared(db_url: str, home_dir: Path) -> Workspace:
    ws = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=True)
    yield ws
    ws.close()


def test_a_transaction_is_one_row_and_rows_keep_commit_order(shared: Workspace) -> None:
    _write(shared, 7)
    _write(shared, 2, "test:other")
    batches = [b for b in _batches(shared) if b.events and b.events[0][0].startswith("test:")]
    assert [len(b.events) for b in batches] == [7, 2]
    assert batches[0].id < batches[1].id
    assert [p["i"] for _, _, p in batches[0].events] == list(range(7))
    assert {b.origin for b in batches} == {shared._bridge.origin}  # type: ignore[union-attr]


def test_ids_are_never_reused_after_pruning_empties_the_log(shared: Workspace) -> None:
    """A reader remembers the last id it saw; if pruning every row let the database start ids again
    from 1, what came next would sit below that id and never be read."""
    _write(shared, 3)
    with shared.engine.connect() as conn:
        before = event_log.last_id(conn)
    with shared.engine.begin() as conn:
        assert event_log.prune(conn, keep=__import__("datetime").timedelta(seconds=-1)) >= 1
        assert event_log.last_id(conn) == 0  # empty
    _write(shared, 1)
    after = _batches(shared, before)
    assert len(after) == 1 and after[0].id > before


def test_a_stream_that_inflates_past_the_cap_is_refused_without_inflating_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row of a few kilobytes can inflate to gigabytes in every listening process: no more than
    `MAX_BATCH_BYTES` is ever inflated."""
    monkeypatch.setattr(event_log, "MAX_BATCH_BYTES", 1 << 20)
    bomb = zlib.compress(b"[" + b" " * (8 << 20) + b"]", 9)
    assert len(bomb) < 20_000
    with pytest.raises(ValueError, match="inflates past"):
        event_log.decode(bomb)
    with pytest.raises(ValueError, match="RecursionError"):
        event_log.decode(b"[" * 100_000)  # nested too deep for the JSON reader


def test_events_too_large_to_log_keep_their_topics_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_log, "MAX_BATCH_BYTES", 1000)
    big = [("session:s:messages", "message_created", {"content": "x" * 5000}), ("t", "e", {"a": 1})]
    back = event_log.decode(event_log.encode(big))
    assert [(t, ty) for t, ty, _ in back] == [("session:s:messages", "message_created"), ("t", "e")]
    assert all(p == {"omitted": "payload over 1000 bytes"} for _, _, p in back)


BAD_ROWS = {
    "garbage": lambda: b"\x78garbage",
    "nested too deep": lambda: b"[" * 100_000,
    "a zlib bomb": lambda: zlib.compress(b"[" + b" " * (8 << 20) + b"]", 9),
}


@pytest.mark.parametrize("bad", sorted(BAD_ROWS))
def test_a_row_that_does_not_decode_is_skipped_and_the_next_still_arrives(
    db_url: str, home_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """A damaged or hostile row (written by something else) must not stop the bridge, nor exhaust the
    reader: it is logged and passed, and what comes after it arrives."""
    monkeypatch.setattr(event_log, "MAX_BATCH_BYTES", 1 << 20)
    import time

    reader = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=True)
    writer = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=True)
    try:
        for ws in (reader, writer):
            assert ws._bridge is not None and ws._bridge.wait_connected()
        seen: list[object] = []
        reader.bus.subscribe("test:*", seen.append)
        caplog.set_level(logging.WARNING, logger="cmdc_nb.events.log")
        with writer.engine.begin() as conn:
            conn.execute(
                sa.insert(EventLogEntry).values(
                    origin="elsewhere", inserted_at=sa.func.now(), events=BAD_ROWS[bad]()
                )
            )
        _write(writer, 2)
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [e.payload["i"] for e in seen] == [0, 1]  # type: ignore[attr-defined]
        assert "skipped: not an event batch" in caplog.text
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_migration_0013_turns_rows_into_batches_and_back(db_url: str, home_dir: Path, backend: str) -> None:
    from alembic import command

    from cmdc_nb.store import migrate

    ws = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=True)
    try:
        user = accounts.create_user("m@example.com", ws=ws)
        s = sessions.create_session(user, name="m", ws=ws)
        sessions.create_message(s, role="user", content="hello", ws=ws)
        before = [e for b in _batches(ws) for e in b.events]
        assert len(before) >= 4
        cfg = migrate._config()
        with ws.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0012")
            old = conn.execute(sa.text("SELECT id, topic, type, payload FROM event_log ORDER BY id")).all()
            assert [(r.topic, r.type) for r in old] == [(t, ty) for t, ty, _ in before]  # a row an event
            old_ids = [r.id for r in old]
            command.upgrade(cfg, "0013")
        after = _batches(ws)
        assert [b.id for b in after] == old_ids  # a batch of one each, ids kept
        assert [e for b in after for e in b.events] == before
        _write(ws, 1)  # and the log goes on above them
        assert _batches(ws, old_ids[-1])[0].events == [("test:log", "numbered", {"i": 0})]
    finally:
        ws.close()
