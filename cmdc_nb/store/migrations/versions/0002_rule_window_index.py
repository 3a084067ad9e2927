"""An index for the approval rules' sliding hour window.

`try_auto_approve` counts a rule's own auto-approvals in the last hour (and per session) under the
rule's row lock; this index makes that count a short range scan instead of a walk over every item.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_approval_items_rule_window",
        "approval_items",
        ["auto_approval_rule_id", "status", "decided_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_approval_items_rule_window", table_name="approval_items")
