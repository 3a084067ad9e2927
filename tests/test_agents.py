"""Agent calls and tool uses: lifecycles, illegal moves, counters, and the approval item they share."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cmdc_nb import activity, agents, approvals, sessions
from cmdc_nb.errors import ApprovalDeniedError, ApprovalRequiredError, InvalidInputError, InvalidStateError
from cmdc_nb.events import Event, topics
from cmdc_nb.store.enums import AgentCallStatus, ToolUseStatus
from cmdc_nb.store.models import Session, User
from cmdc_nb.workspace import Workspace


def test_a_call_streams_and_completes_into_the_session_counters(ws: Workspace, session: Session) -> None:
    got: list[Event] = []
    ws.bus.subscribe(topics.session_agent_calls(session.id), got.append)
    call = agents.create_agent_call(
        session, model="anthropic/claude-sonnet-4", prompt_messages=[{"role": "user", "content": "hi"}], ws=ws
    )
    assert (call.provider, call.status, call.started_at is not None) == ("anthropic", "pending", True)
    assert agents.start_streaming(call, ws=ws).first_token_at is not None
    done = agents.complete_agent_call(
        call,
        response_content="hello",
        stop_reason="end_turn",
        tokens_in=150,
        tokens_out=200,
        cache_tokens_read=20,
        cost_usd="0.00315",
        ws=ws,
    )
    assert (done.status, done.tokens_out, done.cache_tokens_read, done.cost_usd) == (
        "completed",
        200,
        20,
        Decimal("0.00315"),
    )
    assert done.duration_ms is not None and done.duration_ms >= 0
    s = sessions.get_session(session, ws=ws)
    assert (s.total_tokens_in, s.total_tokens_out, s.total_cost_usd) == (150, 200, Decimal("0.00315"))
    assert [e.type for e in got] == ["agent_call_created", "agent_call_streaming", "agent_call_completed"]
    assert [a.action for a in activity.list_resource_activity("agent_call", call.id, ws=ws)] == [
        "agent.call.complete",
        "agent.call.start",
    ]


def test_failures_are_retried_with_a_count(ws: Workspace, session: Session) -> None:
    call = agents.create_agent_call(session, model="gpt-4o-mini", provider="openai", ws=ws)
    failed = agents.fail_agent_call(call, error_type="rate_limit", error_message="slow down", ws=ws)
    assert (failed.status, failed.error_type) == ("failed", "rate_limit")
    again = agents.retry_agent_call(call, ws=ws)
    assert (again.status, again.retry_count, again.error_type, again.completed_at) == (
        "pending",
        1,
        None,
        None,
    )
    assert agents.timeout_agent_call(call, ws=ws).status == "timeout"
    assert agents.retry_agent_call(call, ws=ws).retry_count == 2
    assert agents.cancel_agent_call(call, reason="user stop", ws=ws).status == "cancelled"


def _walk_call_to(ws: Workspace, call: object, status: AgentCallStatus) -> None:
    steps = {
        "pending": [],
        "streaming": [agents.start_streaming],
        "completed": [agents.complete_agent_call],
        "failed": [lambda c, ws: agents.fail_agent_call(c, error_type="x", ws=ws)],
        "cancelled": [agents.cancel_agent_call],
        "timeout": [agents.timeout_agent_call],
    }
    for step in steps[status.value]:
        step(call, ws=ws)


_CALL_MOVES = {
    "streaming": agents.start_streaming,
    "completed": agents.complete_agent_call,
    "failed": lambda c, ws: agents.fail_agent_call(c, error_type="x", ws=ws),
    "cancelled": agents.cancel_agent_call,
    "timeout": agents.timeout_agent_call,
    "pending": agents.retry_agent_call,
}


@pytest.mark.parametrize(
    ("current", "target"),
    [(a, b) for a in AgentCallStatus for b in AgentCallStatus if b not in agents.AGENT_CALL_TRANSITIONS[a]],
)
def test_every_illegal_agent_call_transition_raises(
    ws: Workspace, session: Session, current: AgentCallStatus, target: AgentCallStatus
) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    _walk_call_to(ws, call, current)
    with pytest.raises(InvalidStateError) as info:
        _CALL_MOVES[target.value](call, ws=ws)
    assert info.value.current == current.value
    assert agents.get_agent_call(call, ws=ws).status == current


def test_bad_call_input_is_refused_up_front(ws: Workspace, session: Session) -> None:
    with pytest.raises(InvalidInputError, match="provider"):
        agents.create_agent_call(session, model="gpt-4o", ws=ws)
    with pytest.raises(InvalidInputError) as info:
        agents.create_agent_call(session, model="openai/gpt-4o", temperature=9, ws=ws)
    assert info.value.field == "temperature"
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    with pytest.raises(InvalidInputError):
        agents.complete_agent_call(call, tokens_in=-3, ws=ws)
    assert agents.get_agent_call(call, ws=ws).status == "pending"


def test_list_agent_calls_filters_and_pages(ws: Workspace, session: Session) -> None:
    made = [agents.create_agent_call(session, model=f"openai/m{i}", ws=ws) for i in range(5)]
    agents.fail_agent_call(made[0], error_type="x", ws=ws)
    assert [c.id for c in agents.list_agent_calls(session, status="failed", ws=ws)] == [made[0].id]
    first = agents.list_agent_calls(session, limit=3, ws=ws)
    rest = agents.list_agent_calls(session, limit=3, after=first.next_cursor, ws=ws)
    assert [c.id for c in [*first, *rest]] == [c.id for c in reversed(made)]


# --- tool uses --------------------------------------------------------------------------------------


def test_tool_uses_number_per_call_and_run_without_approval(ws: Workspace, session: Session) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    a = agents.create_tool_use(call, tool_name="read_file", input={"path": "a"}, tool_use_id="t1", ws=ws)
    b = agents.create_tool_use(call, tool_schema={"name": "ls", "description": "list"}, ws=ws)
    assert (a.sequence, b.sequence, b.tool_name, a.requires_approval, a.approval_id) == (
        1,
        2,
        "ls",
        False,
        None,
    )
    assert b.meta["tool_schema"]["description"] == "list"
    running = agents.start_tool_execution(a, ws=ws)
    assert running.status == "executing" and running.started_at is not None
    done = agents.complete_tool_use(
        a,
        output="x" * 10,
        output_truncated=True,
        exit_code=0,
        stdout="ok",
        stderr="",
        file_changes=[{"path": "a", "change": "modified"}],
        ws=ws,
    )
    assert (done.status, done.output_truncated, done.exit_code, done.file_changes[0]["path"]) == (
        "completed",
        True,
        0,
        "a",
    )
    assert [t.sequence for t in agents.list_tool_uses(call, ws=ws)] == [1, 2]
    failed = agents.fail_tool_use(
        agents.start_tool_execution(b, ws=ws), error_type="OSError", exit_code=2, ws=ws
    )
    assert (failed.status, failed.exit_code) == ("failed", 2)


def test_a_policy_that_needs_approval_creates_the_item_in_the_same_transaction(
    ws: Workspace, user: User, session: Session
) -> None:
    got: list[Event] = []
    ws.bus.subscribe(topics.user_approvals(user.id), got.append)
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    schema = {"type": "function", "function": {"name": "shell", "description": "Run a command"}}
    tu = agents.create_tool_use(
        call,
        input={"command": "make test"},
        tool_schema=schema,
        policy={"approval_class": "HIGH", "side_effects": ["writes_files"], "capabilities": "network"},
        ws=ws,
    )
    assert (tu.tool_name, tu.requires_approval, tu.status) == ("shell", True, "pending")
    item = approvals.get_approval_item(tu.approval_id, ws=ws)
    assert (item.priority, item.risk_level, item.title) == ("high", "high", "Approve tool: shell")
    assert item.risk_factors == ["writes_files", "network"] and item.description == "Run a command"
    assert item.payload["input"] == {"command": "make test"} and item.source_id == tu.id
    assert got[0].type == "approval_created"
    assert [t.id for t in agents.list_pending_tool_uses(session, ws=ws)] == [tu.id]
    with pytest.raises(ApprovalRequiredError) as info:
        agents.start_tool_execution(tu, ws=ws)
    assert info.value.approval_id == item.id


def test_approval_class_none_needs_no_approval(ws: Workspace, session: Session) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    tu = agents.create_tool_use(call, tool_name="ls", policy={"approval_class": "none"}, ws=ws)
    assert (tu.requires_approval, tu.approval_id) == (False, None)
    forced = agents.create_tool_use(
        call, tool_name="ls", policy={"approval_class": "none"}, requires_approval=True, ws=ws
    )
    item = approvals.get_approval_item(forced.approval_id, ws=ws)
    assert (item.risk_level, item.priority) == (None, "low")  # the seed's items failed validation here
    with pytest.raises(InvalidInputError, match="is not one of"):
        agents.create_tool_use(call, tool_name="ls", policy={"approval_class": "extreme"}, ws=ws)


def test_deciding_the_tool_use_decides_its_item_and_the_edit_is_recorded(
    ws: Workspace, user: User, session: Session
) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    tu = agents.create_tool_use(
        call, tool_name="shell", input={"command": "rm -rf build"}, requires_approval=True, ws=ws
    )
    approved = agents.approve_tool_use(
        tu, by=user, note="narrower", input={"command": "rm -rf build/tmp"}, ws=ws
    )
    assert approved.status == "approved" and approved.input == {"command": "rm -rf build/tmp"}
    assert approved.meta["original_input"] == {"command": "rm -rf build"}
    item = approvals.get_approval_item(tu.approval_id, ws=ws)
    assert (item.status, item.decided_by_id, item.decision_note) == ("approved", user.id, "narrower")
    assert item.meta["edit"]["input"] == {
        "from": {"command": "rm -rf build"},
        "to": {"command": "rm -rf build/tmp"},
    }
    entry = activity.search_activity(action="approval.approve", ws=ws)[0]
    assert entry.details["edited"]["input"]["to"] == {"command": "rm -rf build/tmp"}
    assert agents.start_tool_execution(tu, ws=ws).status == "executing"


def test_deciding_the_item_decides_its_tool_use(ws: Workspace, user: User, session: Session) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    tu = agents.create_tool_use(
        call, tool_name="shell", input={"command": "curl x"}, requires_approval=True, ws=ws
    )
    approvals.deny_item(tu.approval_id, user, note="no network", ws=ws)
    denied = agents.get_tool_use(tu, ws=ws)
    assert (denied.status, denied.denial_reason, denied.approved_by_id) == ("denied", "no network", user.id)
    with pytest.raises(ApprovalDeniedError) as info:
        agents.start_tool_execution(tu, ws=ws)
    assert info.value.note == "no network"
    with pytest.raises(InvalidStateError):
        agents.approve_tool_use(tu, by=user, ws=ws)
    with pytest.raises(InvalidStateError):
        approvals.approve_item(tu.approval_id, user, ws=ws)


def test_cancelling_a_waiting_tool_use_closes_its_item(ws: Workspace, user: User, session: Session) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    tu = agents.create_tool_use(call, tool_name="shell", requires_approval=True, ws=ws)
    assert agents.cancel_tool_use(tu, reason="agent aborted", ws=ws).status == "cancelled"
    assert approvals.get_approval_item(tu.approval_id, ws=ws).status == "denied"
    assert approvals.count_pending_approvals(user, ws=ws) == 0


def _walk_tool_to(ws: Workspace, call: object, status: ToolUseStatus) -> object:
    needs = status in (ToolUseStatus.APPROVED, ToolUseStatus.DENIED)
    tu = agents.create_tool_use(call, tool_name="t", requires_approval=needs, ws=ws)
    path = {
        "pending": [],
        "approved": [agents.approve_tool_use],
        "denied": [agents.deny_tool_use],
        "executing": [agents.start_tool_execution],
        "completed": [agents.start_tool_execution, agents.complete_tool_use],
        "failed": [agents.start_tool_execution, lambda t, ws: agents.fail_tool_use(t, error_type="x", ws=ws)],
        "timeout": [
            agents.start_tool_execution,
            lambda t, ws: agents.fail_tool_use(t, error_type="x", timed_out=True, ws=ws),
        ],
        "cancelled": [agents.cancel_tool_use],
    }
    for step in path[status.value]:
        step(tu, ws=ws)
    return tu


_TOOL_MOVES = {
    "approved": agents.approve_tool_use,
    "denied": agents.deny_tool_use,
    "executing": agents.start_tool_execution,
    "completed": agents.complete_tool_use,
    "failed": lambda t, ws: agents.fail_tool_use(t, error_type="x", ws=ws),
    "timeout": lambda t, ws: agents.fail_tool_use(t, error_type="x", timed_out=True, ws=ws),
    "cancelled": agents.cancel_tool_use,
}


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (a, b)
        for a in ToolUseStatus
        for b in ToolUseStatus
        if b not in agents.TOOL_USE_TRANSITIONS[a] and b is not ToolUseStatus.PENDING
    ],
)
def test_every_illegal_tool_use_transition_raises(
    ws: Workspace, session: Session, current: ToolUseStatus, target: ToolUseStatus
) -> None:
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    tu = _walk_tool_to(ws, call, current)
    # "denied → executing" is refused with the more telling ApprovalDeniedError.
    with pytest.raises((InvalidStateError, ApprovalDeniedError)):
        _TOOL_MOVES[target.value](tu, ws=ws)
    assert agents.get_tool_use(tu, ws=ws).status == current


def test_edited_arguments_must_still_fit_the_tools_schema_and_the_refusal_keeps_the_item_pending(
    ws: Workspace, user: User, session: Session
) -> None:
    """Whoever edits a waiting call's arguments (a widget, a script, the gateway), the tool's schema
    judges them before anything is written; the error names the argument and never repeats the value."""
    call = agents.create_agent_call(session, model="openai/gpt-4o", ws=ws)
    params = {
        "type": "object",
        "properties": {
            "channel": {"type": "string", "enum": ["blog", "mastodon"]},
            "count": {"type": "integer"},
        },
        "required": ["channel"],
        "additionalProperties": False,
    }
    tu = agents.create_tool_use(
        call,
        input={"channel": "blog", "count": 1},
        tool_schema={"name": "publish", "parameters": params},
        requires_approval=True,
        ws=ws,
    )
    secret = "sk-live-0123456789abcdef"
    refusals = {
        "input.count": {"channel": "blog", "count": secret},
        "input.channel": {"count": 2},
        "input.token": {"channel": "blog", "token": secret},
    }
    for field, edited in refusals.items():
        with pytest.raises(InvalidInputError) as info:
            agents.approve_tool_use(tu, by=user, input=edited, ws=ws)
        assert info.value.field == field and secret not in str(info.value)
        with pytest.raises(InvalidInputError):
            approvals.approve_item(tu.approval_id, user, modified_payload={"input": edited}, ws=ws)
    assert "must be a whole number" in _refusal(ws, user, tu, {"channel": "blog", "count": "two"})
    assert "must be one of" in _refusal(ws, user, tu, {"channel": "fax"})
    assert approvals.get_approval_item(tu.approval_id, ws=ws).status == "pending"
    assert agents.get_tool_use(tu, ws=ws).input == {"channel": "blog", "count": 1}
    approved = agents.approve_tool_use(tu, by=user, input={"channel": "mastodon", "count": 3}, ws=ws)
    assert (approved.status, approved.input) == ("approved", {"channel": "mastodon", "count": 3})


def _refusal(ws: Workspace, user: User, tu: object, edited: dict[str, object]) -> str:
    with pytest.raises(InvalidInputError) as info:
        agents.approve_tool_use(tu, by=user, input=edited, ws=ws)
    return str(info.value)
