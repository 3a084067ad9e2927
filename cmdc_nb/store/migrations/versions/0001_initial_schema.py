"""The initial schema: the seed's 20 tables, done right.

Beyond what Alembic generated from the models, by hand:
- PostgreSQL: the extensions vector, citext, pg_trgm and btree_gin, created first; the two foreign keys
  that close cycles (sessions → messages, agent_calls → workflow_steps) added after both tables exist;
  full-text search over messages as a GIN index on `to_tsvector('english', content)`.
- SQLite: full-text search over messages as an FTS5 table kept in step by triggers. It stores its own
  copy of the text keyed by message id (an external-content table would key on rowid, which VACUUM may
  renumber on a table with a UUID primary key).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cmdc_nb.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PG_EXTENSIONS = ("vector", "citext", "pg_trgm", "btree_gin")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for ext in PG_EXTENSIONS:
            op.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
    _create_tables()
    if dialect == "postgresql":
        op.create_foreign_key(
            op.f("fk_sessions_forked_at_message_id_messages"),
            "sessions",
            "messages",
            ["forked_at_message_id"],
            ["id"],
            ondelete="SET NULL",
        )
        op.create_foreign_key(
            op.f("fk_agent_calls_workflow_step_id_workflow_steps"),
            "agent_calls",
            "workflow_steps",
            ["workflow_step_id"],
            ["id"],
            ondelete="SET NULL",
        )
        op.execute(
            "CREATE INDEX ix_messages_content_fts ON messages "
            "USING gin (to_tsvector('english', coalesce(content, '')))"
        )
    else:
        for statement in SQLITE_FTS:
            op.execute(statement)


SQLITE_FTS = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "content, message_id UNINDEXED, session_id UNINDEXED, tokenize='porter unicode61')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts (content, message_id, session_id) "
    "VALUES (coalesce(new.content, ''), new.id, new.session_id); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "DELETE FROM messages_fts WHERE message_id = old.id; END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "UPDATE messages_fts SET content = coalesce(new.content, '') WHERE message_id = old.id; END",
)


def _create_tables() -> None:
    op.create_table(
        "users",
        sa.Column(
            "email",
            sa.String(length=254)
            .with_variant(postgresql.CITEXT(), "postgresql")
            .with_variant(sa.String(length=254, collation="NOCASE"), "sqlite"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column(
            "auth_provider",
            sa.Enum(
                "local", "github", "google", name="auth_provider", native_enum=False, create_constraint=True
            ),
            nullable=True,
        ),
        sa.Column("auth_uid", sa.String(length=255), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column(
            "preferences",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "active", "inactive", "suspended", name="status", native_enum=False, create_constraint=True
            ),
            server_default="active",
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index("ix_users_status", ["status"], unique=False)
        batch_op.create_index(
            "uq_users_auth_provider_auth_uid",
            ["auth_provider", "auth_uid"],
            unique=True,
            postgresql_where=sa.text("auth_provider IS NOT NULL AND auth_uid IS NOT NULL"),
            sqlite_where=sa.text("auth_provider IS NOT NULL AND auth_uid IS NOT NULL"),
        )

    op.create_table(
        "activity_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "action",
            sa.Enum(
                "session.create",
                "session.update",
                "session.archive",
                "session.fork",
                "message.create",
                "message.delete",
                "agent.call.start",
                "agent.call.complete",
                "agent.call.fail",
                "tool.execute",
                "tool.approve",
                "tool.deny",
                "workflow.create",
                "workflow.run.start",
                "workflow.run.complete",
                "workflow.run.fail",
                "index.create",
                "index.update",
                "index.delete",
                "approval.create",
                "approval.approve",
                "approval.deny",
                "approval.expire",
                "artifact.create",
                "artifact.update",
                "artifact.delete",
                "user.login",
                "user.logout",
                "user.update",
                "credential.create",
                "credential.revoke",
                "vault.rotate",
                name="action",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.String(length=200), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_activity_logs_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_logs")),
    )
    with op.batch_alter_table("activity_logs", schema=None) as batch_op:
        batch_op.create_index("ix_activity_logs_action", ["action"], unique=False)
        batch_op.create_index("ix_activity_logs_occurred_at", ["occurred_at"], unique=False)
        batch_op.create_index(
            "ix_activity_logs_resource", ["resource_type", "resource_id", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_activity_logs_session_id", ["session_id"], unique=False)
        batch_op.create_index(
            "ix_activity_logs_user_id_occurred_at", ["user_id", "occurred_at"], unique=False
        )

    op.create_table(
        "api_credentials",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("encrypted_key", sa.LargeBinary(), nullable=True),
        sa.Column("key_hint", sa.String(length=8), nullable=True),
        sa.Column(
            "status",
            sa.Enum("active", "revoked", "expired", name="status", native_enum=False, create_constraint=True),
            server_default="active",
            nullable=False,
        ),
        sa.Column("last_validated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("validation_error", sa.Text(), nullable=True),
        sa.Column("last_used_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("use_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("scopes", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column("expires_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_credentials_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_credentials")),
        sa.UniqueConstraint(
            "user_id", "provider", "name", name=op.f("uq_api_credentials_user_id_provider_name")
        ),
    )
    with op.batch_alter_table("api_credentials", schema=None) as batch_op:
        batch_op.create_index(
            "ix_api_credentials_user_provider_status", ["user_id", "provider", "status"], unique=False
        )

    op.create_table(
        "approval_rules",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("active", "disabled", name="status", native_enum=False, create_constraint=True),
            server_default="active",
            nullable=False,
        ),
        sa.Column("approval_type", sa.String(length=32), server_default="*", nullable=False),
        sa.Column("tool_names", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column(
            "conditions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "action",
            sa.Enum(
                "approve", "deny", "require_review", name="action", native_enum=False, create_constraint=True
            ),
            nullable=False,
        ),
        sa.Column("action_note", sa.Text(), nullable=True),
        sa.Column("max_auto_approvals_per_hour", sa.Integer(), nullable=True),
        sa.Column("max_auto_approvals_per_session", sa.Integer(), nullable=True),
        sa.Column("current_hour_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("hour_reset_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("times_triggered", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_triggered_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("applies_to_sessions", cmdc_nb.store.types.UUIDList(), nullable=False),
        sa.Column("applies_to_workflows", cmdc_nb.store.types.UUIDList(), nullable=False),
        sa.Column("is_sticky", sa.Boolean(), server_default=sa.false(), nullable=False),
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
            "approval_type = '*' OR approval_type IN ('tool_use', 'file_write', 'shell_command', 'workflow_step', 'plan', 'custom')",
            name=op.f("ck_approval_rules_approval_type"),
        ),
        sa.CheckConstraint(
            "max_auto_approvals_per_hour IS NULL OR max_auto_approvals_per_hour >= 0",
            name=op.f("ck_approval_rules_max_per_hour"),
        ),
        sa.CheckConstraint("priority >= 0", name=op.f("ck_approval_rules_priority")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_approval_rules_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_rules")),
    )
    with op.batch_alter_table("approval_rules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_rules_user_id_status_priority", ["user_id", "status", "priority"], unique=False
        )

    op.create_table(
        "cost_daily_summaries",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "total_cost_usd",
            cmdc_nb.store.types.Money(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("total_tokens_in", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_tokens_out", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_requests", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("unpriced_requests", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "cost_by_provider",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "cost_by_model",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "cost_by_session",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_cost_daily_summaries_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_daily_summaries")),
        sa.UniqueConstraint("user_id", "day", name=op.f("uq_cost_daily_summaries_user_id_day")),
    )
    op.create_table(
        "indexes",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "creating",
                "updating",
                "ready",
                "failed",
                "archived",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="creating",
            nullable=False,
        ),
        sa.Column(
            "source_type",
            sa.Enum(
                "local_repo",
                "github",
                "files",
                "url",
                "texts",
                "dataframe",
                name="source_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "source_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "chunk_strategy",
            sa.Enum(
                "fixed",
                "semantic",
                "code_aware",
                "recursive",
                name="chunk_strategy",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="recursive",
            nullable=False,
        ),
        sa.Column(
            "chunk_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("embedding_provider", sa.String(length=64), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("embedding_dimensions", sa.Integer(), nullable=False),
        sa.Column("storage_backend", sa.String(length=32), server_default="native", nullable=False),
        sa.Column(
            "storage_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("document_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("chunk_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "embedding_cost_usd",
            cmdc_nb.store.types.Money(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("last_indexed_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("indexing_started_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("indexing_duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("auto_reindex", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reindex_schedule", sa.String(length=100), nullable=True),
        sa.Column("last_reindex_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tracked_commit", sa.String(length=64), nullable=True),
        sa.Column(
            "git_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("tags", cmdc_nb.store.types.TextList(), nullable=False),
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
            "embedding_dimensions > 0 AND embedding_dimensions <= 16000", name=op.f("ck_indexes_dimensions")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_indexes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_indexes")),
        sa.UniqueConstraint("user_id", "slug", name=op.f("uq_indexes_user_id_slug")),
    )
    with op.batch_alter_table("indexes", schema=None) as batch_op:
        batch_op.create_index("ix_indexes_status", ["status"], unique=False)

    op.create_table(
        "presence_records",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "resource_type",
            sa.Enum(
                "session",
                "workflow_run",
                "approval_item",
                name="resource_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "viewing", "editing", "idle", "away", name="status", native_enum=False, create_constraint=True
            ),
            server_default="viewing",
            nullable=False,
        ),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("device_type", sa.String(length=16), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column(
            "cursor_state",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("joined_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("left_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_presence_records_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_presence_records")),
        sa.UniqueConstraint("client_id", name=op.f("uq_presence_records_client_id")),
    )
    with op.batch_alter_table("presence_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_presence_records_resource", ["resource_type", "resource_id", "last_seen_at"], unique=False
        )
        batch_op.create_index("ix_presence_records_user_id", ["user_id"], unique=False)

    op.create_table(
        "scheduled_jobs",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column(
            "job_type",
            sa.Enum(
                "workflow",
                "reindex",
                "cleanup",
                "custom",
                name="job_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "job_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "schedule_type",
            sa.Enum(
                "once", "cron", "interval", name="schedule_type", native_enum=False, create_constraint=True
            ),
            nullable=False,
        ),
        sa.Column("cron_expression", sa.String(length=200), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("run_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "paused",
                "completed",
                "failed",
                "cancelled",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="active",
            nullable=False,
        ),
        sa.Column("last_run_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_run_status", sa.String(length=16), nullable=True),
        sa.Column("last_run_error", sa.Text(), nullable=True),
        sa.Column("next_run_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("success_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_runs", sa.Integer(), nullable=True),
        sa.Column("expires_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("allow_concurrent", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("currently_running", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_until", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("misfire_policy", sa.String(length=16), server_default="run_once", nullable=False),
        sa.Column("retry_on_failure", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column("retry_delay_seconds", sa.Integer(), server_default="60", nullable=False),
        sa.Column("notify_on_failure", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("notify_on_success", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notification_channels", cmdc_nb.store.types.TextList(), nullable=False),
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
            "misfire_policy IN ('run_once', 'skip')", name=op.f("ck_scheduled_jobs_misfire_policy")
        ),
        sa.CheckConstraint(
            "interval_seconds IS NULL OR interval_seconds > 0",
            name=op.f("ck_scheduled_jobs_interval_seconds"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_scheduled_jobs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_jobs")),
    )
    with op.batch_alter_table("scheduled_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scheduled_jobs_due",
            ["next_run_at"],
            unique=False,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
        batch_op.create_index("ix_scheduled_jobs_user_id_status", ["user_id", "status"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("slug", sa.String(length=100), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "paused",
                "completed",
                "archived",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="active",
            nullable=False,
        ),
        sa.Column("parent_session_id", sa.Uuid(), nullable=True),
        sa.Column("forked_at_message_id", sa.Uuid(), nullable=True),
        sa.Column("message_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_tokens_in", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_tokens_out", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "total_cost_usd",
            cmdc_nb.store.types.Money(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("total_duration_ms", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("default_agent", sa.String(length=64), nullable=True),
        sa.Column("default_model", sa.String(length=200), nullable=True),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("max_tokens", sa.Integer(), nullable=True),
        sa.Column("linked_index_ids", cmdc_nb.store.types.UUIDList(), nullable=False),
        sa.Column("linked_workflow_ids", cmdc_nb.store.types.UUIDList(), nullable=False),
        sa.Column("tags", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column(
            "git_context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("visibility", sa.String(length=16), server_default="private", nullable=False),
        sa.Column("shared_with_user_ids", cmdc_nb.store.types.UUIDList(), nullable=False),
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
            "visibility IN ('private', 'shared', 'public')", name=op.f("ck_sessions_visibility")
        ),
        sa.CheckConstraint("max_tokens IS NULL OR max_tokens > 0", name=op.f("ck_sessions_max_tokens")),
        sa.CheckConstraint(
            "temperature IS NULL OR (temperature >= 0 AND temperature <= 2)",
            name=op.f("ck_sessions_temperature"),
        ),
        sa.ForeignKeyConstraint(
            ["forked_at_message_id"],
            ["messages.id"],
            name=op.f("fk_sessions_forked_at_message_id_messages"),
            ondelete="SET NULL",
            use_alter=True,
        ),
        sa.ForeignKeyConstraint(
            ["parent_session_id"],
            ["sessions.id"],
            name=op.f("fk_sessions_parent_session_id_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_parent_session_id", ["parent_session_id"], unique=False)
        batch_op.create_index("ix_sessions_status", ["status"], unique=False)
        batch_op.create_index("ix_sessions_tags", ["tags"], unique=False, postgresql_using="gin")
        batch_op.create_index("ix_sessions_user_id_updated_at", ["user_id", "updated_at"], unique=False)
        batch_op.create_index(
            "uq_sessions_user_id_slug",
            ["user_id", "slug"],
            unique=True,
            postgresql_where=sa.text("slug IS NOT NULL"),
            sqlite_where=sa.text("slug IS NOT NULL"),
        )

    op.create_table(
        "workflows",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "active",
                "deprecated",
                "archived",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="draft",
            nullable=False,
        ),
        sa.Column("is_template", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("forked_from_id", sa.Uuid(), nullable=True),
        sa.Column(
            "steps",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "input_schema",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "output_schema",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "default_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "triggers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("failure_policy", sa.String(length=16), server_default="fail_fast", nullable=False),
        sa.Column("run_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("success_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("avg_duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("avg_cost_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True),
        sa.Column("tags", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
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
            "failure_policy IN ('fail_fast', 'continue')", name=op.f("ck_workflows_failure_policy")
        ),
        sa.ForeignKeyConstraint(
            ["forked_from_id"],
            ["workflows.id"],
            name=op.f("fk_workflows_forked_from_id_workflows"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_workflows_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
        sa.UniqueConstraint("user_id", "slug", name=op.f("uq_workflows_user_id_slug")),
    )
    with op.batch_alter_table("workflows", schema=None) as batch_op:
        batch_op.create_index("ix_workflows_status", ["status"], unique=False)
        batch_op.create_index("ix_workflows_tags", ["tags"], unique=False, postgresql_using="gin")

    op.create_table(
        "artifacts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "artifact_type",
            sa.Enum(
                "file",
                "code",
                "diff",
                "image",
                "document",
                "archive",
                "other",
                name="artifact_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("mime_type", sa.String(length=100), nullable=True),
        sa.Column(
            "storage_backend",
            sa.Enum(
                "inline", "local", "s3", name="storage_backend", native_enum=False, create_constraint=True
            ),
            nullable=False,
        ),
        sa.Column("storage_path", sa.Text(), nullable=True),
        sa.Column("storage_key", sa.Text(), nullable=True),
        sa.Column("inline_content", sa.LargeBinary(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(length=64), nullable=True),
        sa.Column("original_filename", sa.Text(), nullable=True),
        sa.Column("language", sa.String(length=32), nullable=True),
        sa.Column("line_count", sa.Integer(), nullable=True),
        sa.Column(
            "source_type",
            sa.Enum(
                "agent_output",
                "tool_result",
                "upload",
                "workflow",
                name="source_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=True,
        ),
        sa.Column("source_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("lineage_id", sa.Uuid(), nullable=True),
        sa.Column("previous_version_id", sa.Uuid(), nullable=True),
        sa.Column("is_latest", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("git_repo", sa.Text(), nullable=True),
        sa.Column("git_path", sa.Text(), nullable=True),
        sa.Column("diff_base_artifact_id", sa.Uuid(), nullable=True),
        sa.Column("diff_content", sa.Text(), nullable=True),
        sa.Column("additions", sa.Integer(), nullable=True),
        sa.Column("deletions", sa.Integer(), nullable=True),
        sa.Column(
            "visibility",
            sa.Enum(
                "private", "shared", "public", name="visibility", native_enum=False, create_constraint=True
            ),
            server_default="private",
            nullable=False,
        ),
        sa.Column("shared_with_user_ids", cmdc_nb.store.types.UUIDList(), nullable=False),
        sa.Column("expires_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "retention_policy",
            sa.Enum(
                "permanent",
                "session",
                "temporary",
                name="retention_policy",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=True,
        ),
        sa.Column("tags", cmdc_nb.store.types.TextList(), nullable=False),
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
            "(storage_backend != 'inline' OR inline_content IS NOT NULL) AND (storage_backend != 'local' OR storage_path IS NOT NULL) AND (storage_backend != 's3' OR storage_key IS NOT NULL)",
            name=op.f("ck_artifacts_storage"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_artifacts_version")),
        sa.ForeignKeyConstraint(
            ["diff_base_artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_artifacts_diff_base_artifact_id_artifacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["previous_version_id"],
            ["artifacts.id"],
            name=op.f("fk_artifacts_previous_version_id_artifacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_artifacts_session_id_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_artifacts_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index("ix_artifacts_checksum", ["checksum"], unique=False)
        batch_op.create_index("ix_artifacts_previous_version_id", ["previous_version_id"], unique=False)
        batch_op.create_index("ix_artifacts_session_id", ["session_id"], unique=False)
        batch_op.create_index("ix_artifacts_user_id_inserted_at", ["user_id", "inserted_at"], unique=False)
        batch_op.create_index(
            "uq_artifacts_lineage_latest",
            ["lineage_id"],
            unique=True,
            postgresql_where=sa.text("is_latest"),
            sqlite_where=sa.text("is_latest"),
        )

    op.create_table(
        "context_documents",
        sa.Column("index_id", sa.Uuid(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column(
            "source_type",
            sa.Enum(
                "file",
                "url",
                "github",
                "api",
                "text",
                name="source_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("mime_type", sa.String(length=100), nullable=True),
        sa.Column("language", sa.String(length=32), nullable=True),
        sa.Column("encoding", sa.String(length=32), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("git_branch", sa.String(length=200), nullable=True),
        sa.Column("chunked_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("chunk_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_tokens", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("processing_error", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["index_id"],
            ["indexes.id"],
            name=op.f("fk_context_documents_index_id_indexes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_documents")),
        sa.UniqueConstraint("index_id", "uri", name=op.f("uq_context_documents_index_id_uri")),
    )
    with op.batch_alter_table("context_documents", schema=None) as batch_op:
        batch_op.create_index("ix_context_documents_content_hash", ["content_hash"], unique=False)

    op.create_table(
        "workflow_runs",
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column(
            "workflow_snapshot",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "paused",
                "waiting_approval",
                "completed",
                "failed",
                "cancelled",
                "timeout",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column(
            "input",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "output",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("current_step_id", sa.String(length=100), nullable=True),
        sa.Column("completed_step_ids", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column("failed_step_id", sa.String(length=100), nullable=True),
        sa.Column("started_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens_in", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_tokens_out", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "total_cost_usd",
            cmdc_nb.store.types.Money(precision=38, scale=12),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "trigger_type",
            sa.Enum(
                "manual",
                "schedule",
                "webhook",
                "api",
                "retry",
                name="trigger_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=True,
        ),
        sa.Column(
            "trigger_metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_step_id", sa.String(length=100), nullable=True),
        sa.Column(
            "git_context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("retry_of_run_id", sa.Uuid(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["retry_of_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_workflow_runs_retry_of_run_id_workflow_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_workflow_runs_session_id_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_workflow_runs_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_runs_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_runs")),
    )
    with op.batch_alter_table("workflow_runs", schema=None) as batch_op:
        batch_op.create_index("ix_workflow_runs_status", ["status"], unique=False)
        batch_op.create_index("ix_workflow_runs_user_id_status", ["user_id", "status"], unique=False)
        batch_op.create_index(
            "ix_workflow_runs_workflow_id_inserted_at", ["workflow_id", "inserted_at"], unique=False
        )

    op.create_table(
        "agent_calls",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "streaming",
                "completed",
                "failed",
                "cancelled",
                "timeout",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column(
            "prompt_messages",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("response_content", sa.Text(), nullable=True),
        sa.Column(
            "response_blocks",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("cache_tokens_read", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cache_tokens_write", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cost_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True),
        sa.Column("started_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_token_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=True),
        sa.Column("max_tokens", sa.Integer(), nullable=True),
        sa.Column("tools_provided", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("workflow_run_id", sa.Uuid(), nullable=True),
        sa.Column("workflow_step_id", sa.Uuid(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("max_tokens IS NULL OR max_tokens > 0", name=op.f("ck_agent_calls_max_tokens")),
        sa.CheckConstraint(
            "temperature IS NULL OR (temperature >= 0 AND temperature <= 2)",
            name=op.f("ck_agent_calls_temperature"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_agent_calls_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_agent_calls_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_agent_calls_workflow_run_id_workflow_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_agent_calls_workflow_step_id_workflow_steps"),
            ondelete="SET NULL",
            use_alter=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_calls")),
    )
    with op.batch_alter_table("agent_calls", schema=None) as batch_op:
        batch_op.create_index("ix_agent_calls_inserted_at", ["inserted_at"], unique=False)
        batch_op.create_index("ix_agent_calls_provider_model", ["provider", "model"], unique=False)
        batch_op.create_index(
            "ix_agent_calls_session_id_inserted_at", ["session_id", "inserted_at"], unique=False
        )
        batch_op.create_index("ix_agent_calls_status", ["status"], unique=False)
        batch_op.create_index("ix_agent_calls_user_id_inserted_at", ["user_id", "inserted_at"], unique=False)
        batch_op.create_index("ix_agent_calls_workflow_run_id", ["workflow_run_id"], unique=False)

    op.create_table(
        "approval_items",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("workflow_run_id", sa.Uuid(), nullable=True),
        sa.Column("approval_type", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "denied",
                "expired",
                "auto_approved",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column(
            "priority",
            sa.Enum(
                "low",
                "normal",
                "high",
                "critical",
                name="priority",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="normal",
            nullable=False,
        ),
        sa.Column("priority_rank", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "source_type",
            sa.Enum(
                "tool_use",
                "workflow_step",
                "manual",
                "plan",
                "flowstone_checkpoint",
                name="source_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("source_id", sa.Uuid(), nullable=True),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "risk_level",
            sa.Enum(
                "low",
                "medium",
                "high",
                "critical",
                name="risk_level",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=True,
        ),
        sa.Column("risk_factors", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column("decided_by_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column(
            "modified_payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("expires_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "timeout_action",
            sa.Enum(
                "deny",
                "approve",
                "escalate",
                name="timeout_action",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="deny",
            nullable=False,
        ),
        sa.Column("auto_approval_rule_id", sa.Uuid(), nullable=True),
        sa.Column("auto_approval_reason", sa.Text(), nullable=True),
        sa.Column("notified_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("notification_channels", cmdc_nb.store.types.TextList(), nullable=False),
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
            "approval_type IN ('tool_use', 'file_write', 'shell_command', 'workflow_step', 'plan', 'custom')",
            name=op.f("ck_approval_items_approval_type"),
        ),
        sa.CheckConstraint("priority_rank BETWEEN 0 AND 3", name=op.f("ck_approval_items_priority_rank")),
        sa.ForeignKeyConstraint(
            ["auto_approval_rule_id"],
            ["approval_rules.id"],
            name=op.f("fk_approval_items_auto_approval_rule_id_approval_rules"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["users.id"],
            name=op.f("fk_approval_items_decided_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_approval_items_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_approval_items_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_approval_items_workflow_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_items")),
    )
    with op.batch_alter_table("approval_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approval_items_expires_at_pending",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            "ix_approval_items_queue", ["user_id", "status", "priority_rank", "inserted_at"], unique=False
        )
        batch_op.create_index("ix_approval_items_session_id_status", ["session_id", "status"], unique=False)
        batch_op.create_index("ix_approval_items_source", ["source_type", "source_id"], unique=False)

    op.create_table(
        "context_chunks",
        sa.Column("index_id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=True),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column(
            "source_type",
            sa.Enum(
                "file",
                "url",
                "github",
                "api",
                "text",
                name="source_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "source_metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("start_offset", sa.Integer(), nullable=True),
        sa.Column("end_offset", sa.Integer(), nullable=True),
        sa.Column("start_line", sa.Integer(), nullable=True),
        sa.Column("end_line", sa.Integer(), nullable=True),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("embedding", cmdc_nb.store.types.Embedding(), nullable=True),
        sa.Column("embedding_model", sa.String(length=200), nullable=True),
        sa.Column("embedded_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("language", sa.String(length=32), nullable=True),
        sa.Column(
            "code_context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("chunk_index >= 0", name=op.f("ck_context_chunks_chunk_index")),
        sa.CheckConstraint("token_count > 0", name=op.f("ck_context_chunks_token_count")),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["context_documents.id"],
            name=op.f("fk_context_chunks_document_id_context_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["index_id"], ["indexes.id"], name=op.f("fk_context_chunks_index_id_indexes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_chunks")),
        sa.UniqueConstraint("index_id", "content_hash", name=op.f("uq_context_chunks_index_id_content_hash")),
    )
    with op.batch_alter_table("context_chunks", schema=None) as batch_op:
        batch_op.create_index("ix_context_chunks_document_id", ["document_id"], unique=False)
        batch_op.create_index(
            "ix_context_chunks_index_id_source_uri", ["index_id", "source_uri"], unique=False
        )
        batch_op.create_index("ix_context_chunks_language", ["language"], unique=False)

    op.create_table(
        "cost_records",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "source_type",
            sa.Enum(
                "agent_call",
                "embedding",
                "tool_execution",
                name="source_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("source_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("workflow_run_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column(
            "service",
            sa.Enum(
                "chat",
                "embedding",
                "image",
                "speech",
                name="service",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("tokens_in", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("tokens_out", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cache_tokens_read", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cache_tokens_write", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("units", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("unit_type", sa.String(length=32), nullable=True),
        sa.Column("cost_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True),
        sa.Column(
            "price_per_million_in_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True
        ),
        sa.Column(
            "price_per_million_out_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True
        ),
        sa.Column("incurred_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("notebook_cell", sa.String(length=200), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("cost_usd IS NULL OR cost_usd >= 0", name=op.f("ck_cost_records_cost_usd")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_cost_records_session_id_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_cost_records_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_cost_records_workflow_run_id_workflow_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_records")),
    )
    with op.batch_alter_table("cost_records", schema=None) as batch_op:
        batch_op.create_index("ix_cost_records_incurred_at", ["incurred_at"], unique=False)
        batch_op.create_index("ix_cost_records_provider_model", ["provider", "model"], unique=False)
        batch_op.create_index("ix_cost_records_session_id", ["session_id"], unique=False)
        batch_op.create_index("ix_cost_records_source", ["source_type", "source_id"], unique=False)
        batch_op.create_index("ix_cost_records_user_id_day", ["user_id", "day"], unique=False)

    op.create_table(
        "tool_uses",
        sa.Column("agent_call_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("tool_name", sa.String(length=100), nullable=False),
        sa.Column("tool_use_id", sa.String(length=200), nullable=True),
        sa.Column(
            "input",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("output_truncated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "denied",
                "executing",
                "completed",
                "failed",
                "cancelled",
                "timeout",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("requires_approval", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("approval_id", sa.Uuid(), nullable=True),
        sa.Column("approved_by_id", sa.Uuid(), nullable=True),
        sa.Column("approved_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("denial_reason", sa.Text(), nullable=True),
        sa.Column("started_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column(
            "file_changes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stdout", sa.Text(), nullable=True),
        sa.Column("stderr", sa.Text(), nullable=True),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_call_id"],
            ["agent_calls.id"],
            name=op.f("fk_tool_uses_agent_call_id_agent_calls"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_items.id"],
            name=op.f("fk_tool_uses_approval_id_approval_items"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["approved_by_id"],
            ["users.id"],
            name=op.f("fk_tool_uses_approved_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_tool_uses_session_id_sessions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_uses")),
        sa.UniqueConstraint("agent_call_id", "sequence", name=op.f("uq_tool_uses_agent_call_id_sequence")),
    )
    with op.batch_alter_table("tool_uses", schema=None) as batch_op:
        batch_op.create_index("ix_tool_uses_approval_id", ["approval_id"], unique=False)
        batch_op.create_index("ix_tool_uses_approved_by_id", ["approved_by_id"], unique=False)
        batch_op.create_index(
            "ix_tool_uses_requires_approval_status", ["requires_approval", "status"], unique=False
        )
        batch_op.create_index("ix_tool_uses_session_id", ["session_id"], unique=False)
        batch_op.create_index("ix_tool_uses_status", ["status"], unique=False)
        batch_op.create_index("ix_tool_uses_tool_name", ["tool_name"], unique=False)

    op.create_table(
        "workflow_steps",
        sa.Column("workflow_run_id", sa.Uuid(), nullable=False),
        sa.Column("step_id", sa.String(length=100), nullable=False),
        sa.Column("step_name", sa.String(length=200), nullable=False),
        sa.Column(
            "step_type",
            sa.Enum(
                "agent_call",
                "tool",
                "python",
                "rag_query",
                "shell",
                "approval",
                "transform",
                "condition",
                "parallel",
                name="step_type",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "step_config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "waiting_approval",
                "completed",
                "failed",
                "skipped",
                "cancelled",
                "timeout",
                name="status",
                native_enum=False,
                create_constraint=True,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column(
            "input",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "output",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("agent_call_id", sa.Uuid(), nullable=True),
        sa.Column("approval_id", sa.Uuid(), nullable=True),
        sa.Column("started_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("cost_usd", cmdc_nb.store.types.Money(precision=38, scale=12), nullable=True),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempt_number", sa.Integer(), server_default="1", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("depends_on", cmdc_nb.store.types.TextList(), nullable=False),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("sequence >= 0", name=op.f("ck_workflow_steps_sequence")),
        sa.ForeignKeyConstraint(
            ["agent_call_id"],
            ["agent_calls.id"],
            name=op.f("fk_workflow_steps_agent_call_id_agent_calls"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approval_items.id"],
            name=op.f("fk_workflow_steps_approval_id_approval_items"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_run_id"],
            ["workflow_runs.id"],
            name=op.f("fk_workflow_steps_workflow_run_id_workflow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_steps")),
        sa.UniqueConstraint(
            "workflow_run_id", "step_id", name=op.f("uq_workflow_steps_workflow_run_id_step_id")
        ),
    )
    with op.batch_alter_table("workflow_steps", schema=None) as batch_op:
        batch_op.create_index("ix_workflow_steps_status", ["status"], unique=False)
        batch_op.create_index(
            "ix_workflow_steps_workflow_run_id_sequence", ["workflow_run_id", "sequence"], unique=False
        )

    op.create_table(
        "messages",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "user",
                "assistant",
                "system",
                "tool_result",
                name="role",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column(
            "content_blocks",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("agent_call_id", sa.Uuid(), nullable=True),
        sa.Column("tool_use_id", sa.Uuid(), nullable=True),
        sa.Column("visible_in_branches", cmdc_nb.store.types.UUIDList(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=True),
        sa.Column(
            "attachments",
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
        sa.CheckConstraint("sequence >= 1", name=op.f("ck_messages_sequence")),
        sa.ForeignKeyConstraint(
            ["agent_call_id"],
            ["agent_calls.id"],
            name=op.f("fk_messages_agent_call_id_agent_calls"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_messages_session_id_sessions"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tool_use_id"],
            ["tool_uses.id"],
            name=op.f("fk_messages_tool_use_id_tool_uses"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("session_id", "sequence", name=op.f("uq_messages_session_id_sequence")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_agent_call_id", ["agent_call_id"], unique=False)
        batch_op.create_index(
            "ix_messages_session_id_inserted_at", ["session_id", "inserted_at"], unique=False
        )
        batch_op.create_index("ix_messages_session_id_role", ["session_id", "role"], unique=False)
        batch_op.create_index("ix_messages_tool_use_id", ["tool_use_id"], unique=False)


def downgrade() -> None:
    raise NotImplementedError("cmdc_nb migrations are append-only; restore a backup to go back")
