"""A stored session exported as an OpenTelemetry trace, on both backends: an `invoke_agent` span over
`chat` spans over `execute_tool` spans, with the GenAI attributes, the same tokens and exact cost as the
database, an approval as a span event, failures as `error.type`, and the session's id as the trace id
(the same trace on every export). The spans go through the SDK's in-memory exporter here."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cmdc_nb import agents, kernel, pricing, traces
from cmdc_nb.errors import InvalidInputError, NotFoundError
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.store.models import Session, User
from cmdc_nb.workspace import Workspace


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def explode(reason: str) -> str:
    """Fail on purpose."""
    raise RuntimeError(reason)


@tool(requires_approval=True)
def publish(text: str) -> str:
    """Publish text (a person approves first)."""
    return f"published {text}"


async def _run(ws: Workspace, user: User, session: Session) -> Script:
    pricing.set_model_price("scripted/traced", input_per_million_usd="3", output_per_million_usd="15", ws=ws)
    script = Script(
        [
            Turn(
                "Adding.", tool_calls=[call("add", a=2, b=3), call("explode", reason="boom")], usage=(120, 30)
            ),
            Turn(tool_calls=[call("publish", text="5")], usage=(160, 12)),
            Turn("Done: 5, published.", usage=(200, 8)),
        ],
        name="traced",
    )
    agent = Agent(model=script.model, tools=[add, explode, publish], session=session, ws=ws)
    handle = agent.prompt("add 2 and 3, then publish it")
    while not agent.status()["pending_approvals"]:
        await asyncio.sleep(0.01)
    ref = agent.status()["pending_approvals"][0]["ref"]
    kernel.approve(agent, ref, by=user, note="fine")
    assert await handle == "Adding.\n\nDone: 5, published."
    return script


async def test_a_session_becomes_one_trace_agent_chat_tool_with_the_databases_numbers(
    ws: Workspace, user: User, session: Session
) -> None:
    await _run(ws, user, session)
    exporter = InMemorySpanExporter()
    spans = traces.export_trace(session, exporter=exporter, agent_name="Adder", ws=ws)
    assert list(exporter.get_finished_spans()) and len(exporter.get_finished_spans()) == len(spans)

    root, *rest = spans
    assert root.name == "invoke_agent Adder" and root.parent is None
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.conversation.id"] == str(session.id)
    assert root.context.trace_id == session.id.int == traces.trace_id_of(session)
    assert all(s.context.trace_id == root.context.trace_id for s in spans)

    calls = sorted(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    chats = [s for s in rest if s.attributes["gen_ai.operation.name"] == "chat"]
    assert [s.attributes["cmdc_nb.agent_call.id"] for s in chats] == [str(c.id) for c in calls]
    for span, c in zip(chats, calls, strict=True):
        assert span.name == "chat scripted/traced" and span.parent.span_id == root.context.span_id
        assert span.attributes["gen_ai.request.model"] == "scripted/traced"
        assert span.attributes["gen_ai.provider.name"] == "scripted"
        assert span.attributes["gen_ai.usage.input_tokens"] == c.tokens_in
        assert span.attributes["gen_ai.usage.output_tokens"] == c.tokens_out
        assert Decimal(span.attributes["cmdc_nb.cost_usd"]) == c.cost_usd  # exact, as stored
        assert span.start_time <= span.end_time
    assert Decimal(chats[0].attributes["cmdc_nb.cost_usd"]) == Decimal("0.00081")  # 120×3 + 30×15 per M
    assert Decimal(root.attributes["cmdc_nb.cost_usd"]) == sum(c.cost_usd for c in calls)

    tools = {
        s.attributes["gen_ai.tool.name"]: s
        for s in rest
        if s.attributes["gen_ai.operation.name"] == "execute_tool"
    }
    assert set(tools) == {"add", "explode", "publish"}
    by_call = {s.attributes["cmdc_nb.agent_call.id"]: s.context.span_id for s in chats}
    for name, span in tools.items():
        use = next(u for c in calls for u in agents.list_tool_uses(c, ws=ws).entries if u.tool_name == name)
        assert span.parent.span_id == by_call[str(use.agent_call_id)]  # under the call that asked for it
        assert span.attributes["gen_ai.tool.call.id"] == use.tool_use_id
    assert "error.type" not in tools["add"].attributes
    assert tools["explode"].attributes["error.type"] and tools["explode"].status.status_code.name == "ERROR"
    (event,) = tools["publish"].events
    assert event.name == "approval" and event.attributes["cmdc_nb.approval.how"] == "person"
    assert event.attributes["cmdc_nb.approval.decided_by"] == user.email
    assert (
        event.attributes["cmdc_nb.approval.note"] == "fine"
        and event.attributes["cmdc_nb.approval.waited_s"] >= 0
    )


async def test_exporting_again_gives_the_same_trace_and_span_ids(
    ws: Workspace, user: User, session: Session
) -> None:
    await _run(ws, user, session)
    first = traces.export_trace(session, exporter=InMemorySpanExporter(), ws=ws)
    again = traces.export_trace(session.id, exporter=InMemorySpanExporter(), ws=ws)
    ids = [
        (s.name, s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else None) for s in first
    ]
    assert ids == [
        (s.name, s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else None) for s in again
    ]
    assert first[0].name == f"invoke_agent {session.name}"  # named after the session by default


def test_a_session_with_nothing_run_is_a_lone_agent_span(ws: Workspace, session: Session) -> None:
    (root,) = traces.export_trace(session, exporter=InMemorySpanExporter(), ws=ws)
    assert root.attributes["cmdc_nb.cost_usd"] == "0" and root.parent is None


@pytest.mark.parametrize("bad", [None, 42, ["a-session"], "not-a-uuid"])
def test_what_is_not_a_session_gets_a_typed_error(ws: Workspace, bad: Any) -> None:
    with pytest.raises((InvalidInputError, NotFoundError)):
        traces.export_trace(bad, exporter=InMemorySpanExporter(), ws=ws)
    if bad is not None:
        with pytest.raises(InvalidInputError):
            traces.trace_id_of(bad)
