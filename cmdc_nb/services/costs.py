"""What the agents cost: one record per priced (or unpriced) request, exact daily roll-ups, and queries.

`record_cost` prices a request from your price table or litellm's cost map (`cmdc_nb.pricing`); a model
with no price is recorded as *unpriced* (`cost_usd` None, counted in `unpriced_requests`), never as a
silent $0. Agent calls record their cost themselves when they complete.

The daily summary row is updated with one atomic upsert (`INSERT … ON CONFLICT DO UPDATE SET total =
total + excluded.total`), which also takes the row's lock, so the per-provider / model / session maps
updated next in the same transaction cannot lose an increment to a concurrent writer.

Days are UTC dates. Amounts are exact `Decimal` USD.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, fetch
from cmdc_nb._plumbing.workspace import Statement, Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.services import budgets
from cmdc_nb.services.cost_rows import CostRows, cost_rows, holds, remember_holds, summary_seen
from cmdc_nb.services.pricing import cached_price_in
from cmdc_nb.store.enums import CostService, CostSourceType
from cmdc_nb.store.models import CostDailySummary, CostRecord, CostRollup, User
from cmdc_nb.store.prepared import Pending, Prepared
from cmdc_nb.store.types import Money
from cmdc_nb.store.values import to_money, utcnow

__all__ = [
    "current_notebook_cell",
    "get_cost_by_model",
    "get_cost_by_provider",
    "get_cost_by_session",
    "get_daily_cost",
    "get_daily_summary",
    "get_monthly_cost",
    "get_weekly_cost",
    "list_daily_summaries",
    "record_cost",
    "regenerate_daily_summary",
]

UserRef = User | uuid.UUID | str


@checked
def current_notebook_cell() -> str | None:
    """The notebook cell running now — `cell:<id>` from JupyterLab, else `In[n]` — after the notebook's
    path when the kernel knows it (`reports/eval.ipynb:In[14]`; Jupyter Server hands its kernels the
    path as JPY_SESSION_NAME), or None outside IPython. IPython is never imported here: only looked up
    if it is already loaded."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        shell = ipython.get_ipython()
        if shell is None:
            return None
        kernel = getattr(shell, "kernel", None)
        parent = kernel.get_parent() if kernel is not None and hasattr(kernel, "get_parent") else None
        cell_id = (parent or {}).get("metadata", {}).get("cellId")
        cell = f"cell:{cell_id}" if cell_id else f"In[{shell.execution_count}]"
    except Exception:  # a half-initialised shell is not worth an error
        return None
    notebook = os.environ.get("JPY_SESSION_NAME")
    # a long path loses its start, never the cell
    return (f"{notebook}:{cell}" if notebook else cell)[-200:]


