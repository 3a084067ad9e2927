"""Model prices the user can edit, and budgets.

`model_prices` overrides litellm's cost map per model (USD per million tokens); `budgets` limits
spending per user, per session or for the workspace, per day, per month or in total.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cmdc_nb.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column(
            "input_per_million_usd",
            cmdc_nb.store.types.Money(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "output_per_million_usd",
            cmdc_nb.store.types.Money(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "cache_read_per_million_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True
        ),
        sa.Column(
            "cache_write_per_million_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "input_per_million_usd >= 0 AND output_per_million_usd >= 0 AND (cache_read_per_million_usd IS NULL OR cache_read_per_million_usd >= 0) AND (cache_write_per_million_usd IS NULL OR cache_write_per_million_usd >= 0)",
            name=op.f("ck_model_prices_non_negative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_prices")),
        sa.UniqueConstraint("model", name=op.f("uq_model_prices_model")),
    )
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "scope",
            sa.Enum("user", "session", "workspace", name="scope", native_enum=False, create_constraint=True),
            nullable=False,
        ),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column(
            "period",
            sa.Enum("daily", "monthly", "total", name="period", native_enum=False, create_constraint=True),
            nullable=False,
        ),
        sa.Column("limit_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=False),
        sa.Column(
            "warn_at",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("hard_limit", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "disabled", name="status", native_enum=False, create_constraint=True),
            server_default="active",
            nullable=False,
        ),
        sa.Column(
            "fired",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(scope = 'user' AND user_id IS NOT NULL AND session_id IS NULL) OR (scope = 'session' AND session_id IS NOT NULL) OR (scope = 'workspace' AND user_id IS NULL AND session_id IS NULL)",
            name=op.f("ck_budgets_scope_target"),
        ),
        sa.CheckConstraint("limit_usd > 0", name=op.f("ck_budgets_limit_usd")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_budgets_session_id_sessions"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_budgets_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
    )
    op.create_index("ix_budgets_session_id", "budgets", ["session_id"], unique=False)
    op.create_index("ix_budgets_user_id", "budgets", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_budgets_user_id", table_name="budgets")
    op.drop_index("ix_budgets_session_id", table_name="budgets")
    op.drop_table("budgets")
    op.drop_table("model_prices")
