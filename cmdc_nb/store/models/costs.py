"""cost_records, cost_daily_summaries, model_prices and budgets (exact money, atomic roll-ups)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import BudgetPeriod, BudgetScope, CostService, CostSourceType, RuleStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map, money
from cmdc_nb.store.types import JSONDoc, Money

__all__ = ["Budget", "CostDailySummary", "CostRecord", "ModelPrice"]


class CostRecord(TimestampMixin, Base):
    __tablename__ = "cost_records"
    _repr_fields = ("model", "cost_usd", "day")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    source_type: Mapped[CostSourceType] = mapped_column(
        enum_column(CostSourceType, "source_type"), nullable=False
    )
    source_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)
    session_id: Mapped[uuid.UUID | None] = mapped_column(fk("sessions.id", "SET NULL"))
    workflow_run_id: Mapped[uuid.UUID | None] = mapped_column(fk("workflow_runs.id", "SET NULL"))
    provider: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    service: Mapped[CostService] = mapped_column(enum_column(CostService, "service"), nullable=False)
    model: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    tokens_in: Mapped[int] = counter()
    tokens_out: Mapped[int] = counter()
    cache_tokens_read: Mapped[int] = counter()
    cache_tokens_write: Mapped[int] = counter()
    units: Mapped[Decimal | None] = mapped_column(sa.Numeric(38, 12))
    unit_type: Mapped[str | None] = mapped_column(sa.String(32))
    # NULL means "unpriced": the model has no known price. Never a silent $0.
    cost_usd: Mapped[Decimal | None] = money(nullable=True)
    price_per_million_in_usd: Mapped[Decimal | None] = mapped_column(Money())
    price_per_million_out_usd: Mapped[Decimal | None] = mapped_column(Money())
    incurred_at: Mapped[dt.datetime] = mapped_column(nullable=False)
    day: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    notebook_cell: Mapped[str | None] = mapped_column(sa.String(200))
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint("cost_usd IS NULL OR cost_usd >= 0", name="cost_usd"),
        sa.Index("ix_cost_records_user_id_day", "user_id", "day"),
        sa.Index("ix_cost_records_source", "source_type", "source_id"),
        sa.Index("ix_cost_records_provider_model", "provider", "model"),
        sa.Index("ix_cost_records_session_id", "session_id"),
        sa.Index("ix_cost_records_incurred_at", "incurred_at"),
    )


class CostDailySummary(TimestampMixin, Base):
    __tablename__ = "cost_daily_summaries"
    _repr_fields = ("user_id", "day", "total_cost_usd")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    day: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    total_cost_usd: Mapped[Decimal] = money()
    total_tokens_in: Mapped[int] = counter(big=True)
    total_tokens_out: Mapped[int] = counter(big=True)
    total_requests: Mapped[int] = counter()
    unpriced_requests: Mapped[int] = counter()
    cost_by_provider: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    cost_by_model: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    cost_by_session: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)

    __table_args__ = (sa.UniqueConstraint("user_id", "day"),)


class CostRollup(Base):
    """Cost records summed per user, day, provider and model, kept in the transaction that records
    each cost — so a daily-by-model table over a million records reads a few hundred rows."""

    __tablename__ = "cost_rollups"
    _repr_fields = ("day", "model", "cost_usd", "requests")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    cost_usd: Mapped[Decimal] = money()  # priced records only; unpriced ones are counted apart
    requests: Mapped[int] = counter()
    unpriced_requests: Mapped[int] = counter()
    tokens_in: Mapped[int] = counter(big=True)  # cache reads and writes included, as in daily_costs
    tokens_out: Mapped[int] = counter(big=True)

    __table_args__ = (sa.Index("ix_cost_rollups_day", "day"),)


class ModelPrice(TimestampMixin, Base):
    """A price the user set for a model, in USD per million tokens. It wins over litellm's cost map."""

    __tablename__ = "model_prices"
    _repr_fields = ("model", "input_per_million_usd", "output_per_million_usd")

    model: Mapped[str] = mapped_column(sa.String(200), nullable=False, unique=True)
    provider: Mapped[str | None] = mapped_column(sa.String(64))
    input_per_million_usd: Mapped[Decimal] = money()
    output_per_million_usd: Mapped[Decimal] = money()
    cache_read_per_million_usd: Mapped[Decimal | None] = money(nullable=True)
    cache_write_per_million_usd: Mapped[Decimal | None] = money(nullable=True)
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint(
            "input_per_million_usd >= 0 AND output_per_million_usd >= 0"
            " AND (cache_read_per_million_usd IS NULL OR cache_read_per_million_usd >= 0)"
            " AND (cache_write_per_million_usd IS NULL OR cache_write_per_million_usd >= 0)",
            name="non_negative",
        ),
    )


class Budget(TimestampMixin, Base):
    """A spending limit for a user, a session or the whole workspace, per day, per month or in total."""

    __tablename__ = "budgets"
    _repr_fields = ("name", "scope", "period", "limit_usd")

    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    scope: Mapped[BudgetScope] = mapped_column(enum_column(BudgetScope, "scope"), nullable=False)
    user_id: Mapped[uuid.UUID | None] = mapped_column(fk("users.id", "CASCADE"))
    session_id: Mapped[uuid.UUID | None] = mapped_column(fk("sessions.id", "CASCADE"))
    period: Mapped[BudgetPeriod] = mapped_column(enum_column(BudgetPeriod, "period"), nullable=False)
    limit_usd: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    # percentages of the limit at which a budget_warning event is published, once per period
    warn_at: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    hard_limit: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=True, server_default=sa.true()
    )
    status: Mapped[RuleStatus] = mapped_column(
        enum_column(RuleStatus, "status"), nullable=False, default=RuleStatus.ACTIVE, server_default="active"
    )
    # {period key: [thresholds already announced]}, so a warning fires once per period
    fired: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint("limit_usd > 0", name="limit_usd"),
        sa.CheckConstraint(
            "(scope = 'user' AND user_id IS NOT NULL AND session_id IS NULL)"
            " OR (scope = 'session' AND session_id IS NOT NULL)"
            " OR (scope = 'workspace' AND user_id IS NULL AND session_id IS NULL)",
            name="scope_target",
        ),
        sa.Index("ix_budgets_user_id", "user_id"),
        sa.Index("ix_budgets_session_id", "session_id"),
    )
