"""Bring a database's schema up to date, in place, on both backends.

Migrations are Alembic revisions under `cmdc_nb/store/migrations/versions`, append-only, recorded in the
`alembic_version` ledger table. `upgrade()` runs them all in ONE transaction: PostgreSQL and SQLite both
have transactional DDL, so a process killed mid-migration leaves the database exactly as it was, and the
next `connect()` simply runs them again. Concurrent upgraders are serialised (an advisory lock on
PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so only the first one does any work.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cmdc_nb.errors import MigrationError
from cmdc_nb.store.migrations import HEAD

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["current_revision", "head_revision", "include_name", "upgrade"]

log = logging.getLogger("cmdc_nb.store.migrate")

_MIGRATIONS = Path(__file__).with_name("migrations")
_PG_LOCK_KEY = 0x636D6463  # "cmdc"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Leave full-text search objects out of model comparisons: 0001 and 0005 make them by hand, per
    dialect (SQLite's FTS5 tables and their shadow tables; PostgreSQL's GIN indexes over tsvectors)."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(("messages_fts", "chunks_fts"))
    if type_ == "column":
        return name != "content_tsv"
    return not (type_ == "index" and name in ("ix_messages_content_fts", "ix_context_chunks_content_fts"))


def _config() -> Config:
    # Alembic is imported only when there is something to migrate: opening an up-to-date database
    # reads one row and loads none of it.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest revision, as the migration scripts say (a test keeps `migrations.HEAD` equal to it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: sa.Connection) -> str | None:
    """The revision recorded in the database's ledger, or None for a blank database."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, target: str = "head") -> bool:
    """Migrate to `target` (normally head). Returns True when anything was applied."""
    try:
        with engine.connect() as probe:
            at_head = target == "head" and current_revision(probe) == HEAD
            probe.rollback()
        if at_head:
            return False
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            before = current_revision(conn)
            from alembic import command

            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
            after = current_revision(conn)
        if before != after:
            log.info("migrated %s from %s to %s", engine.url.render_as_string(), before, after)
        return before != after
    except MigrationError:
        raise
    except Exception as exc:
        raise MigrationError(
            f"could not migrate the database to {target}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
