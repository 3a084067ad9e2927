"""Spans while an agent runs: `follow(agent)` turns the agent's events into the same OpenTelemetry
GenAI spans `export_trace` makes of a stored session — `invoke_agent` per run, `chat <model>` per
request, `execute_tool <tool>` per tool call under the request that asked for it — as they happen.

>>> follower = traces.follow(agent)          # doctest: +SKIP   (OTLP, from the OTEL_* variables)
>>> await agent.prompt("…")                  # doctest: +SKIP
>>> follower.close()                         # doctest: +SKIP   (sends what is left, stops following)

Decisions are span events on the tool's span (`approval_required`, then `approval`: approved or not,
how, by whom, the note); steering, model switches and aborts are events on the run's span. Spans are
batched and sent in the background, so following never blocks the agent's loop.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from cmdc_nb.kernel import events as ev

__all__ = ["Follower", "follow"]


def follow(agent: Any, *, exporter: Any = None) -> Follower:
    """Follow `agent` (a kernel Agent) until `close()`: each run becomes a trace sent to `exporter`
    (default: OTLP over HTTP, configured by the `OTEL_EXPORTER_OTLP_*` variables)."""
    return Follower(agent, exporter)


class Follower:
    """The spans of one agent's runs (see the module docstring)."""

    def __init__(self, agent: Any, exporter: Any) -> None:
        from cmdc_nb.traces._spans import sdk as load_sdk

        sdk = load_sdk()
        from opentelemetry import trace as api
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        self.api = api
        self.provider = sdk.TracerProvider()  # its own: the application's global one is left alone
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("cmdc_nb.traces")
        self.agent = agent
        self.root: Any = None
        self.chat: Any = None
        self.tools: dict[str, Any] = {}  # the model's tool call id -> its open span
        self.asked: dict[str, Any] = {}  # the model's tool call id -> the chat span that asked for it
        self.cost = Decimal(0)
        self._sub = agent.events.subscribe(self._on_event)

    def close(self) -> None:
        """Stop following; end what is open and send every span."""
        self._sub.close()
        self._end_all("follower closed")
        self.provider.shutdown()

    # -- the agent's events --------------------------------------------------------------------------
    def _on_event(self, env: Any) -> None:
        handler = _HANDLERS.get(type(env.event))
        if handler is not None:
            handler(self, env.event)

    def _conversation(self) -> dict[str, Any]:
        sid = self.agent.recorder.session_id
        return {"gen_ai.conversation.id": str(sid)} if sid is not None else {}

    def _start(self, e: ev.AgentStart) -> None:
        name = self.agent.options.name or "agent"
        self.cost = Decimal(0)
        self.root = self.tracer.start_span(
            f"invoke_agent {name}",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name,
                        "gen_ai.agent.id": str(self.agent.id), **self._conversation()},
        )  # fmt: skip

    def _request(self, e: ev.RequestStart) -> None:
        if self.root is None:
            return
        self.chat = self.tracer.start_span(
            f"chat {e.model}",
            context=self.api.set_span_in_context(self.root),
            kind=self.api.SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": e.model,
                        "gen_ai.provider.name": e.model.split("/", 1)[0], **self._conversation(),
                        **({"cmdc_nb.agent_call.id": e.agent_call_id} if e.agent_call_id else {})},
        )  # fmt: skip

    def _response(self, e: ev.ResponseComplete) -> None:
        span, self.chat = self.chat, None
        if span is None:
            return
        span.set_attribute("gen_ai.response.model", e.model)
        span.set_attribute("gen_ai.usage.input_tokens", e.usage.input)
        span.set_attribute("gen_ai.usage.output_tokens", e.usage.output)
        span.set_attribute("gen_ai.response.finish_reasons", [e.finish_reason])
        if e.cost_usd is not None:
            span.set_attribute("cmdc_nb.cost_usd", str(e.cost_usd))
            span.set_attribute("gen_ai.usage.cost", float(e.cost_usd))
            self.cost += e.cost_usd
        for c in e.tool_calls:  # each call's span starts now: it covers any wait for a decision
            cid, name = str(c["id"]), str(c["function"]["name"])
            self.tools[cid] = self.tracer.start_span(
                f"execute_tool {name}",
                context=self.api.set_span_in_context(span),
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                            "gen_ai.tool.call.id": cid},
            )  # fmt: skip
        span.end()

    def _stream_error(self, e: ev.StreamError) -> None:
        span, self.chat = self.chat, None
        if span is not None:
            span.set_attribute("error.type", e.kind)
            span.set_status(self.api.Status(self.api.StatusCode.ERROR, e.kind))
            span.end()

    def _retry(self, e: ev.Retry) -> None:
        if self.chat is not None:
            self.chat.add_event("retry", {"attempt": e.attempt, "kind": e.kind, "delay_s": e.delay_s})

    def _approval_required(self, e: ev.ApprovalRequired) -> None:
        span = self.tools.get(e.call_id)
        if span is not None:
            span.add_event("approval_required", {"cmdc_nb.approval.ref": e.ref})

    def _decided(self, e: ev.ToolDecided) -> None:
        span = self.tools.get(e.call_id)
        if span is None:
            return
        attributes = {"cmdc_nb.approval.approved": e.approved, "cmdc_nb.approval.how": e.how}
        if e.by:
            attributes["cmdc_nb.approval.decided_by"] = e.by
        if e.note:
            attributes["cmdc_nb.approval.note"] = e.note
        span.add_event("approval", attributes)
        if not e.approved:
            self._end_tool(e.call_id, "denied")

    def _tool_end(self, e: ev.ToolExecutionEnd) -> None:
        self._end_tool(e.call_id, None if e.ok else "tool_error")

    def _unknown(self, e: ev.ToolCallUnknown) -> None:
        self._end_tool(e.call_id, "unknown_tool")

    def _end_tool(self, call_id: str, error: str | None) -> None:
        span = self.tools.pop(call_id, None)
        if span is None:
            return
        if error:
            span.set_attribute("error.type", error)
            span.set_status(self.api.Status(self.api.StatusCode.ERROR, error))
        span.end()

    def _note(self, name: str, attributes: dict[str, Any]) -> None:
        if self.root is not None:
            self.root.add_event(name, attributes)

    def _end(self, e: ev.AgentEnd) -> None:
        if self.root is None:
            return
        self.root.set_attribute("cmdc_nb.end_reason", e.reason)
        self._end_all(None)

    def _abort(self, e: ev.AgentAbort) -> None:
        self._note("abort", {"reason": e.reason, **({"detail": e.detail} if e.detail else {})})
        self._end_all(e.reason)

    def _end_all(self, error: str | None) -> None:
        for cid in list(self.tools):
            self._end_tool(cid, error or "unfinished")
        if self.chat is not None:
            self.chat.end()
            self.chat = None
        if self.root is not None:
            self.root.set_attribute("cmdc_nb.cost_usd", str(self.cost))
            if error:
                self.root.set_attribute("error.type", error)
                self.root.set_status(self.api.Status(self.api.StatusCode.ERROR, error))
            self.root.end(end_time=time.time_ns())
            self.root = None


_HANDLERS: dict[type, Any] = {
    ev.AgentStart: Follower._start,
    ev.RequestStart: Follower._request,
    ev.ResponseComplete: Follower._response,
    ev.StreamError: Follower._stream_error,
    ev.Retry: Follower._retry,
    ev.ApprovalRequired: Follower._approval_required,
    ev.ToolDecided: Follower._decided,
    ev.ToolExecutionEnd: Follower._tool_end,
    ev.ToolCallUnknown: Follower._unknown,
    ev.AgentEnd: Follower._end,
    ev.AgentAbort: Follower._abort,
    ev.SteeringApplied: lambda f, e: f._note("steering", {"count": e.count}),
    ev.ModelSwitched: lambda f, e: f._note("model_switched", {"from": e.from_model, "to": e.to_model}),
}
