"""Hand-driven workflow steps: step type `external`, and status `waiting_input` for steps and runs.

The three columns are CHECK-constrained strings (`enum_column`), so adding a value is a swap of the
named constraint; SQLite rebuilds the table for it (batch mode), PostgreSQL alters it in place.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import uuid

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_RUN_STATUS = [
    "pending",
    "running",
    "paused",
    "waiting_approval",
    "completed",
    "failed",
    "cancelled",
    "timeout",
]
_STEP_STATUS = [
    "pending",
    "running",
    "waiting_approval",
    "completed",
    "failed",
    "skipped",
    "cancelled",
    "timeout",
]
_STEP_TYPE = [
    "agent_call",
    "tool",
    "python",
    "rag_query",
    "shell",
    "approval",
    "transform",
    "condition",
    "parallel",
]
# (table, column, values before, value added)
_SWAPS = [
    ("workflow_runs", "status", _RUN_STATUS, "waiting_input"),
    ("workflow_steps", "status", _STEP_STATUS, "waiting_input"),
    ("workflow_steps", "step_type", _STEP_TYPE, "external"),
]


def _swap(table: str, column: str, before: list[str], after: list[str]) -> None:
    name = f"ck_{table}_{column}"
    check = f"{column} IN ({', '.join(repr(x) for x in after)})"
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, check)
        return
    # Not batch mode: its copy-and-move drops the old table, and with foreign keys on (they are, and
    # a migration's transaction cannot turn them off) dropping `workflow_runs` cascades to every step.
    # SQLite documents editing the stored CREATE TABLE instead for changing a CHECK constraint; every
    # row already satisfies the new one (checked by the caller when it is narrower).
    was = f"CONSTRAINT {name} CHECK ({column} IN ({', '.join(repr(x) for x in before)}))"
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    if was not in sql:
        raise RuntimeError(f"{table}: constraint {name} is not the one this migration expects")
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    conn.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
        (sql.replace(was, f"CONSTRAINT {name} CHECK ({check})"), table),
    )
    conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    bad = conn.exec_driver_sql("PRAGMA quick_check").scalar_one()
    if bad != "ok":
        raise RuntimeError(f"{table}: the schema edit left the database inconsistent: {bad}")


def _with(values: list[str], added: str) -> list[str]:
    at = values.index("waiting_approval") + 1 if added == "waiting_input" else len(values)
    return [*values[:at], added, *values[at:]]


def upgrade() -> None:
    for table, column, values, added in _SWAPS:
        _swap(table, column, values, _with(values, added))


def downgrade() -> None:
    # The old schema cannot hold an external step (nor the `waiting_input` status only they cause).
    # Rather than delete or disguise those runs, the downgrade stops and says which to remove.
    runs = op.get_bind().exec_driver_sql(
        "SELECT DISTINCT workflow_run_id FROM workflow_steps WHERE step_type = 'external'"
    )
    held = [str(uuid.UUID(str(r[0]))) for r in runs]  # SQLite keeps them as bare hex
    if held:
        raise RuntimeError(
            f"{len(held)} workflow run(s) have external steps, which the schema before 0011 cannot "
            f"hold; delete them (or their workflows) before downgrading: {', '.join(held[:5])}"
        )
    for table, column, values, added in _SWAPS:
        _swap(table, column, _with(values, added), values)
