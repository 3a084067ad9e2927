"""Alembic environment: always run through `cmdc_nb.store.migrate`, which passes a connection that is
already inside one transaction (and, on PostgreSQL, holds an advisory lock), so concurrent `connect()`
calls on a fresh database migrate it once and a kill mid-migration leaves nothing half-done."""

from __future__ import annotations

from alembic import context

from cmdc_nb.store.migrate import include_name
from cmdc_nb.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by cmdc_nb.store.migrate
    raise RuntimeError("run migrations through cmdc_nb.store.migrate.upgrade(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copy-and-move
    compare_type=True,
    compare_server_default=False,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
