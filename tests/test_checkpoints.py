"""A workspace's SQLite WAL is checkpointed on a thread of its own, not inside a writer's commit (which
may run on the notebook's event loop), and still starts over from its beginning while a writer never
pauses: the WAL stays bounded."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

import cmdc_nb
from cmdc_nb import accounts, sessions
from cmdc_nb.store.checkpoints import Checkpoints
from cmdc_nb.workspace import Workspace


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Any:
    ws = cmdc_nb.connect(f"sqlite:///{tmp_path}/wal.db")
    yield ws
    ws.close()


def _wal_frames(path: str) -> int:
    """How many frames the WAL holds now (a passive checkpoint reports it, and copies them)."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        for _ in range(500):  # busy while the workspace's own checkpoint runs: ask again
            busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if not busy:
                return int(frames)
            threading.Event().wait(0.01)
    raise AssertionError("the WAL stayed busy")


def test_commits_never_checkpoint_on_the_committing_thread(sqlite_ws: Workspace) -> None:
    with sqlite_ws.transaction() as tx:
        assert tx.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    checkpoints = sqlite_ws._checkpoints
    assert checkpoints is not None
    before = checkpoints.done
    user = accounts.create_user("a@example.com", ws=sqlite_ws)
    for i in range(Checkpoints.EVERY * 2):
        sessions.create_session(user, name=f"s{i}", ws=sqlite_ws)
    # the workspace started checkpoints on their own thread as it committed
    for _ in range(200):
        if checkpoints.done > before:
            break
        threading.Event().wait(0.01)
    assert checkpoints.done > before


def test_the_wal_starts_over_while_a_writer_never_pauses(sqlite_ws: Workspace) -> None:
    path = str(sqlite_ws.engine.url.database)
    user = accounts.create_user("b@example.com", ws=sqlite_ws)
    checkpoints = sqlite_ws._checkpoints
    assert checkpoints is not None
    written = [0]
    stop_at: list[int | None] = [None]

    def writer() -> None:  # back-to-back transactions, as a zero-latency agent's rounds are
        while stop_at[0] is None or written[0] < stop_at[0]:
            sessions.create_session(user, name="busy", ws=sqlite_ws)
            written[0] += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        while written[0] < 300:
            threading.Event().wait(0.01)
        for _ in range(3):
            checkpoints.run()  # its passes run while the writer goes on
    finally:
        stop_at[0] = written[0] + 5  # five more after the last pass: the WAL starts over at the first
        t.join(10)
    # Everything written before the last pass went into the database file, and the WAL started over:
    # it holds only those last writes (≈20 frames each), not the ≈5,000 frames of 300-odd transactions.
    frames = _wal_frames(path)
    assert 0 < frames < 300
    assert len(sessions.list_sessions(user, limit=1000, ws=sqlite_ws).entries) == written[0]


def test_a_checkpoint_after_the_database_was_removed_creates_nothing(tmp_path: Path) -> None:
    ws = cmdc_nb.connect(f"sqlite:///{tmp_path}/gone.db")
    checkpoints = ws._checkpoints
    assert checkpoints is not None
    ws.close()
    for leftover in tmp_path.glob("gone.db*"):
        leftover.unlink()
    checkpoints.run()
    assert list(tmp_path.glob("gone.db*")) == []


def _commit_past_a_checkpoint(ws: Workspace) -> int:
    """Commit enough to start a checkpoint, and wait for it; how many ran."""
    checkpoints = ws._checkpoints
    assert checkpoints is not None
    user = accounts.create_user(f"{uuid.uuid4().hex[:8]}@example.com", ws=ws)
    for i in range(Checkpoints.EVERY + 1):
        sessions.create_session(user, name=f"s{i}", ws=ws)
    for _ in range(500):
        if checkpoints.done:
            break
        threading.Event().wait(0.01)
    return checkpoints.done


def test_a_workspace_opened_by_a_relative_path_is_checkpointed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ws = cmdc_nb.connect("sqlite:///relative.db")
    try:
        assert _commit_past_a_checkpoint(ws) >= 1
    finally:
        ws.close()


def _child(path: str, done: Any) -> None:
    ws = cmdc_nb.connect(f"sqlite:///{path}")
    try:
        done.value = _commit_past_a_checkpoint(ws)
    finally:
        ws.close()


def test_a_process_forked_after_a_checkpoint_still_checkpoints(sqlite_ws: Workspace, tmp_path: Path) -> None:
    assert _commit_past_a_checkpoint(sqlite_ws) >= 1  # this process's checkpoint thread is running
    fork = multiprocessing.get_context("fork")
    done = fork.Value("i", -1)
    child = fork.Process(target=_child, args=(str(tmp_path / "child.db"), done), daemon=True)
    child.start()
    child.join(60)
    if child.exitcode is None:  # stuck: never leave it behind
        child.kill()
        child.join(10)
    assert child.exitcode == 0 and done.value >= 1


def test_a_workspace_on_a_file_uri_keeps_sqlites_own_checkpoints(tmp_path: Path) -> None:
    # a `file:` URI is not parsed for its path here: its connections must checkpoint as SQLite does,
    # or nobody would and its WAL would grow without end
    ws = cmdc_nb.connect(f"sqlite:///file:{tmp_path}/uri.db?uri=true")
    try:
        assert ws._checkpoints is None
        with ws.transaction() as tx:
            assert tx.connection().exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert tx.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        ws.close()
