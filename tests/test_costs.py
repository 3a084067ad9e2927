"""Pricing, cost records, exact daily roll-ups under concurrency, and budgets that stop a call."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import agents, budgets, costs, pricing, sessions
from cmdc_nb.errors import BudgetExceededError, InvalidInputError
from cmdc_nb.events import Event, topics
from cmdc_nb.store.models import ModelPrice, Session, User
from cmdc_nb.workspace import Workspace


def cost(ws: Workspace, user: User, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("source_type", "agent_call")
    kw.setdefault("source_id", uuid.uuid4())
    kw.setdefault("provider", "openai")
    kw.setdefault("model", "gpt-4o-mini")
    return costs.record_cost(user, ws=ws, **kw)


# --- pricing ----------------------------------------------------------------------------------------


def test_litellm_prices_are_read_exactly_and_offline() -> None:
    price = pricing.litellm_price("openai/gpt-4o-mini")
    assert price is not None and price.source == "litellm"
    assert (price.input_per_million_usd, price.output_per_million_usd) == (Decimal("0.15"), Decimal("0.6"))
    assert price.cost(tokens_in=1000, tokens_out=100) == Decimal("0.00021")
    assert pricing.litellm_price("no-such-model-anywhere") is None


def test_overrides_win_and_offline_models_are_free(ws: Workspace) -> None:
    pricing.set_model_price("gpt-4o-mini", input_per_million_usd="1", output_per_million_usd=2.5, ws=ws)
    assert pricing.get_price("openai/gpt-4o-mini", ws=ws).source == "override"
    assert pricing.get_price("gpt-4o-mini", ws=ws).output_per_million_usd == Decimal("2.5")
    pricing.set_model_price("gpt-4o-mini", input_per_million_usd="3", output_per_million_usd="4", ws=ws)
    assert [p.input_per_million_usd for p in pricing.list_model_prices(ws=ws)] == [Decimal(3)]
    pricing.delete_model_price("gpt-4o-mini", ws=ws)
    assert pricing.get_price("gpt-4o-mini", ws=ws).source == "litellm"
    free = pricing.get_price("scripted/echo", ws=ws)
    assert free is not None and free.cost(tokens_in=10**6, tokens_out=10**6) == 0
    assert pricing.get_price("mystery/model-x", ws=ws) is None
    with pytest.raises(InvalidInputError) as info:
        pricing.set_model_price("m", input_per_million_usd="-1", output_per_million_usd="1", ws=ws)
    assert info.value.field == "input_per_million_usd"


def test_token_counts_and_estimates_work_offline() -> None:
    assert pricing.count_tokens("hello world") == 2
    messages = [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "hi"}]
    assert pricing.count_tokens(messages) > pricing.count_tokens("hello world hi")


# --- records and summaries --------------------------------------------------------------------------


def test_sub_cent_prices_stay_exact_from_record_to_summary(
    ws: Workspace, user: User, session: Session
) -> None:
    pricing.set_model_price(
        "tiny", input_per_million_usd="0.000001", output_per_million_usd="0.000003", ws=ws
    )
    got: list[Event] = []
    ws.bus.subscribe(topics.user_costs(user.id), got.append)
    records = [cost(ws, user, model="tiny", tokens_in=7, tokens_out=3, session=session) for _ in range(3)]
    each = Decimal("0.000000000016")  # 7 × 1e-12 + 3 × 3e-12
    assert {r.cost_usd for r in records} == {each}
    summary = costs.get_daily_summary(user, ws=ws)
    assert summary.total_cost_usd == 3 * each and summary.total_requests == 3
    assert summary.cost_by_model == {"tiny": "0.000000000048"}  # exact, fixed-point text
    assert summary.cost_by_session == {str(session.id): "0.000000000048"}
    assert costs.get_daily_cost(user, ws=ws) == 3 * each
    assert got[0].type == "cost_recorded" and got[0].payload["cost_usd"] == "0.000000000016"


def test_unpriced_is_never_a_silent_zero(ws: Workspace, user: User) -> None:
    r = cost(ws, user, provider="mystery", model="mystery/model-x", tokens_in=100)
    assert r.cost_usd is None
    s = costs.get_daily_summary(user, ws=ws)
    assert (s.unpriced_requests, s.total_requests, s.total_cost_usd, s.cost_by_model) == (1, 1, 0, {})
    explicit = cost(ws, user, model="mystery/model-x", cost_usd="0.25")
    assert explicit.cost_usd == Decimal("0.25")


def test_queries_cover_day_week_month_and_breakdowns(ws: Workspace, user: User) -> None:
    now = dt.datetime.now(dt.UTC)
    cost(ws, user, cost_usd="1.00", provider="openai", model="gpt-4o")
    cost(ws, user, cost_usd="2.00", provider="anthropic", model="claude-sonnet-4-5")
    cost(
        ws,
        user,
        cost_usd="4.00",
        provider="anthropic",
        model="claude-sonnet-4-5",
        incurred_at=now - dt.timedelta(days=6),
    )
    cost(ws, user, cost_usd="8.00", provider="openai", model="gpt-4o", incurred_at=now - dt.timedelta(days=7))
    assert costs.get_daily_cost(user, ws=ws) == Decimal(3)
    assert costs.get_weekly_cost(user, ws=ws) == Decimal(7)  # 7 days, today included
    assert costs.get_cost_by_provider(user, days=7, ws=ws) == {"anthropic": Decimal(6), "openai": Decimal(1)}
    assert costs.get_cost_by_model(user, days=30, ws=ws) == {
        "gpt-4o": Decimal(9),
        "claude-sonnet-4-5": Decimal(6),
    }
    days = [s.day for s in costs.list_daily_summaries(user, days=30, ws=ws)]
    assert days == sorted(days, reverse=True) and len(days) == 3
    first = now.date().replace(day=1)
    expected = sum(
        Decimal(a) for a, d in [(3, 0), (4, 6), (8, 7)] if (now - dt.timedelta(days=d)).date() >= first
    )
    assert costs.get_monthly_cost(user, ws=ws) == expected


def test_concurrent_writers_never_lose_an_increment(ws: Workspace, user: User, session: Session) -> None:
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            start.wait()
            for _ in range(10):
                cost(
                    ws,
                    user,
                    cost_usd="0.000000000001",
                    tokens_in=1,
                    tokens_out=2,
                    session=session,
                    provider=f"p{i % 2}",
                    model=f"m{i % 4}",
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = costs.get_daily_summary(user, ws=ws)
    assert (s.total_requests, s.total_tokens_in, s.total_tokens_out) == (80, 80, 160)
    assert s.total_cost_usd == Decimal("0.00000000008")
    assert s.cost_by_provider == {"p0": "4E-11", "p1": "4E-11"} or {
        Decimal(x) for x in s.cost_by_provider.values()
    } == {Decimal("4E-11")}
    assert sum(Decimal(x) for x in s.cost_by_model.values()) == Decimal("8E-11")
    fresh = costs.regenerate_daily_summary(user, s.day, ws=ws)
    assert (fresh.total_cost_usd, fresh.total_requests) == (s.total_cost_usd, 80)
    assert {k: Decimal(x) for k, x in fresh.cost_by_model.items()} == {
        k: Decimal(x) for k, x in s.cost_by_model.items()
    }


def test_completed_agent_calls_record_their_cost(ws: Workspace, user: User, session: Session) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o-mini", ws=ws)
    done = agents.complete_agent_call(call, tokens_in=1000, tokens_out=100, ws=ws)
    assert done.cost_usd == Decimal("0.00021")  # priced from litellm's map
    assert sessions.get_session(session, ws=ws).total_cost_usd == Decimal("0.00021")
    assert costs.get_cost_by_session(user, ws=ws) == {str(session.id): Decimal("0.00021")}
    offline = agents.create_agent_call(session, model="mystery/model", ws=ws)
    assert agents.complete_agent_call(offline, tokens_in=5, tokens_out=5, ws=ws).cost_usd is None
    assert costs.get_daily_summary(user, ws=ws).unpriced_requests == 1


def test_remembered_prices_and_budgets_follow_every_change(
    ws: Workspace, user: User, session: Session, db_url: str, home_dir: Path
) -> None:
    """A call's price and "no budget applies" are remembered per workspace (no SELECT per call); a
    change through any Workspace of this process is seen by the next call, and on a workspace that
    shares events, so is another process's change announced on the bus."""
    other = cmdc_nb.connect(db_url, home=home_dir, make_default=False)

    def call(tokens: int = 1000, max_tokens: int | None = None) -> Decimal | None:
        c = agents.create_agent_call(session, model="openai/gpt-4o-mini", max_tokens=max_tokens, ws=ws)
        return agents.complete_agent_call(c, tokens_in=tokens, tokens_out=0, ws=ws).cost_usd

    try:
        assert call() == Decimal("0.00015")  # litellm's price, now remembered
        pricing.set_model_price(
            "gpt-4o-mini", input_per_million_usd="1", output_per_million_usd="1", ws=other
        )
        assert call() == Decimal("0.001")
        assert pricing.get_price("openai/gpt-4o-mini", ws=ws).source == "override"
        budgets.create_budget(name="cap", limit_usd="0.002", period="total", session=session, ws=other)
        with pytest.raises(BudgetExceededError):
            call(max_tokens=1000)  # up to $0.001 of output on $0.00115 spent
        budgets.disable_budget(budgets.list_budgets(session=session, ws=ws).entries[0], ws=other)
        assert call(max_tokens=1000) == Decimal("0.001")
        pricing.delete_model_price("gpt-4o-mini", ws=other)
        assert call() == Decimal("0.00015")
        if ws.shares_events:  # another process changed the row; the event bridge brings its event
            with ws.engine.begin() as conn:
                conn.execute(sa.insert(ModelPrice).values(
                    id=uuid.uuid4(), model="gpt-4o-mini", input_per_million_usd=Decimal(2),
                    output_per_million_usd=Decimal(2), inserted_at=dt.datetime.now(dt.UTC),
                    updated_at=dt.datetime.now(dt.UTC)))  # fmt: skip
            ws.bus.publish(topics.workspace(), "model_price_set", {"model": "gpt-4o-mini"})
            assert call() == Decimal("0.002")
    finally:
        other.close()


