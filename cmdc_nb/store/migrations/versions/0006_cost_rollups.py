"""cost_rollups: cost records summed per user, day, provider and model, kept up to date by record_cost.

`frames.daily_costs(by="model" | "provider" | None)` reads it instead of grouping every record: a
million records become a few hundred rows. Existing records are summed into it here.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cmdc_nb.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cost_rollups",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("cost_usd", cmdc_nb.store.types.Money(), server_default=sa.text("0"), nullable=False),
        sa.Column("requests", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("unpriced_requests", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_cost_rollups_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "day", "provider", "model", name=op.f("pk_cost_rollups")),
    )
    op.create_index("ix_cost_rollups_day", "cost_rollups", ["day"], unique=False)
    op.execute(
        "INSERT INTO cost_rollups (user_id, day, provider, model, cost_usd, requests, unpriced_requests, "
        "tokens_in, tokens_out) "
        "SELECT user_id, day, provider, model, COALESCE(SUM(cost_usd), 0), COUNT(*), COUNT(*) - COUNT(cost_usd), "
        "SUM(tokens_in + cache_tokens_read + cache_tokens_write), SUM(tokens_out) "
        "FROM cost_records GROUP BY user_id, day, provider, model"
    )


def downgrade() -> None:
    op.drop_index("ix_cost_rollups_day", table_name="cost_rollups")
    op.drop_table("cost_rollups")
