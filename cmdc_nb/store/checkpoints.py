"""SQLite's WAL checkpoints on a thread of their own, instead of inside a writer's commit.

By default the commit that takes the WAL past 1,000 pages also copies them into the database file and
syncs it: 3–5 ms here, once every thirty-odd transactions, on whichever thread commits — for a
stored agent round on SQLite, the notebook's event loop itself (its writes run there when they need
not wait). A workspace's engine turns that off (`wal_autocheckpoint=0`) and this runs a passive
checkpoint every `EVERY` commits, on one thread shared by the process:

1. without any lock, copying the frames committed so far while writers go on (a passive checkpoint
   never waits for readers or writers);
2. once more holding this process's write lock (`Workspace`'s), which copies only the frames
   writers appended meanwhile: SQLite starts the WAL over from its beginning only after a checkpoint
   that copied every frame, so without this step a process that never stops writing would grow its
   WAL without end. The workspace's writers wait for it (a write on the event loop's thread goes to a
   worker thread meanwhile: `WouldWait`); it waits for them at most a second (a writer stuck in
   SQLite's busy wait must not hold up every workspace's checkpoints: the process has one thread).

Another process's writers are not held off: while one writes without pause the WAL may stay large,
as with SQLite's own checkpoints under a reader that never lets go. SQLite still checkpoints when the
last connection closes, and replays the WAL after a crash, as before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

__all__ = ["Checkpoints"]

log = logging.getLogger("cmdc_nb.store")

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
# How long the second pass waits for the workspace's writers: one stuck in SQLite's busy wait must not
# hold up the checkpoints of every other workspace (the process has one checkpoint thread).
WRITERS_TIMEOUT_S = 1.0


def _thread() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cmdc-nb-checkpoint")
        return _executor


def _forget_thread() -> None:
    """In a forked child: the parent's checkpoint thread does not exist here, and work handed to its
    executor would wait forever; the child's first checkpoint starts a thread of its own."""
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_thread)


class Checkpoints:
    """The WAL checkpoints of one SQLite database file (see the module docstring)."""

    EVERY = 32  # commits between two checkpoints: ≈1,000 pages of a stored agent's rounds

    def __init__(self, path: Path, writers: threading.Lock) -> None:
        # absolute (`_engine.wal_file` gives it so): a relative path cannot be a file URI
        self.path = path.expanduser().absolute()
        self._writers = writers
        self._count = 0
        self._pending: int | None = None  # the process whose checkpoint is under way
        self.done = 0  # checkpoints run (for tests)

    def committed(self) -> None:
        """A transaction committed: every `EVERY`th, start a checkpoint (unless one is under way in
        this process: a forked child never sees its parent's finish)."""
        self._count += 1
        if self._count < self.EVERY or self._pending == os.getpid():
            return
        self._count, self._pending = 0, os.getpid()
        _thread().submit(self.run)

    def run(self) -> None:
        try:
            # a connection of its own, read-write without creating: a workspace closed and its
            # files removed meanwhile is skipped, not brought back as an empty database
            conn = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True, isolation_level=None)
            with contextlib.closing(conn):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                # What it reports is the WAL as it began: frames committed since are not counted, so
                # the second pass always runs (it copies only those).
                if self._writers.acquire(timeout=WRITERS_TIMEOUT_S):
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    finally:
                        self._writers.release()
            self.done += 1
        except sqlite3.OperationalError:
            pass  # gone, or busy: the next one tries again
        except Exception:  # never lost in a future nobody reads
            log.exception("checkpointing %s failed", self.path.name)
        finally:
            self._pending = None