# --- budgets ----------------------------------------------------------------------------------------


def test_warnings_fire_once_per_threshold_and_period(ws: Workspace, user: User) -> None:
    b = budgets.create_budget(
        name="daily", limit_usd="10", period="daily", user=user, hard_limit=False, ws=ws
    )
    got: list[Event] = []
    ws.bus.subscribe(topics.user_costs(user.id), got.append, types=["budget_warning"])
    for amount in ("4", "1", "2", "0.5", "3"):
        cost(ws, user, cost_usd=amount)
    warnings = [e.payload["threshold_percent"] for e in got if e.type == "budget_warning"]
    assert warnings == [50, 80, 100]
    status = budgets.budget_status(b, ws=ws)
    assert (status.spent_usd, status.remaining_usd, status.percent) == (
        Decimal("10.5"),
        Decimal("-0.5"),
        Decimal("105.00"),
    )


def march(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, tzinfo=dt.UTC)


def test_a_budget_at_a_moment_its_burn_rate_and_month_end(ws: Workspace, user: User) -> None:
    monthly = budgets.create_budget(name="m", limit_usd="100", user=user, hard_limit=False, ws=ws)
    for amount, at in [
        ("50", dt.datetime(2026, 2, 20, tzinfo=dt.UTC)),  # February's
        ("10", march(1)),
        ("20", march(5)),
        ("30", march(10)),
        ("7", dt.datetime(2026, 4, 1, tzinfo=dt.UTC)),  # April's
    ]:
        cost(ws, user, cost_usd=amount, incurred_at=at)
    midnight = dt.datetime(2026, 3, 11, tzinfo=dt.UTC)
    status = budgets.budget_status(monthly, at=midnight, ws=ws)
    assert (status.period_key, status.spent_usd, status.percent) == ("2026-03", Decimal(60), Decimal("60.00"))
    assert budgets.budget_status(monthly, at=march(6, 0), ws=ws).spent_usd == Decimal(
        30
    )  # only costs by then
    f = budgets.budget_forecast(monthly, at=midnight, ws=ws)
    assert (f.period_start, f.period_end) == (march(1, 0), dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    assert f.burn_rate_usd_per_day == Decimal(6)  # $60 in 10 days
    assert f.projected_usd == Decimal(186) and f.projected_percent == Decimal("186.00")  # + 21 days × $6
    assert f.limit_at == march(17, 16)  # $40 left at $6 a day: 6 ⅔ days
    quiet = budgets.budget_forecast(monthly, at=march(1, 0), ws=ws)
    assert (quiet.burn_rate_usd_per_day, quiet.projected_usd, quiet.limit_at) == (0, 0, None)
    over = budgets.budget_forecast(monthly, at=dt.datetime(2026, 2, 28, tzinfo=dt.UTC), ws=ws)
    assert over.status.spent_usd == Decimal(50) and over.limit_at is None  # reached only after February
    total = budgets.create_budget(name="t", limit_usd="100", period="total", user=user, ws=ws)
    with pytest.raises(InvalidInputError) as info:
        budgets.budget_forecast(total, ws=ws)
    assert info.value.field == "budget"
    with pytest.raises(InvalidInputError):
        budgets.budget_status(monthly, at=dt.datetime(2026, 3, 1), ws=ws)  # naive: which zone?


def test_a_warning_belongs_to_the_month_its_cost_was_incurred_in(ws: Workspace, user: User) -> None:
    budgets.create_budget(name="m", limit_usd="10", user=user, hard_limit=False, ws=ws)
    got: list[Event] = []
    ws.bus.subscribe(topics.user_costs(user.id), lambda e: e.type == "budget_warning" and got.append(e))
    february = dt.datetime(2026, 2, 10, 9, tzinfo=dt.UTC)
    cost(ws, user, cost_usd="6", incurred_at=february)
    cost(ws, user, cost_usd="6", incurred_at=march(2))
    cost(ws, user, cost_usd="3", incurred_at=february + dt.timedelta(days=10))  # late, for February
    cost(ws, user, cost_usd="0.5", incurred_at=march(3))  # March's 50 % is not sent again
    assert [(e.payload["period"], e.payload["threshold_percent"], e.payload["spent_usd"]) for e in got] == [
        ("2026-02", 50, "6"),
        ("2026-03", 50, "6"),
        ("2026-02", 80, "9"),
    ]
    assert [dt.datetime.fromisoformat(e.payload["incurred_at"]) for e in got] == [
        february,
        march(2),
        february + dt.timedelta(days=10),
    ]


def test_the_call_that_would_cross_a_hard_limit_is_never_sent(
    ws: Workspace, user: User, session: Session
) -> None:
    pricing.set_model_price("openai/big", input_per_million_usd="1000", output_per_million_usd="1000", ws=ws)
    budgets.create_budget(name="session cap", limit_usd="1", period="total", session=session, ws=ws)
    sent: list[str] = []

    def send(prompt: str, max_tokens: int) -> None:
        # what the kernel does: record the call (which checks budgets), then send it
        agents.create_agent_call(
            session,
            model="openai/big",
            max_tokens=max_tokens,
            prompt_messages=[{"role": "user", "content": prompt}],
            ws=ws,
        )
        sent.append(prompt)

    send("small", 100)  # ≤ 1 + 100 tokens ≈ $0.11 worst case
    with pytest.raises(BudgetExceededError) as info:
        send("huge", 2000)  # $2 worst case
    assert sent == ["small"]
    assert info.value.budget.name == "session cap" and info.value.overrun_usd > Decimal(1)
    assert "session budget 'session cap'" in str(info.value)
    assert len(agents.list_agent_calls(session, ws=ws)) == 1  # the refused call left no row


def test_budget_scopes_and_validation(ws: Workspace, user: User, session: Session) -> None:
    w = budgets.create_budget(name="team", limit_usd="100", ws=ws)
    u = budgets.create_budget(name="me", limit_usd="5", user=user, ws=ws)
    s = budgets.create_budget(name="this", limit_usd="1", session=session, ws=ws)
    other = sessions.create_session(user, name="other", ws=ws)
    assert {b.id for b in budgets.list_budgets(user=user, session=session, ws=ws)} == {w.id, u.id, s.id}
    assert {b.id for b in budgets.list_budgets(session=other, ws=ws)} == {w.id}
    cost(ws, user, cost_usd="0.9", session=other)
    assert budgets.check_budgets(user=user, session=session, estimate_usd="0.5", ws=ws)
    with pytest.raises(BudgetExceededError) as info:
        budgets.check_budgets(user=user, session=session, estimate_usd="4.2", ws=ws)
    assert info.value.budget.id == u.id
    budgets.disable_budget(u, ws=ws)
    budgets.check_budgets(user=user, estimate_usd="4.2", ws=ws)
    budgets.update_budget(w, limit_usd="4", ws=ws)
    with pytest.raises(BudgetExceededError):
        budgets.check_budgets(user=user, estimate_usd="4.2", ws=ws)
    budgets.delete_budget(w, ws=ws)
    for kw, field in [
        ({"limit_usd": "0"}, "limit_usd"),
        ({"limit_usd": "1", "period": "weekly"}, "period"),
        ({"limit_usd": "1", "warn_at": [0]}, "warn_at"),
    ]:
        with pytest.raises(InvalidInputError) as bad:
            budgets.create_budget(name="x", ws=ws, **kw)
        assert bad.value.field == field


def test_costs_remember_the_notebook_cell(ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    class Kernel:
        def get_parent(self) -> dict:
            return {"metadata": {"cellId": "3f2a-cell"}}

    shell = types.SimpleNamespace(kernel=Kernel(), execution_count=7)
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert cost(ws, user, cost_usd="1").notebook_cell == "cell:3f2a-cell"
    shell.kernel = None
    assert costs.current_notebook_cell() == "In[7]"
    # started by Jupyter Server for a notebook, the kernel knows its path: the cell is named after it
    monkeypatch.setenv("JPY_SESSION_NAME", "reports/eval.ipynb")
    assert costs.current_notebook_cell() == "reports/eval.ipynb:In[7]"
    monkeypatch.setenv("JPY_SESSION_NAME", "deep/" * 50 + "eval.ipynb")
    assert costs.current_notebook_cell().endswith("/eval.ipynb:In[7]")  # a long path loses its start
    assert len(costs.current_notebook_cell()) == 200
    monkeypatch.delitem(sys.modules, "IPython")
    assert cost(ws, user, cost_usd="1").notebook_cell is None
