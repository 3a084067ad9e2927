"""The approval queue and the rule engine."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from cmdc_nb import accounts, activity, agents, approvals, sessions
from cmdc_nb.errors import InvalidInputError, InvalidStateError
from cmdc_nb.events import Event, topics
from cmdc_nb.store.models import Session, User
from cmdc_nb.workspace import Workspace


def item(ws: Workspace, user: User, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("approval_type", "file_write")
    kw.setdefault("title", "Write a file")
    kw.setdefault("payload", {"path": "/tmp/x"})
    return approvals.create_approval_item(user, ws=ws, **kw)


# --- the queue --------------------------------------------------------------------------------------


def test_the_queue_is_ordered_by_real_priority_then_age(ws: Workspace, user: User) -> None:
    made = {p: item(ws, user, title=p, priority=p) for p in ["low", "normal", "critical", "high", "normal"]}
    older_normal = approvals.list_pending_approvals(user, priority="normal", ws=ws)[0]
    titles = [i.title for i in approvals.list_pending_approvals(user, ws=ws)]
    assert titles == ["critical", "high", "normal", "normal", "low"]
    assert (
        older_normal.inserted_at
        <= approvals.list_pending_approvals(user, priority="normal", ws=ws)[1].inserted_at
    )
    first = approvals.list_pending_approvals(user, limit=2, ws=ws)
    rest = approvals.list_pending_approvals(user, limit=2, after=first.next_cursor, ws=ws)
    last = approvals.list_pending_approvals(user, limit=2, after=rest.next_cursor, ws=ws)
    assert [i.title for i in [*first, *rest, *last]] == titles and not last.has_next
    assert approvals.count_pending_approvals(user, ws=ws) == 5
    approvals.approve_item(made["critical"], user, ws=ws)
    assert approvals.count_pending_approvals(user, ws=ws) == 4


def test_decisions_are_recorded_and_final(ws: Workspace, user: User) -> None:
    got: list[Event] = []
    ws.bus.subscribe(topics.user_approvals(user.id), got.append)
    a = item(ws, user)
    out = approvals.approve_item(a, user, note="fine", modified_payload={"path": "/tmp/y"}, ws=ws)
    assert (out.status, out.decided_by_id, out.decision_note) == ("approved", user.id, "fine")
    assert out.modified_payload == {"path": "/tmp/y"} and out.meta["edit"]["path"]["from"] == "/tmp/x"
    assert [e.type for e in got] == ["approval_created", "approval_approved"]
    with pytest.raises(InvalidStateError):
        approvals.deny_item(a, user, ws=ws)
    b = approvals.deny_item(item(ws, user), user, note="no", ws=ws)
    assert b.status == "denied"
    actions = {e.action for e in activity.search_activity(resource_type="approval_item", ws=ws)}
    assert actions == {"approval.create", "approval.approve", "approval.deny"}


def test_bad_items_are_refused(ws: Workspace, user: User) -> None:
    for kw, field in [
        ({"approval_type": "nuke"}, "approval_type"),
        ({"priority": "urgent"}, "priority"),
        ({"timeout_action": "ignore"}, "timeout_action"),
        ({"expires_in": -5}, "expires_in"),
        ({"title": ""}, "title"),
    ]:
        with pytest.raises(InvalidInputError) as info:
            item(ws, user, **kw)
        assert info.value.field == field
    assert approvals.count_pending_approvals(user, ws=ws) == 0


def test_expiry_honours_the_timeout_action(ws: Workspace, user: User, session: Session) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    tu = agents.create_tool_use(call, tool_name="shell", requires_approval=True, expires_in=30, ws=ws)
    to_approve = item(ws, user, expires_in=30, timeout_action="approve")
    to_escalate = item(ws, user, expires_in=30, timeout_action="escalate", priority="high")
    later = item(ws, user, expires_in=3600)
    never = item(ws, user)
    report = approvals.expire_old_approvals(now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5), ws=ws)
    assert (report.expired, report.approved, report.escalated) == (
        [tu.approval_id],
        [to_approve.id],
        [to_escalate.id],
    )
    assert approvals.get_approval_item(tu.approval_id, ws=ws).status == "expired"
    tool = agents.get_tool_use(tu, ws=ws)
    assert (tool.status, tool.denial_reason) == ("denied", "approval expired")
    assert approvals.get_approval_item(to_approve, ws=ws).status == "approved"
    esc = approvals.get_approval_item(to_escalate, ws=ws)
    assert (esc.status, esc.priority, esc.expires_at, esc.meta["escalations"][0]["from"]) == (
        "pending",
        "critical",
        None,
        "high",
    )
    assert {approvals.get_approval_item(i, ws=ws).status for i in (later, never)} == {"pending"}
    assert (
        approvals.expire_old_approvals(now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5), ws=ws).total
        == 0
    )


def test_session_queue(ws: Workspace, user: User, session: Session) -> None:
    mine = item(ws, user, session=session)
    item(ws, user)
    assert [i.id for i in approvals.list_session_pending_approvals(session, ws=ws)] == [mine.id]
    assert [i.id for i in approvals.list_pending_approvals(user, session=session, ws=ws)] == [mine.id]


# --- rules ------------------------------------------------------------------------------------------


def test_the_seed_readme_rule_works_with_real_glob_semantics(ws: Workspace, user: User) -> None:
    rule = approvals.create_approval_rule(
        user,
        name="Auto-approve temp files",
        approval_type="file_write",
        conditions={"path_pattern": "/tmp/**", "action": "create"},
        action="approve",
        max_auto_approvals_per_hour=100,
        ws=ws,
    )
    ok = item(ws, user, payload={"path": "/tmp/build/out.txt", "action": "create"})
    assert (ok.status, ok.auto_approval_rule_id) == ("auto_approved", rule.id)
    assert ok.auto_approval_reason == "rule 'Auto-approve temp files'"
    outside = item(ws, user, payload={"path": "/tmp/../etc/passwd", "action": "create"})
    other_action = item(ws, user, payload={"path": "/tmp/a", "action": "delete"})
    assert (outside.status, other_action.status) == ("pending", "pending")
    r = approvals.get_approval_rule(rule, ws=ws)
    assert (r.times_triggered, r.current_hour_count) == (1, 1) and r.hour_reset_at is not None


def test_deny_beats_approve_whatever_the_priority(ws: Workspace, user: User) -> None:
    approvals.create_approval_rule(
        user, name="all shell", action="approve", priority=100, tool_names=["shell"], ws=ws
    )
    deny = approvals.create_approval_rule(
        user,
        name="no rm",
        action="deny",
        priority=1,
        action_note="never rm",
        conditions={"command_pattern": ["rm **", "rm -rf **"]},
        ws=ws,
    )
    call = agents.create_agent_call(sessions.create_session(user, name="s", ws=ws), model="openai/x", ws=ws)
    tu = agents.create_tool_use(
        call, tool_name="shell", input={"command": "rm -rf build"}, requires_approval=True, ws=ws
    )
    assert (tu.status, tu.denial_reason) == ("denied", "never rm")
    it = approvals.get_approval_item(tu.approval_id, ws=ws)
    assert (it.status, it.auto_approval_rule_id) == ("denied", deny.id)
    ok = agents.create_tool_use(
        call, tool_name="shell", input={"command": "ls"}, requires_approval=True, ws=ws
    )
    assert ok.status == "approved"


def test_require_review_stops_lower_rules_but_not_higher_ones(ws: Workspace, user: User) -> None:
    approvals.create_approval_rule(
        user, name="review prod", action="require_review", priority=50, conditions={"env": "prod"}, ws=ws
    )
    approvals.create_approval_rule(user, name="all", action="approve", priority=10, ws=ws)
    assert item(ws, user, payload={"env": "prod"}).status == "pending"
    assert item(ws, user, payload={"env": "dev"}).status == "auto_approved"
    approvals.create_approval_rule(
        user,
        name="prod reads",
        action="approve",
        priority=90,
        conditions={"env": "prod", "op": "read"},
        ws=ws,
    )
    assert item(ws, user, payload={"env": "prod", "op": "read"}).status == "auto_approved"


def test_find_matching_rules_lists_matches_by_priority(ws: Workspace, user: User) -> None:
    low = approvals.create_approval_rule(user, name="low", action="approve", priority=1, ws=ws)
    high = approvals.create_approval_rule(user, name="high", action="require_review", priority=9, ws=ws)
    approvals.create_approval_rule(user, name="other type", action="approve", approval_type="plan", ws=ws)
    off = approvals.create_approval_rule(user, name="off", action="approve", ws=ws)
    approvals.disable_rule(off, ws=ws)
    it = item(ws, user)
    assert [r.id for r in approvals.find_matching_rules(user, it, ws=ws)] == [high.id, low.id]
    other = accounts.create_user("eve@example.com", ws=ws)
    assert approvals.find_matching_rules(other, it, ws=ws) == []
    assert [r.name for r in approvals.list_approval_rules(user, ws=ws)][:2] == ["high", "low"]
    assert [r.name for r in approvals.list_approval_rules(user, status="disabled", ws=ws)] == ["off"]


def test_try_auto_approve_reruns_rules_after_a_new_rule(ws: Workspace, user: User) -> None:
    it = item(ws, user, risk_level="low")
    assert approvals.try_auto_approve(it, ws=ws).outcome == "no_match"
    rule = approvals.create_approval_rule(
        user, name="low risk", action="approve", conditions={"risk_level": ["low"]}, ws=ws
    )
    decision = approvals.try_auto_approve(it, ws=ws)
    assert (decision.outcome, decision.rule.id, decision.item.status) == (
        "auto_approved",
        rule.id,
        "auto_approved",
    )
    assert approvals.try_auto_approve(it, ws=ws).outcome == "no_match"  # decided items are left alone


def test_rules_are_validated_updated_enabled_and_deleted(ws: Workspace, user: User) -> None:
    with pytest.raises(InvalidInputError) as info:
        approvals.create_approval_rule(user, name="x", action="approve", conditions={"branch": "("}, ws=ws)
    assert info.value.field == "conditions.branch"
    with pytest.raises(InvalidInputError):
        approvals.create_approval_rule(user, name="x", action="maybe", ws=ws)
    rule = approvals.create_approval_rule(user, name="x", action="approve", conditions={"k": "v"}, ws=ws)
    rule = approvals.update_approval_rule(rule, conditions={"k": "w"}, priority=5, ws=ws)
    assert (rule.conditions, rule.priority, rule.name) == ({"k": "w"}, 5, "x")
    assert item(ws, user, payload={"k": "w"}).status == "auto_approved"
    approvals.disable_rule(rule, ws=ws)
    assert item(ws, user, payload={"k": "w"}).status == "pending"
    approvals.enable_rule(rule, ws=ws)
    decided = item(ws, user, payload={"k": "w"})
    approvals.delete_approval_rule(rule, ws=ws)
    assert approvals.get_approval_item(decided, ws=ws).status == "auto_approved"
    assert len(approvals.list_approval_rules(user, ws=ws)) == 0


def test_scope_to_sessions_and_per_session_limit(ws: Workspace, user: User) -> None:
    s1 = sessions.create_session(user, name="one", ws=ws)
    s2 = sessions.create_session(user, name="two", ws=ws)
    approvals.create_approval_rule(
        user,
        name="s1 only",
        action="approve",
        applies_to_sessions=[s1.id],
        max_auto_approvals_per_session=2,
        ws=ws,
    )
    assert [item(ws, user, session=s1).status for _ in range(3)] == [
        "auto_approved",
        "auto_approved",
        "pending",
    ]
    assert item(ws, user, session=s2).status == "pending"
    assert item(ws, user).status == "pending"


def test_the_hourly_limit_is_a_sliding_window(ws: Workspace, user: User) -> None:
    rule = approvals.create_approval_rule(
        user, name="3/h", action="approve", max_auto_approvals_per_hour=3, ws=ws
    )
    assert [item(ws, user).status for _ in range(4)] == ["auto_approved"] * 3 + ["pending"]
    # Age two of the approvals past the hour: two slots free up (the seed's counter stayed stuck).
    with ws.transaction() as tx:
        from cmdc_nb.store.models import ApprovalItem

        olds = (
            tx.db.query(ApprovalItem)
            .filter_by(auto_approval_rule_id=rule.id)
            .order_by(ApprovalItem.decided_at)
            .limit(2)
        )
        for old in olds:
            old.decided_at = old.decided_at - dt.timedelta(minutes=61)
    assert [item(ws, user).status for _ in range(3)] == ["auto_approved", "auto_approved", "pending"]


def test_the_hourly_limit_holds_under_concurrency(ws: Workspace, user: User) -> None:
    approvals.create_approval_rule(user, name="5/h", action="approve", max_auto_approvals_per_hour=5, ws=ws)
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(2):
                results.append(item(ws, user).status)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results).count("auto_approved") == 5 and len(results) == 24


def test_a_remembered_decision_is_a_sticky_rule_for_that_session(
    ws: Workspace, user: User, session: Session
) -> None:
    call = agents.create_agent_call(session, model="openai/x", ws=ws)
    first = agents.create_tool_use(
        call, tool_name="shell", input={"command": "make test"}, requires_approval=True, ws=ws
    )
    agents.approve_tool_use(first, by=user, remember=True, ws=ws)
    rule = approvals.list_approval_rules(user, ws=ws)[0]
    assert (rule.is_sticky, rule.tool_names, rule.applies_to_sessions) == (True, ["shell"], [session.id])
    same = agents.create_tool_use(
        call, tool_name="shell", input={"command": "make test"}, requires_approval=True, ws=ws
    )
    different = agents.create_tool_use(
        call, tool_name="shell", input={"command": "make clean"}, requires_approval=True, ws=ws
    )
    assert (same.status, different.status) == ("approved", "pending")
    elsewhere = sessions.create_session(user, name="other", ws=ws)
    call2 = agents.create_agent_call(elsewhere, model="openai/x", ws=ws)
    assert (
        agents.create_tool_use(
            call2, tool_name="shell", input={"command": "make test"}, requires_approval=True, ws=ws
        ).status
        == "pending"
    )


def test_injections_are_never_auto_approved_end_to_end(ws: Workspace, user: User, session: Session) -> None:
    from tests.test_matching import COMMAND_RULES, INJECTIONS

    for i, pattern in enumerate(COMMAND_RULES):
        approvals.create_approval_rule(
            user,
            name=f"r{i}",
            action="approve",
            tool_names=["shell"],
            conditions={"command_pattern": pattern},
            ws=ws,
        )
    call = agents.create_agent_call(session, model="openai/x", ws=ws)
    statuses = {
        agents.create_tool_use(
            call, tool_name="shell", input={"command": c}, requires_approval=True, ws=ws
        ).status
        for c in INJECTIONS[:12]
    }
    assert statuses == {"pending"}
    ok = agents.create_tool_use(
        call, tool_name="shell", input={"command": "git status"}, requires_approval=True, ws=ws
    )
    assert ok.status == "approved"


def test_scope_to_workflows(ws: Workspace, user: User) -> None:
    # The workflow service arrives with the workflow engine; two rows by hand are enough here.
    from cmdc_nb.store.models import Workflow, WorkflowRun

    with ws.transaction() as tx:
        flows = [Workflow(user_id=user.id, name=n, slug=n) for n in ("review", "deploy")]
        tx.db.add_all(flows)
        tx.db.flush()
        runs = [WorkflowRun(workflow_id=f.id, user_id=user.id, workflow_snapshot={}) for f in flows]
        tx.db.add_all(runs)
    approvals.create_approval_rule(
        user, name="review gates", action="approve", applies_to_workflows=[flows[0].id], ws=ws
    )
    assert item(ws, user, approval_type="workflow_step", workflow_run=runs[0].id).status == "auto_approved"
    assert item(ws, user, approval_type="workflow_step", workflow_run=runs[1].id).status == "pending"
    assert item(ws, user, approval_type="workflow_step").status == "pending"