@checked
def record_cost(
    user: UserRef,
    *,
    source_type: CostSourceType | str,
    source_id: uuid.UUID | str,
    provider: str,
    model: str,
    service: CostService | str = CostService.CHAT,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cache_tokens_read: int = 0,
    cache_tokens_write: int = 0,
    cost_usd: Decimal | str | float | int | None = None,
    session: Any = None,
    workflow_run: Any = None,
    incurred_at: dt.datetime | None = None,
    notebook_cell: str | Unset | None = UNSET,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> CostRecord:
    """Record what one request cost. Without `cost_usd` it is priced here (see the module docstring).

    `tokens_in` excludes cached tokens, which are given (and billed) separately. The notebook cell is
    detected when running in a notebook, so costs can be grouped by cell.
    """
    fields = {
        "user_id": v.id_of(user, "user"),
        "source_type": v.choice(CostSourceType, source_type, "source_type"),
        "source_id": v.uuid_of(source_id, "source_id"),
        "provider": v.text(provider, "provider", max_len=64),
        "model": v.text(model, "model", max_len=200),
        "service": v.choice(CostService, service, "service"),
        "tokens_in": v.count(tokens_in, "tokens_in"),
        "tokens_out": v.count(tokens_out, "tokens_out"),
        "cache_tokens_read": v.count(cache_tokens_read, "cache_tokens_read"),
        "cache_tokens_write": v.count(cache_tokens_write, "cache_tokens_write"),
        "session_id": v.id_of(session, "session") if session is not None else None,
        "workflow_run_id": v.id_of(workflow_run, "workflow_run") if workflow_run is not None else None,
        "meta": dict(metadata or {}),
    }
    if cost_usd is not None:
        explicit = to_money(cost_usd, field="cost_usd")
        if explicit < 0:
            raise InvalidInputError("must not be negative", field="cost_usd")
    at = v.aware(incurred_at, "incurred_at") if incurred_at is not None else utcnow()
    cell = current_notebook_cell() if isinstance(notebook_cell, Unset) else notebook_cell
    with get_workspace(ws).transaction() as tx:
        return insert_cost_in(
            tx, at=at, cell=cell, cost_usd=explicit if cost_usd is not None else None, **fields
        )


def insert_cost_in(
    tx: Tx, *, at: dt.datetime, cell: str | None, cost_usd: Decimal | None, **fields: Any
) -> CostRecord:
    """`record_cost` inside an open transaction (validated fields). For other services."""
    price = None
    if cost_usd is None:
        price = cached_price_in(tx.ws, tx.db, fields["model"], fields["provider"])
        if price is not None:
            cost_usd = price.cost(
                tokens_in=fields["tokens_in"],
                tokens_out=fields["tokens_out"],
                cache_read=fields["cache_tokens_read"],
                cache_write=fields["cache_tokens_write"],
            )
    record = CostRecord(
        id=uuid.uuid4(),
        incurred_at=at,
        day=at.date(),
        notebook_cell=cell,
        cost_usd=cost_usd,
        price_per_million_in_usd=price.input_per_million_usd if price else None,
        price_per_million_out_usd=price.output_per_million_usd if price else None,
        **fields,
    )
    if price is not None:
        record.meta = {**record.meta, "price_source": price.source}
    tx.db.add(record)
    tx.db.flush()
    summary = _add_to_summary(tx, record)
    _add_to_maps(tx, record, summary)
    _announce(tx, record)
    budgets.announce_in(tx, record)
    return record


def write_cost_rows_in(tx: Tx, rows: CostRows) -> Callable[[], uuid.UUID]:
    """Write a cost's rows with `Prepared` statements only (so inside a `store.prepared.pipeline` too):
    the stored agent round's fast path, which needs no row object back. Returns what reads the daily
    summary's id, once the results are in; then `announce_cost_in` and `cost_rest_in`."""
    conn = tx.connection()
    _INSERT_COST.run(conn, rows.record)
    summary = _summary_upsert(conn.dialect.name).pending(conn, rows.summary)
    _rollup_upsert(conn.dialect.name).run(conn, rows.rollup)
    return lambda: _returned_id(summary)


def announce_cost_in(to: Tx | Statement, rows: CostRows) -> None:
    """A cost's event, queued on `to` (a transaction, or `Workspace.statement`'s statement) where the
    services queue it; then, in a transaction, `cost_rest_in`."""
    _announce(to, SimpleNamespace(**rows.record))


def cost_rest_in(tx: Tx, rows: CostRows, summary_id: Callable[[], uuid.UUID]) -> None:
    """Once a cost's rows are written and announced, what is left, after any pipeline and before the
    commit: a priced call's amounts in the daily summary's maps (a read and a write, which a $0 call
    mostly skips) and budget warnings. `summary_id` gives the daily summary's id, read only when
    needed."""
    record = SimpleNamespace(**rows.record)
    _add_to_maps(tx, record, summary_id)
    budgets.announce_in(tx, cast(CostRecord, record))  # the namespace has every field it reads


def _returned_id(pending: Pending) -> uuid.UUID:
    returned = pending.fetchone()
    assert returned is not None  # an upsert always returns its row
    return cast(uuid.UUID, returned[0])


def _announce(to: Tx | Statement, record: Any) -> None:
    to.publish(
        topics.user_costs(record.user_id),
        "cost_recorded",
        {
            "cost_record_id": str(record.id),
            "user_id": str(record.user_id),
            "session_id": str(record.session_id) if record.session_id else None,
            "provider": record.provider,
            "model": record.model,
            "tokens_in": record.tokens_in,
            "tokens_out": record.tokens_out,
            "cost_usd": _usd(record.cost_usd) if record.cost_usd is not None else None,
            "priced": record.cost_usd is not None,
        },
    )


_INSERT_COST = Prepared(sa.insert(CostRecord))


@functools.cache
def _summary_upsert(dialect: str) -> Prepared:
    """The daily summary's upsert, built once per dialect (building it, `excluded` and all, cost more
    than running it); each call passes its values."""
    t = CostDailySummary.__table__
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(t)
    ex = stmt.excluded
    upsert = stmt.on_conflict_do_update(
        index_elements=[t.c.user_id, t.c.day],
        set_={
            "total_cost_usd": t.c.total_cost_usd + ex.total_cost_usd,
            "total_tokens_in": t.c.total_tokens_in + ex.total_tokens_in,
            "total_tokens_out": t.c.total_tokens_out + ex.total_tokens_out,
            "total_requests": t.c.total_requests + ex.total_requests,
            "unpriced_requests": t.c.unpriced_requests + ex.unpriced_requests,
            "updated_at": ex.updated_at,
        },
    )
    return Prepared(upsert.returning(t.c.id))


@functools.cache
def _rollup_upsert(dialect: str) -> Prepared:
    t = CostRollup.__table__
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(t)
    ex = stmt.excluded
    return Prepared(
        stmt.on_conflict_do_update(
            index_elements=[t.c.user_id, t.c.day, t.c.provider, t.c.model],
            set_={
                name: t.c[name] + ex[name]
                for name in ("cost_usd", "requests", "unpriced_requests", "tokens_in", "tokens_out")
            },
        )
    )


def _add_to_summary(tx: Tx, r: Any) -> Callable[[], uuid.UUID]:
    """The daily summary's totals and the roll-up, for an ORM cost record (`record_cost`). Returns
    what reads the summary's id once the results are in."""
    rows = cost_rows(
        None, at=r.incurred_at, cell=None, cost_usd=r.cost_usd,
        **{k: getattr(r, k) for k in ("user_id", "provider", "model", "tokens_in", "tokens_out",
                                       "cache_tokens_read", "cache_tokens_write")},
    )  # fmt: skip
    conn = tx.connection()
    summary = _summary_upsert(conn.dialect.name).pending(conn, rows.summary)
    _rollup_upsert(conn.dialect.name).run(conn, rows.rollup)
    return lambda: _returned_id(summary)


def _add_to_maps(tx: Tx, r: Any, summary_id_of: Callable[[], uuid.UUID]) -> None:
    """A priced cost's amount in its daily summary's per-provider, -model and -session maps."""
    if r.cost_usd is None:
        return
    cost = r.cost_usd
    summary_id = summary_id_of()
    db = tx.ws.engine.url
    summary_seen(db, r.user_id, r.day, summary_id)
    keys = (summary_id, r.provider, r.model, r.session_id)
    if not cost and holds(db, keys):
        return  # adding $0 to amounts the row already holds changes nothing: no read, no write
    # The upsert holds the row lock until commit, so this read-add-write of the maps is safe.
    row = fetch(tx.db, CostDailySummary, summary_id, "cost_daily_summary", lock=True)
    held = (
        r.provider in row.cost_by_provider
        and r.model in row.cost_by_model
        and (r.session_id is None or str(r.session_id) in row.cost_by_session)
    )
    row.cost_by_provider = _plus(row.cost_by_provider, r.provider, cost)
    row.cost_by_model = _plus(row.cost_by_model, r.model, cost)
    if r.session_id is not None:
        row.cost_by_session = _plus(row.cost_by_session, str(r.session_id), cost)
    tx.db.flush()
    if held:  # seen in the row before this transaction touched it: committed, not just ours
        remember_holds(db, keys)


def _rebuild_rollup(tx: Tx, user_id: uuid.UUID, day: dt.date) -> None:
    c = CostRecord
    tx.db.execute(sa.delete(CostRollup).where(CostRollup.user_id == user_id, CostRollup.day == day))
    rows = tx.db.execute(
        sa.select(
            c.provider,
            c.model,
            sa.func.sum(c.cost_usd),
            sa.func.count(),
            sa.func.count(c.cost_usd),
            sa.func.sum(c.tokens_in + c.cache_tokens_read + c.cache_tokens_write),
            sa.func.sum(c.tokens_out),
        )
        .where(c.user_id == user_id, c.day == day)
        .group_by(c.provider, c.model)
    ).all()
    if rows:
        tx.db.execute(
            sa.insert(CostRollup),
            [
                {"user_id": user_id, "day": day, "provider": p, "model": m, "cost_usd": cost or Decimal(0),
                 "requests": n, "unpriced_requests": n - priced, "tokens_in": t_in, "tokens_out": t_out}
                for p, m, cost, n, priced, t_in, t_out in rows
            ],
        )  # fmt: skip


def _plus(amounts: Mapping[str, Any], key: str, add: Decimal) -> dict[str, str]:
    # Amounts are kept as decimal strings in JSON, so they stay exact on both backends.
    out = {k: str(val) for k, val in amounts.items()}
    out[key] = _usd(to_money(Decimal(out.get(key, "0")) + add))
    return out


def _usd(amount: Decimal) -> str:
    """Fixed-point text (`0.00000000004`, not `4E-11`), exact, for JSON maps and events."""
    return format(amount, "f")


@checked
def regenerate_daily_summary(user: UserRef, day: dt.date, *, ws: Workspace | None = None) -> CostDailySummary:
    """Recompute one day's summary from its cost records (and create it if missing)."""
    uid = v.id_of(user, "user")
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise InvalidInputError("expected a date", field="day")
    with get_workspace(ws).transaction() as tx:
        records = list(
            tx.db.scalars(sa.select(CostRecord).where(CostRecord.user_id == uid, CostRecord.day == day))
        )
        row = tx.db.scalar(
            sa.select(CostDailySummary)
            .where(CostDailySummary.user_id == uid, CostDailySummary.day == day)
            .with_for_update()
        )
        if row is None:
            row = CostDailySummary(user_id=uid, day=day)
            tx.db.add(row)
        by_provider: dict[str, Any] = {}
        by_model: dict[str, Any] = {}
        by_session: dict[str, Any] = {}
        priced = [r for r in records if r.cost_usd is not None]
        for r in priced:
            by_provider = _plus(by_provider, r.provider, r.cost_usd or Decimal(0))
            by_model = _plus(by_model, r.model, r.cost_usd or Decimal(0))
            if r.session_id is not None:
                by_session = _plus(by_session, str(r.session_id), r.cost_usd or Decimal(0))
        row.total_cost_usd = sum((r.cost_usd or Decimal(0) for r in priced), Decimal(0))
        row.total_tokens_in = sum(r.tokens_in + r.cache_tokens_read + r.cache_tokens_write for r in records)
        row.total_tokens_out = sum(r.tokens_out for r in records)
        row.total_requests = len(records)
        row.unpriced_requests = len(records) - len(priced)
        row.cost_by_provider, row.cost_by_model, row.cost_by_session = by_provider, by_model, by_session
        tx.db.flush()
        _rebuild_rollup(tx, uid, day)
    return row


def _today() -> dt.date:
    return utcnow().date()


def _sum_days(user: UserRef, since: dt.date, until: dt.date | None, ws: Workspace | None) -> Decimal:
    stmt = sa.select(sa.func.sum(CostDailySummary.total_cost_usd, type_=Money())).where(
        CostDailySummary.user_id == v.id_of(user, "user"), CostDailySummary.day >= since
    )
    if until is not None:
        stmt = stmt.where(CostDailySummary.day <= until)
    with get_workspace(ws).read() as db:
        total = db.scalar(stmt)
    return total if total is not None else Decimal(0)


@checked
def get_daily_cost(user: UserRef, *, day: dt.date | None = None, ws: Workspace | None = None) -> Decimal:
    """The priced total of one UTC day (today by default)."""
    user = access.scope_user(get_workspace(ws), user)
    d = day or _today()
    return _sum_days(user, d, d, ws)


@checked
def get_weekly_cost(user: UserRef, *, ws: Workspace | None = None) -> Decimal:
    """The last 7 UTC days, today included (the seed's query spanned 8)."""
    user = access.scope_user(get_workspace(ws), user)
    return _sum_days(user, _today() - dt.timedelta(days=6), None, ws)


@checked
def get_monthly_cost(user: UserRef, *, ws: Workspace | None = None) -> Decimal:
    """From the first of this UTC month."""
    user = access.scope_user(get_workspace(ws), user)
    return _sum_days(user, _today().replace(day=1), None, ws)


def _by(column: Any, user: UserRef, days: int, ws: Workspace | None) -> dict[str, Decimal]:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInputError("must be a positive number of days", field="days")
    stmt = (
        sa.select(column, sa.func.sum(CostRecord.cost_usd, type_=Money()))
        .where(
            CostRecord.user_id == v.id_of(user, "user"),
            CostRecord.day >= _today() - dt.timedelta(days=days - 1),
            CostRecord.cost_usd.is_not(None),
        )
        .group_by(column)
    )
    with get_workspace(ws).read() as db:
        rows = db.execute(stmt).all()
    out = {str(key): total for key, total in rows if key is not None}
    return dict(sorted(out.items(), key=lambda kv: kv[1], reverse=True))


@checked
def get_cost_by_provider(user: UserRef, *, days: int = 30, ws: Workspace | None = None) -> dict[str, Decimal]:
    """Priced cost per provider over the last `days` UTC days, largest first."""
    user = access.scope_user(get_workspace(ws), user)
    return _by(CostRecord.provider, user, days, ws)


@checked
def get_cost_by_model(user: UserRef, *, days: int = 30, ws: Workspace | None = None) -> dict[str, Decimal]:
    user = access.scope_user(get_workspace(ws), user)
    return _by(CostRecord.model, user, days, ws)


@checked
def get_cost_by_session(user: UserRef, *, days: int = 30, ws: Workspace | None = None) -> dict[str, Decimal]:
    user = access.scope_user(get_workspace(ws), user)
    return _by(CostRecord.session_id, user, days, ws)


@checked
def get_daily_summary(
    user: UserRef, day: dt.date | None = None, *, ws: Workspace | None = None
) -> CostDailySummary | None:
    with get_workspace(ws).read() as db:
        return db.scalar(
            sa.select(CostDailySummary).where(
                CostDailySummary.user_id == v.id_of(user, "user"), CostDailySummary.day == (day or _today())
            )
        )


@checked
def list_daily_summaries(
    user: UserRef, *, days: int = 30, ws: Workspace | None = None
) -> list[CostDailySummary]:
    """Summaries of the last `days` UTC days, newest first (days with no cost have no row)."""
    user = access.scope_user(get_workspace(ws), user)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInputError("must be a positive number of days", field="days")
    with get_workspace(ws).read() as db:
        return list(
            db.scalars(
                sa.select(CostDailySummary)
                .where(
                    CostDailySummary.user_id == v.id_of(user, "user"),
                    CostDailySummary.day >= _today() - dt.timedelta(days=days - 1),
                )
                .order_by(CostDailySummary.day.desc())
            )
        )
