"""A stored session exported as an OpenTelemetry trace, on both backends: an `invoke_agent` span over
`chat` spans over `execute_tool` spans, with the GenAI attributes, the same tokens and exact cost as the
database, an approval as a span event, failures as `error.type`, and the session's id as the trace id
(the same trace on every export). The spans go through the SDK's in-memory exporter here."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cmdc_nb import agents, kernel, pricing, traces
from cmdc_nb.errors import ConfigurationError, InvalidInputError, NotFoundError
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


def _adder(name: str, last: str) -> Script:
    """Three turns: add (which works) and explode (which fails), then publish (which waits for a
    person), then the answer."""
    return Script(
        [
            Turn(
                "Adding.", tool_calls=[call("add", a=2, b=3), call("explode", reason="boom")], usage=(120, 30)
            ),
            Turn(tool_calls=[call("publish", text="5")], usage=(160, 12)),
            Turn(last, usage=(200, 8)),
        ],
        name=name,
    )


async def _run(ws: Workspace, user: User, session: Session) -> Script:
    pricing.set_model_price("scripted/traced", input_per_million_usd="3", output_per_million_usd="15", ws=ws)
    script = _adder("traced", "Done: 5, published.")
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


class _Receiver:
    """An OTLP/HTTP trace receiver on loopback: it decodes what it is sent with OpenTelemetry's own
    protobuf definitions, as a tracing backend does."""

    def __init__(self) -> None:
        import http.server
        import threading

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.requests: list[Any] = []
        received = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.append((self.path, self.headers.get("Content-Type"), request))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_the_spans_reach_an_otlp_endpoint_configured_by_the_standard_variables(
    ws: Workspace, user: User, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _run(ws, user, session)
    receiver = _Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url)
    try:
        spans = traces.export_trace(session, ws=ws)  # no exporter given: OTLP, from the variables
    finally:
        receiver.close()
    got = [
        s
        for _path, _type, request in receiver.requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert {path for path, _t, _r in receiver.requests} == {"/v1/traces"}
    assert {kind for _p, kind, _r in receiver.requests} == {"application/x-protobuf"}
    assert len(got) == len(spans) == 7  # the agent, three calls, three tools

    def attrs(span: Any) -> dict[str, Any]:
        out = {}
        for kv in span.attributes:
            value = kv.value
            out[kv.key] = value.string_value or value.int_value or value.double_value or value.bool_value
        return out

    by_id = {s.span_id: s for s in got}
    assert all(s.trace_id == session.id.bytes for s in got)
    calls = {str(c.id): c for c in agents.list_agent_calls(session, ws=ws).entries}
    for span in got:
        a = attrs(span)
        if a["gen_ai.operation.name"] == "chat":
            c = calls[a["cmdc_nb.agent_call.id"]]
            assert (
                a["gen_ai.usage.input_tokens"] == c.tokens_in
                and a["gen_ai.usage.output_tokens"] == c.tokens_out
            )
            assert Decimal(a["cmdc_nb.cost_usd"]) == c.cost_usd
            assert attrs(by_id[span.parent_span_id])["gen_ai.operation.name"] == "invoke_agent"
        elif a["gen_ai.operation.name"] == "execute_tool":
            assert attrs(by_id[span.parent_span_id])["gen_ai.operation.name"] == "chat"  # agent → chat → tool
        else:
            assert span.parent_span_id == b"" and a["gen_ai.conversation.id"] == str(session.id)
    (published,) = [s for s in got if attrs(s).get("gen_ai.tool.name") == "publish"]
    assert [e.name for e in published.events] == ["approval"]


def test_an_endpoint_nobody_listens_on_is_said_not_swallowed(
    ws: Workspace, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "s3cret-token-in-the-url"
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://ada:{secret}@127.0.0.1:{port}/v1/traces"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    with pytest.raises(ConfigurationError, match=r"not delivered to http://127\.0\.0\.1") as err:
        traces.export_trace(session, ws=ws)
    assert secret not in str(err.value) and "ada" not in str(err.value)


async def test_a_followed_agent_makes_the_same_spans_live(
    ws: Workspace, user: User, session: Session
) -> None:
    exporter = InMemorySpanExporter()
    script = _adder("followed", "Done.")
    agent = Agent(model=script.model, tools=[add, explode, publish], session=session, ws=ws, name="Adder")
    follower = traces.follow(agent, exporter=exporter)
    handle = agent.prompt("add, then publish")
    while not agent.status()["pending_approvals"]:
        await asyncio.sleep(0.01)
    kernel.reject(
        agent, agent.status()["pending_approvals"][0]["ref"], by=user, note="not today", auto_resume=True
    )
    await handle
    follower.close()
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "invoke_agent Adder" and root.attributes["gen_ai.conversation.id"] == str(session.id)
    chats = sorted(
        (s for s in spans if s.attributes["gen_ai.operation.name"] == "chat"), key=lambda s: s.start_time
    )
    calls = sorted(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    assert len(chats) == len(calls) == 3 and all(s.parent.span_id == root.context.span_id for s in chats)
    for span, c in zip(chats, calls, strict=True):  # the same numbers the database holds
        assert span.attributes["gen_ai.usage.input_tokens"] == c.tokens_in
        assert span.attributes["gen_ai.usage.output_tokens"] == c.tokens_out
    tools = {
        s.attributes["gen_ai.tool.name"]: s
        for s in spans
        if s.attributes["gen_ai.operation.name"] == "execute_tool"
    }
    assert (
        tools["add"].parent.span_id == chats[0].context.span_id
        and "error.type" not in tools["add"].attributes
    )
    assert tools["explode"].attributes["error.type"] == "tool_error"
    assert tools["publish"].parent.span_id == chats[1].context.span_id
    assert [e.name for e in tools["publish"].events] == ["approval_required", "approval"]
    decided = tools["publish"].events[1].attributes
    assert decided["cmdc_nb.approval.approved"] is False and decided["cmdc_nb.approval.note"] == "not today"
    assert tools["publish"].attributes["error.type"] == "denied"
    assert root.end_time >= max(s.end_time for s in spans if s is not root)


async def test_a_workflow_run_becomes_one_trace_steps_over_their_calls(ws: Workspace, user: User) -> None:
    from cmdc_nb import workflows as wf

    script = Script([Turn("LGTM", usage=(1000, 10)), Turn("Shipped.", usage=(500, 4))], name="wf-traced")
    pricing.set_model_price(script.model, input_per_million_usd="1", output_per_million_usd="2", ws=ws)
    w = wf.create_workflow(
        user,
        {
            "name": "release",
            "steps": [
                wf.step("review", "agent_call", model=script.model, prompt="Review PR {{ input.pr }}"),
                wf.step("ship", "agent_call", depends_on="review", model=script.model, prompt="Ship it"),
            ],
        },
        ws=ws,
    )
    run = await asyncio.wait_for(wf.arun_workflow(w, ws=ws, input={"pr": 7}), 60)
    assert run.status == "completed"
    spans = traces.export_workflow_trace(run, exporter=InMemorySpanExporter(), ws=ws)
    root, *rest = spans
    assert root.name == "invoke_workflow release" and root.context.trace_id == run.id.int
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert Decimal(root.attributes["cmdc_nb.cost_usd"]) == run.total_cost_usd == Decimal("0.001528")
    steps = {s.attributes["cmdc_nb.step.id"]: s for s in rest if s.name.startswith("step ")}
    assert set(steps) == {"review", "ship"} and all(
        s.parent.span_id == root.context.span_id for s in steps.values()
    )
    chats = [s for s in rest if s.name.startswith("chat ")]
    assert len(chats) == 2
    for chat in chats:
        step = next(k for k, s in steps.items() if s.context.span_id == chat.parent.span_id)
        stored = wf.get_workflow_step(run, step, ws=ws)
        assert chat.attributes["gen_ai.usage.input_tokens"] == stored.tokens_in
        assert Decimal(chat.attributes["cmdc_nb.cost_usd"]) == stored.cost_usd
    assert steps["review"].end_time <= steps["ship"].start_time + 1_000_000  # ship after review


async def test_a_rag_query_step_is_a_retrieval_span(ws: Workspace, user: User) -> None:
    from cmdc_nb import rag
    from cmdc_nb import workflows as wf

    pricing.set_model_price(
        "scripted/embed-64", input_per_million_usd="0.02", output_per_million_usd="0", ws=ws
    )
    idx = rag.create_index(
        user,
        "handbook",
        embedding_provider="scripted",
        embedding_model="embed-64",
        embedding_dimensions=64,
        ws=ws,
    )
    rag.ingest(
        idx,
        texts=["Refunds are paid within five days.", "Passwords reset from the login page."],
        progress=False,
        ws=ws,
    )
    w = wf.create_workflow(
        user,
        {"name": "ask", "steps": [wf.step("find", "rag_query", index=idx.slug, query="{{ input.q }}", k=2)]},
        ws=ws,
    )
    run = await asyncio.wait_for(wf.arun_workflow(w, input={"q": "how fast are refunds paid"}, ws=ws), 60)
    spans = traces.export_workflow_trace(run, exporter=InMemorySpanExporter(), ws=ws)
    found = next(s for s in spans if s.name == f"retrieval {idx.slug}")
    hits = wf.get_workflow_step(run, "find", ws=ws).output
    assert found.attributes["gen_ai.operation.name"] == "retrieval"
    assert found.attributes["gen_ai.data_source.id"] == idx.slug
    assert found.attributes["cmdc_nb.rag.query"] == "how fast are refunds paid"  # as rendered
    assert found.attributes["cmdc_nb.rag.hits"] == len(hits) == 2
    assert found.attributes["cmdc_nb.rag.top_citation"] == hits[0]["citation"]
    # the query's embedding, under the retrieval: its tokens and exact cost as the cost record has them
    (embedded,) = [s for s in spans if s.name == "embeddings scripted/embed-64"]
    assert embedded.parent.span_id == found.context.span_id
    from cmdc_nb.store.models import CostRecord

    with ws.read() as db:
        queried = [r for r in db.scalars(sa.select(CostRecord)) if (r.meta or {}).get("query")]
    assert len(queried) == 1
    assert embedded.attributes["gen_ai.operation.name"] == "embeddings"
    assert embedded.attributes["gen_ai.usage.input_tokens"] == queried[0].tokens_in > 0
    assert Decimal(embedded.attributes["cmdc_nb.cost_usd"]) == queried[0].cost_usd


async def test_an_eval_run_is_a_trace_of_its_cases_with_the_task_and_the_judge(
    ws: Workspace, user: User
) -> None:
    import eval_children as kids

    from cmdc_nb import evals

    kids.price_models(ws)
    run = await evals.run_eval(
        kids.CASES[:3], kids.TASK, models=kids.MODELS[:2], user=user, name="traced",
        scorers=[evals.numeric(), evals.judge("scripted/evq-judge", rubric="The sum is right.")], ws=ws,
    )  # fmt: skip
    spans = traces.export_workflow_trace(run, exporter=InMemorySpanExporter(), ws=ws)
    root = spans[0]
    assert root.name == "invoke_workflow eval: traced" and root.context.trace_id == run.id.int
    steps = [s for s in spans if s.name.startswith("step ")]
    assert len(steps) == 6
    chats = [s for s in spans if s.name.startswith("chat ")]
    assert sorted(s.name for s in chats) == sorted(
        [f"chat {m}" for m in kids.MODELS[:2]] * 3 + ["chat scripted/evq-judge"] * 6
    )
    frame = run.results()
    total = sum(Decimal(s.attributes["cmdc_nb.cost_usd"]) for s in chats)
    assert total == sum(frame["cost_usd"]) + sum(frame["judge_cost_usd"]) == run.cost_usd()
