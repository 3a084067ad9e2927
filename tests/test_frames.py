"""DataFrames: typed columns on both backends, filters, cuts, and money exact from record to frame."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pandas as pd
import pytest

from cmdc_nb import agents, costs, frames, pricing, sessions
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.models import User
from cmdc_nb.workspace import Workspace

UTC = dt.UTC


def record(ws: Workspace, user: User, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("source_type", "agent_call")
    kw.setdefault("source_id", uuid.uuid4())
    kw.setdefault("provider", "openai")
    return costs.record_cost(user, ws=ws, **kw)


def test_money_stays_exact_from_record_to_summary_to_frame(ws: Workspace, user: User) -> None:
    pricing.set_model_price(
        "tiny", input_per_million_usd="0.000001", output_per_million_usd="0.000003", ws=ws
    )
    s = sessions.create_session(user, name="s", tags=["exp"], ws=ws)
    for _ in range(3):
        record(ws, user, model="tiny", tokens_in=7, tokens_out=3, session=s, notebook_cell="In[4]")
    record(ws, user, model="mystery/x", provider="mystery", tokens_in=1)  # unpriced
    df = frames.costs_frame(user=user, ws=ws)
    assert str(df["cost_usd"].dtype) == "decimal128(38, 12)[pyarrow]"
    assert (
        df["cost_usd"].sum()
        == Decimal("0.000000000048")
        == costs.get_daily_summary(user, ws=ws).total_cost_usd
    )
    assert df["cost_usd"].isna().sum() == 1 and df["priced"].tolist() == [True, True, True, False]
    assert str(df["incurred_at"].dtype) == "datetime64[us, UTC]" and str(df["day"].dtype) == "datetime64[s]"
    for col in ("user_id", "session_id", "provider", "model", "notebook_cell"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col
    assert set(df["session_id"].dropna()) == {str(s.id)}
    daily = frames.by_day(df, by="model")
    assert daily.loc[daily["model"] == "tiny", "cost_usd"].iloc[0] == Decimal("0.000000000048")
    sql = frames.daily_costs(user=user, by="model", ws=ws)
    tiny = sql[sql["model"] == "tiny"].iloc[0]
    assert (tiny["cost_usd"], tiny["requests"]) == (Decimal("0.000000000048"), 3)
    assert sql.loc[sql["model"] == "mystery/x", "unpriced_requests"].iloc[0] == 1
    by_cell = frames.daily_costs(user=user, by="notebook_cell", ws=ws)
    assert by_cell.loc[by_cell["notebook_cell"] == "In[4]", "cost_usd"].iloc[0] == Decimal("0.000000000048")
    assert len(frames.costs_frame(tags=["exp"], ws=ws)) == 3
    slim = frames.costs_frame(columns=["day", "model", "cost_usd"], ws=ws)
    assert list(slim.columns) == ["day", "model", "cost_usd"] and slim["cost_usd"].sum() == Decimal(
        "0.000000000048"
    )
    with pytest.raises(InvalidInputError, match="choose from"):
        frames.costs_frame(columns=["colour"], ws=ws)


def test_filters_and_cuts(ws: Workspace, user: User) -> None:
    now = dt.datetime.now(UTC)
    a = sessions.create_session(user, name="a", ws=ws)
    b = sessions.create_session(user, name="b", ws=ws)
    record(ws, user, model="m1", cost_usd="1", session=a)
    record(ws, user, model="m2", cost_usd="5", session=b)
    record(ws, user, model="m2", cost_usd="2", session=b, incurred_at=now - dt.timedelta(days=3))
    df = frames.costs_frame(user=user, ws=ws)
    assert frames.by_model(df)[["model", "cost_usd", "rows"]].values.tolist() == [
        ["m2", Decimal(7), 2],
        ["m1", Decimal(1), 1],
    ]
    assert frames.by_session(df)["session_id"].tolist() == [str(b.id), str(a.id)]
    assert frames.top_n(df, "model", n=1)["model"].tolist() == ["m2"]
    assert len(frames.by_day(df)) == 2
    assert len(frames.costs_frame(since=now - dt.timedelta(days=1), ws=ws)) == 2
    assert len(frames.costs_frame(session=a, ws=ws)) == 1
    with pytest.raises(InvalidInputError, match="columns are"):
        frames.by_model(df.drop(columns="model"))
    with pytest.raises(InvalidInputError):
        frames.daily_costs(by="color", ws=ws)


def test_weeks_run_monday_to_sunday_and_say_their_change(ws: Workspace, user: User) -> None:
    def on(day: int, model: str, usd: str) -> None:
        record(ws, user, model=model, cost_usd=usd, incurred_at=dt.datetime(2026, 3, day, 12, tzinfo=UTC))

    on(2, "a", "1")  # Monday 2 March
    on(8, "b", "2")  # Sunday: the same week
    on(9, "a", "6")  # Monday 9 March
    on(23, "a", "1")  # two weeks on: nothing in the week of 16 March
    df = frames.costs_frame(user=user, ws=ws)
    weekly = frames.by_week(df)
    assert weekly["week"].dt.strftime("%a %d %b").tolist() == ["Mon 02 Mar", "Mon 09 Mar", "Mon 23 Mar"]
    assert weekly["cost_usd"].tolist() == [Decimal(3), Decimal(6), Decimal(1)]
    assert weekly["change"].tolist()[1] == 1.0  # $3 → $6
    assert weekly["change"].isna().tolist() == [True, False, True]  # no week before the first, nor the last
    per_model = frames.by_week(df, by="model")
    assert [
        (w.strftime("%d"), m, c) for w, m, c in per_model[["week", "model", "change"]].fillna(-1).values
    ] == [
        ("02", "a", -1),
        ("02", "b", -1),
        ("09", "a", 5.0),  # a: $1 → $6
        ("23", "a", -1),
    ]


def test_unit_costs_per_1k_tokens_and_per_call_are_exact(ws: Workspace, user: User) -> None:
    pricing.set_model_price("m", input_per_million_usd="1", output_per_million_usd="2", ws=ws)
    for _ in range(2):
        record(ws, user, model="m", tokens_in=1000, tokens_out=500)  # $0.001 + $0.001
    record(ws, user, model="cheap", cost_usd="0.0001", tokens_in=10, tokens_out=10)
    record(ws, user, provider="mystery", model="mystery/x", tokens_in=5, tokens_out=5)  # unpriced
    unit = frames.unit_costs(frames.costs_frame(user=user, ws=ws))
    assert unit["model"].tolist() == ["m", "cheap", "mystery/x"]  # costliest per call first, unpriced last
    assert unit[["calls", "tokens"]].values.tolist() == [[2, 3000], [1, 20], [1, 10]]
    assert unit["cost_usd"].tolist()[:2] == [Decimal("0.004"), Decimal("0.0001")]
    assert unit["usd_per_call"].tolist()[:2] == [Decimal("0.002"), Decimal("0.0001")]
    assert unit["usd_per_1k_tokens"].tolist()[:2] == [Decimal("0.001333333333"), Decimal("0.005")]
    assert unit.iloc[2][["cost_usd", "usd_per_1k_tokens", "usd_per_call"]].isna().all()
    assert str(unit["usd_per_call"].dtype) == "decimal128(38, 12)[pyarrow]"
    with pytest.raises(InvalidInputError, match="columns are"):
        frames.unit_costs(frames.costs_frame(user=user, ws=ws), by="colour")


def test_every_record_kind_has_a_frame(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="s", tags=["t"], ws=ws)
    sessions.create_message(s, role="user", content="hi", token_count=1, ws=ws)
    call = agents.create_agent_call(s, model="openai/gpt-4o-mini", ws=ws)
    agents.start_streaming(call, ws=ws)
    tu = agents.create_tool_use(call, tool_name="ls", ws=ws)
    agents.start_tool_execution(tu, ws=ws)
    agents.complete_tool_use(tu, exit_code=0, ws=ws)
    agents.complete_agent_call(call, tokens_in=10, tokens_out=5, ws=ws)
    calls = frames.calls_frame(user=user, ws=ws)
    assert calls["status"].tolist() == ["completed"] and calls["cost_usd"].iloc[0] == Decimal("0.0000045")
    assert (
        str(calls["first_token_at"].dtype) == "datetime64[us, UTC]" and calls["first_token_at"].notna().all()
    )
    tools = frames.tool_uses_frame(session=s, ws=ws)
    assert (tools["tool_name"].tolist(), tools["exit_code"].tolist()) == (["ls"], [0])
    msgs = frames.messages_frame(tags=["t"], ws=ws)
    assert (msgs["content"].tolist(), str(msgs["role"].dtype)) == (["hi"], "category")
    act = frames.activity_frame(user=user, ws=ws)
    assert {"session.create", "message.create", "agent.call.complete"} <= set(act["action"])
    ses = frames.sessions_frame(user=user, ws=ws)
    assert ses["total_cost_usd"].tolist() == [Decimal("0.0000045")] and ses["message_count"].tolist() == [1]
    empty = frames.costs_frame(user="00000000-0000-0000-0000-000000000000", ws=ws)
    assert len(empty) == 0 and "cost_usd" in empty.columns


def _same_frames(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert a.astype(str).values.tolist() == b.astype(str).values.tolist()


def test_daily_costs_from_rollups_equal_grouping_the_records(ws: Workspace, user: User) -> None:
    """The rollups `record_cost` keeps give exactly what grouping every record gives — cost (exact,
    NA when a group is all unpriced), requests, tokens — for each cut and whole-day window."""
    import random

    from cmdc_nb import frames as f

    rng = random.Random(3)
    pricing.set_model_price("cheap", input_per_million_usd="0.15", output_per_million_usd="0.6", ws=ws)
    pricing.set_model_price("dear", input_per_million_usd="3", output_per_million_usd="15", ws=ws)
    other = costs.record_cost  # a second user's costs must stay out of the first user's frame
    from cmdc_nb import accounts

    bob = accounts.create_user("bob@example.com", ws=ws)
    start = dt.datetime(2026, 11, 1, tzinfo=UTC)
    for _ in range(120):
        at = start + dt.timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
        model, provider = rng.choice([("cheap", "openai"), ("dear", "anthropic"), ("ghost", "nowhere")])
        who = user if rng.random() < 0.8 else bob
        other(who, source_type="agent_call", source_id=uuid.uuid4(), provider=provider, model=model,
              tokens_in=rng.randrange(1, 5000), tokens_out=rng.randrange(1, 900),
              cache_tokens_read=rng.randrange(0, 50), incurred_at=at, ws=ws)  # fmt: skip
    windows = [(None, None), (start + dt.timedelta(days=1), start + dt.timedelta(days=3))]
    for by in ("model", "provider", None):
        for since, until in windows:
            for who in (user, None):
                kw = {"user": who, "by": by, "since": since, "until": until, "ws": ws}
                rolled = f.daily_costs(**kw)  # type: ignore[arg-type]
                _same_frames(rolled, f.cuts._daily_from_records(**kw))  # type: ignore[arg-type]
                assert len(rolled) > 0
    ghost = f.daily_costs(user=user, by="model", ws=ws)
    assert ghost.loc[ghost["model"] == "ghost", "cost_usd"].isna().all()
    # a window that does not start at midnight is served from the records, exactly
    odd = f.daily_costs(user=user, by="model", since=start + dt.timedelta(hours=5), ws=ws)
    _same_frames(
        odd,
        f.cuts._daily_from_records(
            user=user, by="model", since=start + dt.timedelta(hours=5), until=None, ws=ws
        ),
    )


def test_regenerating_a_day_rebuilds_its_rollups(ws: Workspace, user: User) -> None:
    import sqlalchemy as sa

    from cmdc_nb.store.models import CostRollup

    pricing.set_model_price("m1", input_per_million_usd="1", output_per_million_usd="2", ws=ws)
    at = dt.datetime(2026, 11, 2, 12, tzinfo=UTC)
    for _ in range(3):
        record(ws, user, model="m1", tokens_in=1000, tokens_out=500, incurred_at=at)
    with ws.transaction() as tx:  # damage the rollup, as a crash in an older version might have
        tx.db.execute(sa.update(CostRollup).values(requests=99, cost_usd=Decimal(7)))
    assert frames.daily_costs(user=user, ws=ws)["requests"].iloc[0] == 99
    costs.regenerate_daily_summary(user, at.date(), ws=ws)
    fixed = frames.daily_costs(user=user, ws=ws).iloc[0]
    assert (fixed["requests"], fixed["cost_usd"]) == (3, Decimal("0.006"))


def test_approvals_frame_says_who_decided_each_item_and_how(ws: Workspace, user: User) -> None:
    """A person (with an edit, remembering the decision), the remembered decision, a rule, a deny rule
    and both timeouts, each named as it was decided; scoped, filtered and refusing what it cannot show."""
    from cmdc_nb import accounts, approvals

    s = sessions.create_session(user, name="audit", ws=ws)
    call = agents.create_agent_call(s, model="openai/x", ws=ws)

    def ask(**args: object):  # type: ignore[no-untyped-def]
        return agents.create_tool_use(call, tool_name="write_file", input=args, requires_approval=True, ws=ws)

    approvals.create_approval_rule(
        user, name="scratch", action="approve", tool_names=["write_file"],
        conditions={"path_pattern": "/tmp/**"}, ws=ws,
    )  # fmt: skip
    approvals.create_approval_rule(
        user, name="no etc", action="deny", tool_names=["write_file"],
        conditions={"path_pattern": "/etc/**"}, ws=ws,
    )  # fmt: skip
    by_rule, denied = ask(path="/tmp/a", text="x"), ask(path="/etc/passwd", text="x")
    asked = ask(path="/home/ada/r.md", text="draft")
    agents.approve_tool_use(asked, by=user, note="fine", input={"path": "/home/ada/r.md", "text": "final"},
                            remember=True, ws=ws)  # fmt: skip
    again = ask(path="/home/ada/r.md", text="final")  # the remembered arguments: decided by the sticky rule
    other = ask(path="/home/ada/other.md", text="final")  # other arguments: still waits
    assert (by_rule.status, denied.status, again.status, other.status) == (
        "approved",
        "denied",
        "approved",
        "pending",
    )
    for title, action in (("late", "approve"), ("gone", "deny")):  # both settled when their time runs out
        approvals.create_approval_item(
            user, approval_type="custom", title=title, payload={"x": title}, expires_in=60,
            timeout_action=action, session=s, ws=ws,
        )  # fmt: skip
    approvals.expire_old_approvals(now=dt.datetime.now(UTC) + dt.timedelta(minutes=5), ws=ws)

    df = frames.approvals_frame(user=user, ws=ws)
    assert list(df.columns) == list(frames.APPROVAL_COLUMNS)
    assert df[["how", "decided_by", "status"]].astype(object).values.tolist() == [
        ["rule", "scratch", "auto_approved"],
        ["rule", "no etc", "denied"],
        ["person", "ada@example.com", "approved"],
        ["remembered", "Always allow write_file", "auto_approved"],
        ["timeout", pd.NA, "approved"],
        ["timeout", pd.NA, "expired"],
    ]
    person = df[df["how"] == "person"].iloc[0]
    assert person["arguments"] == {"path": "/home/ada/r.md", "text": "draft"}
    assert person["edits"] == {"text": {"from": "draft", "to": "final"}} and person["note"] == "fine"
    assert df.loc[df["how"] == "remembered", "arguments"].iloc[0] == {
        "path": "/home/ada/r.md",
        "text": "final",
    }
    assert df["edits"].iloc[0] is None and df["tool_name"].tolist()[:4] == ["write_file"] * 4
    assert df["arguments"].iloc[-1] == {"x": "gone"} and pd.isna(df["tool_name"].iloc[-1])
    assert str(df["decided_at"].dtype) == "datetime64[us, UTC]" and df["decided_at"].is_monotonic_increasing
    for col in ("how", "status", "tool_name", "session_id", "rule_id", "decided_by_id"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col
    assert str(df.loc[df["how"] == "person", "decided_by_id"].iloc[0]) == str(user.id)

    assert frames.approvals_frame(status="denied", ws=ws)["decided_by"].tolist() == ["no etc"]
    assert len(frames.approvals_frame(session=s, until=person["decided_at"].to_pydatetime(), ws=ws)) == 2
    assert len(frames.approvals_frame(since=person["decided_at"].to_pydatetime(), ws=ws)) == 4
    rules = approvals.list_approval_rules(user, ws=ws)
    for rule in rules:
        approvals.delete_approval_rule(rule, ws=ws)
    kept = frames.approvals_frame(user=user, ws=ws)  # the rules are gone, the audit still says what decided
    assert kept["how"].tolist() == df["how"].tolist() and kept["decided_by"].tolist()[:2] == [
        "rule 'scratch'",
        "rule 'no etc'",
    ]
    assert kept["decided_by"].iloc[3].startswith("remembered from approval ") and kept["rule_id"].isna().all()
    stranger = accounts.create_user("eve@example.com", ws=ws)
    assert len(frames.approvals_frame(user=stranger, ws=ws)) == 0
    assert len(frames.approvals_frame(session=sessions.create_session(stranger, name="e", ws=ws), ws=ws)) == 0
    with pytest.raises(InvalidInputError, match="decided items only"):
        frames.approvals_frame(status="pending", ws=ws)
    with pytest.raises(InvalidInputError) as bad:
        frames.approvals_frame(status="maybe", ws=ws)
    assert bad.value.field == "status"
