"""Budgets: spending limits per user, per session or for the workspace — per day, per month or in total.

Each budget announces `budget_warning` events as spending crosses its thresholds (50/80/100 % by
default), once per threshold per period — the period a cost was incurred in, so costs recorded
afterwards for an earlier day count in that day's period. `budget_forecast` gives the burn rate so far
and where the period will end at that rate. A *hard* budget also stops the next call before it is sent:
`check_budgets` (called by `agents.create_agent_call`) adds the call's worst case — its prompt counted
with a tokenizer plus all of `max_tokens` of output — to what was spent, and raises
`BudgetExceededError` naming the budget and the overrun when that would cross the limit.

>>> create_budget(name="monthly", limit_usd="20", period="monthly", user=user)   # doctest: +SKIP
>>> budget_forecast(budget, at=datetime(2026, 3, 16, tzinfo=UTC)).projected_usd    # doctest: +SKIP
Decimal('24.8')
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing import access, lookups
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, fetch
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import BudgetExceededError, InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.services.pricing import estimate_in
from cmdc_nb.store.enums import BudgetPeriod, BudgetScope, RuleStatus
from cmdc_nb.store.models import Budget, CostRecord, Session, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.types import Money
from cmdc_nb.store.values import to_money, utcnow

__all__ = [
    "DEFAULT_WARN_AT",
    "BudgetForecast",
    "BudgetStatus",
    "budget_forecast",
    "budget_status",
    "check_budgets",
    "create_budget",
    "delete_budget",
    "disable_budget",
    "enable_budget",
    "get_budget",
    "list_budgets",
    "update_budget",
]

DEFAULT_WARN_AT = (50, 80, 100)
_REMEMBERED = 12  # periods whose warnings a budget remembers: a year of months, under two weeks of days
BudgetRef = Budget | uuid.UUID | str


@dataclass(frozen=True)
class BudgetStatus:
    """Where a budget stands in a period: the current one, or the one `budget_status(at=…)` asked for."""

    budget: Budget
    period_key: str
    spent_usd: Decimal
    limit_usd: Decimal

    @property
    def remaining_usd(self) -> Decimal:
        return self.limit_usd - self.spent_usd

    @property
    def percent(self) -> Decimal:
        return (self.spent_usd / self.limit_usd * 100).quantize(Decimal("0.01"))


def _period(period: BudgetPeriod, at: dt.datetime) -> tuple[str, dt.date | None, dt.date | None]:
    """The period holding `at`: its key (for remembering warnings), its first day and the day after its
    last (None, None: all time)."""
    day = at.date()
    if period is BudgetPeriod.DAILY:
        return day.isoformat(), day, day + dt.timedelta(days=1)
    if period is BudgetPeriod.MONTHLY:
        first = day.replace(day=1)
        return day.strftime("%Y-%m"), first, (first + dt.timedelta(days=32)).replace(day=1)
    return "total", None, None


def _spent(
    db: orm.Session, b: Budget, at: dt.datetime, *, upto: dt.datetime | None = None
) -> tuple[str, Decimal]:
    """What was spent in the period holding `at` (only costs incurred by `upto`, when given)."""
    key, since, until = _period(b.period, at)
    stmt = sa.select(sa.func.sum(CostRecord.cost_usd, type_=Money())).where(CostRecord.cost_usd.is_not(None))
    if b.scope is BudgetScope.USER:
        stmt = stmt.where(CostRecord.user_id == b.user_id)
    elif b.scope is BudgetScope.SESSION:
        stmt = stmt.where(CostRecord.session_id == b.session_id)
    if since is not None and until is not None:
        stmt = stmt.where(CostRecord.day >= since, CostRecord.day < until)
    if upto is not None:
        stmt = stmt.where(CostRecord.incurred_at <= upto)
    return key, db.scalar(stmt) or Decimal(0)


def _applicable(db: orm.Session, user_id: uuid.UUID | None, session_id: uuid.UUID | None) -> list[Budget]:
    scopes = [Budget.scope == BudgetScope.WORKSPACE]
    if user_id is not None:
        scopes.append(sa.and_(Budget.scope == BudgetScope.USER, Budget.user_id == user_id))
    if session_id is not None:
        scopes.append(sa.and_(Budget.scope == BudgetScope.SESSION, Budget.session_id == session_id))
    return list(
        db.scalars(
            sa.select(Budget)
            .where(Budget.status == RuleStatus.ACTIVE, sa.or_(*scopes))
            .order_by(Budget.inserted_at, Budget.id)
        )
    )


def applies_in(
    ws: Workspace,
    db: orm.Session | Callable[[], orm.Session],
    user_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
) -> bool:
    """Whether any active budget applies to this user's session, remembered per workspace until a
    budget changes (see `_plumbing.lookups`): with none defined, a call checks nothing. `db` may be
    a function giving the session, called only when the answer is not remembered (a light
    transaction's ORM session costs more to make than the remembered answer to read)."""

    def read() -> bool:
        return bool(_applicable(db() if callable(db) else db, user_id, session_id))

    return lookups.lookup(ws, ("budgets", user_id, session_id), read)


def _check_warn_at(warn_at: Sequence[Any]) -> list[int | float]:
    if isinstance(warn_at, str):
        raise InvalidInputError("give a list of percentages", field="warn_at")
    out = []
    for p in warn_at:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1000:
            raise InvalidInputError(f"percentages must be numbers above 0, got {p!r}", field="warn_at")
        out.append(p)
    return sorted(set(out))


def _check_limit(limit_usd: Any) -> Decimal:
    amount = to_money(limit_usd, field="limit_usd")
    if amount <= 0:
        raise InvalidInputError("must be more than $0", field="limit_usd")
    return amount


def _payload(b: Budget) -> dict[str, Any]:
    return {
        "budget_id": str(b.id),
        "name": b.name,
        "scope": b.scope.value,
        "period": b.period.value,
        "limit_usd": str(b.limit_usd),
        "user_id": str(b.user_id) if b.user_id else None,
        "session_id": str(b.session_id) if b.session_id else None,
    }


def _topic(b: Budget) -> str:
    return topics.user_costs(b.user_id) if b.user_id is not None else topics.workspace()


@checked
def create_budget(
    *,
    name: str,
    limit_usd: Decimal | str | float | int,
    period: BudgetPeriod | str = BudgetPeriod.MONTHLY,
    user: User | uuid.UUID | str | None = None,
    session: Session | uuid.UUID | str | None = None,
    warn_at: Sequence[int | float] = DEFAULT_WARN_AT,
    hard_limit: bool = True,
    ws: Workspace | None = None,
) -> Budget:
    """A budget for `session` if given, else for `user`, else for the whole workspace."""
    fields = {
        "name": v.text(name, "name", max_len=200),
        "limit_usd": _check_limit(limit_usd),
        "period": v.choice(BudgetPeriod, period, "period"),
        "warn_at": _check_warn_at(warn_at),
        "hard_limit": bool(hard_limit),
    }
    with lookups.changing(), get_workspace(ws).transaction() as tx:
        if session is not None:
            s = fetch(tx.db, Session, session, "session")
            budget = Budget(scope=BudgetScope.SESSION, session_id=s.id, user_id=s.user_id, **fields)
        elif user is not None:
            u = fetch(tx.db, User, user, "user")
            budget = Budget(scope=BudgetScope.USER, user_id=u.id, **fields)
        else:
            budget = Budget(scope=BudgetScope.WORKSPACE, **fields)
        tx.db.add(budget)
        tx.db.flush()
        tx.publish(_topic(budget), "budget_created", _payload(budget))
    return budget


@checked
def get_budget(budget: BudgetRef, *, ws: Workspace | None = None) -> Budget:
    with get_workspace(ws).read() as db:
        return fetch(db, Budget, budget, "budget")


@checked
def list_budgets(
    *,
    user: User | uuid.UUID | str | None = None,
    session: Session | uuid.UUID | str | None = None,
    limit: int = 50,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[Budget]:
    """Budgets, oldest first; with `user` / `session`, those that apply to them (workspace ones too)."""
    user = access.scope_user(get_workspace(ws), user)
    stmt = sa.select(Budget)
    if user is not None or session is not None:
        scopes = [Budget.scope == BudgetScope.WORKSPACE]
        if user is not None:
            scopes.append(sa.and_(Budget.scope == BudgetScope.USER, Budget.user_id == v.id_of(user, "user")))
        if session is not None:
            sid = v.id_of(session, "session")
            scopes.append(sa.and_(Budget.scope == BudgetScope.SESSION, Budget.session_id == sid))
        stmt = stmt.where(sa.or_(*scopes))
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=Budget.inserted_at,
            id_column=Budget.id,
            limit=limit,
            after=after,
            descending=False,
        )


@checked
def update_budget(
    budget: BudgetRef,
    *,
    name: str | Unset = UNSET,
    limit_usd: Decimal | str | float | int | Unset = UNSET,
    warn_at: Sequence[int | float] | Unset = UNSET,
    hard_limit: bool | Unset = UNSET,
    ws: Workspace | None = None,
) -> Budget:
    changes: dict[str, Any] = {}
    if not isinstance(name, Unset):
        changes["name"] = v.text(name, "name", max_len=200)
    if not isinstance(limit_usd, Unset):
        changes["limit_usd"] = _check_limit(limit_usd)
    if not isinstance(warn_at, Unset):
        changes["warn_at"] = _check_warn_at(warn_at)
    if not isinstance(hard_limit, Unset):
        changes["hard_limit"] = bool(hard_limit)
    with lookups.changing(), get_workspace(ws).transaction() as tx:
        b = fetch(tx.db, Budget, budget, "budget", lock=True)
        for key, value in changes.items():
            setattr(b, key, value)
        if "limit_usd" in changes or "warn_at" in changes:
            b.fired = {}  # a new limit re-arms its warnings
        tx.db.flush()
        tx.publish(_topic(b), "budget_updated", _payload(b))
    return b


def _set_status(budget: BudgetRef, status: RuleStatus, ws: Workspace | None) -> Budget:
    with lookups.changing(), get_workspace(ws).transaction() as tx:
        b = fetch(tx.db, Budget, budget, "budget", lock=True)
        b.status = status
        tx.db.flush()
        tx.publish(_topic(b), "budget_updated", _payload(b))
    return b


@checked
def enable_budget(budget: BudgetRef, *, ws: Workspace | None = None) -> Budget:
    return _set_status(budget, RuleStatus.ACTIVE, ws)


@checked
def disable_budget(budget: BudgetRef, *, ws: Workspace | None = None) -> Budget:
    return _set_status(budget, RuleStatus.DISABLED, ws)


@checked
def delete_budget(budget: BudgetRef, *, ws: Workspace | None = None) -> None:
    with lookups.changing(), get_workspace(ws).transaction() as tx:
        b = fetch(tx.db, Budget, budget, "budget", lock=True)
        payload, topic = _payload(b), _topic(b)
        tx.db.delete(b)
        tx.publish(topic, "budget_deleted", payload)


@checked
def budget_status(
    budget: BudgetRef, *, at: dt.datetime | None = None, ws: Workspace | None = None
) -> BudgetStatus:
    """Where the budget stands now — or, with `at`, where it stood then: in the period holding `at`,
    counting the costs incurred by `at`."""
    when = v.aware(at, "at") if at is not None else None
    with get_workspace(ws).read() as db:
        b = fetch(db, Budget, budget, "budget")
        key, spent = _spent(db, b, when or utcnow(), upto=when)
    return BudgetStatus(b, key, spent, b.limit_usd)


@dataclass(frozen=True)
class BudgetForecast:
    """Where a budget is heading: what its period has burnt per day so far, and what it will have spent
    by the period's end at that rate. `limit_at` is when that rate reaches the limit — None if it
    already has, or will not before the period ends."""

    status: BudgetStatus
    at: dt.datetime
    period_start: dt.datetime
    period_end: dt.datetime  # the first moment after the period
    burn_rate_usd_per_day: Decimal
    projected_usd: Decimal
    limit_at: dt.datetime | None

    @property
    def projected_percent(self) -> Decimal:
        return (self.projected_usd / self.status.limit_usd * 100).quantize(Decimal("0.01"))


_DAY_US = 86_400_000_000


def _days(span: dt.timedelta) -> Decimal:
    return Decimal(span // dt.timedelta(microseconds=1)) / _DAY_US


@checked
def budget_forecast(
    budget: BudgetRef, *, at: dt.datetime | None = None, ws: Workspace | None = None
) -> BudgetForecast:
    """The burn rate of a daily or monthly budget's period so far (spent ÷ days elapsed, at `at`,
    default now) and the spend it projects for the period's end.

    >>> f = budget_forecast(monthly, at=datetime(2026, 3, 16, tzinfo=UTC))          # doctest: +SKIP
    >>> f.burn_rate_usd_per_day, f.projected_usd, f.limit_at                         # doctest: +SKIP
    """
    when = v.aware(at, "at") if at is not None else utcnow()
    status = budget_status(budget, at=when, ws=ws)
    _, first, after = _period(status.budget.period, when)
    if first is None or after is None:
        raise InvalidInputError("a total budget has no period end to project to", field="budget")
    start, end = (dt.datetime.combine(d, dt.time(), dt.UTC) for d in (first, after))
    elapsed = _days(when - start)
    rate = to_money(status.spent_usd / elapsed) if elapsed > 0 else Decimal(0)
    projected = to_money(status.spent_usd + rate * _days(end - when))
    limit_at = None
    if rate > 0 and status.spent_usd < status.limit_usd:
        reach = when + dt.timedelta(days=float((status.limit_usd - status.spent_usd) / rate))
        limit_at = reach if reach < end else None
    return BudgetForecast(status, when, start, end, rate, projected, limit_at)


def check_in(
    db: orm.Session, *, user_id: uuid.UUID | None, session_id: uuid.UUID | None, estimate_usd: Decimal
) -> list[BudgetStatus]:
    """`check_budgets` inside an open session. For other services."""
    now = utcnow()
    out = []
    for b in _applicable(db, user_id, session_id):
        key, spent = _spent(db, b, now)
        status = BudgetStatus(b, key, spent, b.limit_usd)
        if b.hard_limit and spent + estimate_usd > b.limit_usd:
            overrun = spent + estimate_usd - b.limit_usd
            db.expunge(b)  # the error outlives the rolled-back transaction; keep its budget readable
            raise BudgetExceededError(
                f"{b.scope.value} budget {b.name!r} ({b.period.value}, ${b.limit_usd}): ${spent} spent, "
                f"this call could cost up to ${estimate_usd}, which would exceed it by ${overrun}",
                budget=b,
                overrun_usd=overrun,
            )
        out.append(status)
    return out


def guard_call_in(
    db: orm.Session,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID | None,
    model: str,
    provider: str | None,
    messages: Sequence[Any],
    system_prompt: str | None,
    max_tokens: int | None,
    ws: Workspace | None = None,
) -> None:
    """Refuse a call whose worst case would cross a hard budget. Counts tokens only when a hard
    budget applies. For other services (`agents.create_agent_call`); `ws` remembers that none does."""
    if ws is not None and not applies_in(ws, db, user_id, session_id):
        return
    if not any(b.hard_limit for b in _applicable(db, user_id, session_id)):
        return
    estimate = estimate_in(
        db, model, list(messages), max_tokens=max_tokens, provider=provider, system_prompt=system_prompt
    )
    check_in(db, user_id=user_id, session_id=session_id, estimate_usd=estimate.cost_usd or Decimal(0))


@checked
def check_budgets(
    *,
    user: User | uuid.UUID | str | None = None,
    session: Session | uuid.UUID | str | None = None,
    estimate_usd: Decimal | str | float | int = 0,
    ws: Workspace | None = None,
) -> list[BudgetStatus]:
    """Raise BudgetExceededError if spending `estimate_usd` more would cross a hard budget that applies
    to `user` / `session` (or the workspace); else the status of each applicable budget."""
    estimate = to_money(estimate_usd, field="estimate_usd")
    with get_workspace(ws).read() as db:
        return check_in(
            db,
            user_id=v.id_of(user, "user") if user is not None else None,
            session_id=v.id_of(session, "session") if session is not None else None,
            estimate_usd=estimate,
        )


def announce_in(tx: Tx, record: CostRecord) -> None:
    """After a cost is recorded: publish `budget_warning` for each threshold newly crossed in the
    period the cost was incurred in (each budget row is locked while its warnings are remembered, so
    each fires once)."""
    if record.cost_usd is None or not applies_in(tx.ws, lambda: tx.db, record.user_id, record.session_id):
        return
    at = record.incurred_at
    for candidate in _applicable(tx.db, record.user_id, record.session_id):
        b = fetch(tx.db, Budget, candidate.id, "budget", lock=True)
        key, spent = _spent(tx.db, b, at)
        fired = set(b.fired.get(key, []))
        crossed = [p for p in b.warn_at if spent * 100 >= b.limit_usd * Decimal(str(p)) and p not in fired]
        if not crossed:
            continue
        # the newest periods are remembered (a late cost for last month warns only once too); older go
        b.fired = dict(sorted({**b.fired, key: sorted(fired | set(crossed))}.items())[-_REMEMBERED:])
        tx.db.flush()
        for p in crossed:
            tx.publish(
                _topic(b),
                "budget_warning",
                {
                    **_payload(b),
                    "threshold_percent": p,
                    "spent_usd": str(spent),
                    "period": key,
                    "incurred_at": at.isoformat(),
                },
            )
