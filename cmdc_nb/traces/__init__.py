"""A stored session as an OpenTelemetry trace, in the GenAI semantic conventions that Langfuse, Arize
Phoenix, Jaeger and Honeycomb read (the `traces` extra: `pip install 'cmdc-nb[traces]'`).

>>> from cmdc_nb import traces
>>> spans = traces.export_trace(session)          # doctest: +SKIP   (OTLP, from the OTEL_* variables)

One `invoke_agent` span covers the session's agent calls; each call is a `chat <model>` span under
it (model, provider, tokens, finish reason, error, and the exact cost as `cmdc_nb.cost_usd`, a decimal
string, beside `gen_ai.usage.cost` as a float); each tool use is an `execute_tool <tool>` span under the
call that asked for it, with its approval as a span event (how it was decided, by whom, how long it
waited). The times are the stored ones, and the trace id is the session's id, so exporting the same
session again — next week, to another tool — gives the same trace. `follow(agent)` makes the same spans
live, as the agent runs (`traces.live`); `export_workflow_trace(run)` makes a workflow run's trace
(`traces.workflow`).

Nothing of OpenTelemetry is imported until a trace is exported. Where the spans go: `exporter`, else
an OTLP/HTTP exporter configured by the standard `OTEL_EXPORTER_OTLP_*` variables.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import ConfigurationError
from cmdc_nb.services import frames, sessions
from cmdc_nb.store.models import AgentCall, Session, ToolUse

__all__ = ["Follower", "export_trace", "export_workflow_trace", "follow", "trace_id_of"]


def trace_id_of(session: Session | uuid.UUID | str) -> int:
    """The trace id of a session's trace: the session's UUID as a 128-bit number."""
    return v.id_of(session, "session").int


def _ns(moment: dt.datetime | None, fallback: dt.datetime) -> int:
    m = moment or fallback
    if m.tzinfo is None:  # SQLite hands back naive UTC
        m = m.replace(tzinfo=dt.UTC)
    return int(m.timestamp() * 1_000_000_000)


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk
    except ImportError:
        raise ConfigurationError(
            "exporting traces needs OpenTelemetry's SDK: pip install 'cmdc-nb[traces]'"
        ) from None
    return sdk


class _Ids:
    """Span ids in a planned order, and the session's trace id (the SDK asks its generator for both)."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.next_span: int | None = None

    def generate_trace_id(self) -> int:
        return self.trace_id

    def is_trace_id_random(self) -> bool:
        return False  # a session's UUID: not W3C "random" trace-id bits

    def generate_span_id(self) -> int:
        planned, self.next_span = self.next_span, None
        return planned or uuid.uuid4().int & ((1 << 64) - 1) or 1


def _span_id(row_id: uuid.UUID) -> int:
    return (row_id.int & ((1 << 64) - 1)) or 1  # the row's id, so a re-export names spans alike


def _rows(ws: Workspace, ref: Any) -> tuple[Session, list[AgentCall], list[ToolUse]]:
    session = sessions.get_session(ref, ws=ws)  # refuses a session the acting user may not read
    sid = session.id
    with ws.read() as db:
        calls = list(
            db.scalars(
                sa.select(AgentCall)
                .where(AgentCall.session_id == sid)
                .order_by(AgentCall.started_at, AgentCall.id)
            )
        )
        uses = list(
            db.scalars(
                sa.select(ToolUse)
                .where(ToolUse.session_id == sid)
                .order_by(ToolUse.sequence, ToolUse.inserted_at)
            )
        )
    return session, calls, uses


def export_trace(
    session: Session | uuid.UUID | str,
    *,
    exporter: Any = None,
    agent_name: str | None = None,
    ws: Workspace | None = None,
) -> Sequence[Any]:
    """Send the stored session as one trace to `exporter` (an OpenTelemetry `SpanExporter`; default:
    OTLP over HTTP, configured by the `OTEL_EXPORTER_OTLP_*` variables). Returns the finished spans,
    root first. `agent_name` names the agent span (default: the session's name)."""
    workspace = get_workspace(ws)
    stored, calls, uses = _rows(workspace, session)
    sid = stored.id
    sdk = _sdk()
    from opentelemetry import trace as api
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    ids = _Ids(trace_id_of(sid))
    provider = sdk.TracerProvider(id_generator=ids)  # its own: the application's global one is left alone
    kept = InMemorySpanExporter()  # sent in one batch at the end, and returned
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("cmdc_nb.traces")
    approvals = _approvals(workspace, sid) if any(u.approval_id for u in uses) else {}
    name = agent_name or stored.name
    first = min((c.started_at for c in calls if c.started_at), default=stored.inserted_at)
    last = max((c.completed_at or c.started_at for c in calls if c.started_at), default=first)
    ends = [u.completed_at for u in uses if u.completed_at]
    last = max([last, *ends])
    ids.next_span = _span_id(sid)
    root = tracer.start_span(
        f"invoke_agent {name}",
        kind=api.SpanKind.INTERNAL,
        start_time=_ns(first, first),
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "gen_ai.conversation.id": str(sid),
            "cmdc_nb.cost_usd": str(sum((c.cost_usd or Decimal(0) for c in calls), Decimal(0))),
        },
    )
    with api.use_span(root, end_on_exit=False):
        for call in calls:
            _call_span(
                tracer, api, ids, call, [u for u in uses if u.agent_call_id == call.id], approvals, sid
            )
    root.end(end_time=_ns(last, first))
    provider.shutdown()
    spans = sorted(kept.get_finished_spans(), key=lambda s: (s.start_time, s.parent is not None))
    _send(exporter, spans)
    return spans


def _shown(endpoint: Any) -> str | None:
    """An endpoint as an error may name it: without a user or password written into the URL."""
    if not isinstance(endpoint, str):
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _send(exporter: Any, spans: Sequence[Any]) -> None:
    """One export of the whole trace; a refused or unreachable endpoint is said, not logged and lost
    (the exporter's own retries are bounded by OTEL_EXPORTER_OTLP_TIMEOUT)."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        where = _shown(getattr(exporter, "_endpoint", None)) or type(exporter).__name__
        raise ConfigurationError(
            f"the trace was not delivered to {where}: is a collector listening there? "
            "(set OTEL_EXPORTER_OTLP_ENDPOINT, or pass exporter=)"
        )


def _call_span(
    tracer: Any,
    api: Any,
    ids: _Ids,
    call: AgentCall,
    uses: list[ToolUse],
    approvals: Mapping[str, Any],
    sid: uuid.UUID,
) -> None:
    start = call.started_at or call.inserted_at
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": call.model,
        "gen_ai.provider.name": call.provider,
        "gen_ai.conversation.id": str(sid),
        "gen_ai.usage.input_tokens": call.tokens_in or 0,
        "gen_ai.usage.output_tokens": call.tokens_out or 0,
        "cmdc_nb.agent_call.id": str(call.id),
        "cmdc_nb.status": call.status.value,
    }
    if call.cost_usd is not None:
        attributes["cmdc_nb.cost_usd"] = str(call.cost_usd)
        attributes["gen_ai.usage.cost"] = float(call.cost_usd)
    if call.stop_reason:
        attributes["gen_ai.response.finish_reasons"] = [call.stop_reason]
    if call.error_type:
        attributes["error.type"] = call.error_type
    ids.next_span = _span_id(call.id)
    span = tracer.start_span(
        f"chat {call.model}", kind=api.SpanKind.CLIENT, start_time=_ns(start, start), attributes=attributes
    )
    if call.error_type:
        span.set_status(api.Status(api.StatusCode.ERROR, call.error_type))
    with api.use_span(span, end_on_exit=False):
        for use in uses:
            _tool_span(
                tracer, api, ids, use, approvals.get(str(use.approval_id)) if use.approval_id else None, start
            )
    span.end(end_time=_ns(call.completed_at, start))


def _tool_span(
    tracer: Any, api: Any, ids: _Ids, use: ToolUse, approval: Mapping[str, Any] | None, after: dt.datetime
) -> None:
    start = use.inserted_at or use.started_at or after
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": use.tool_name,
        "gen_ai.tool.call.id": use.tool_use_id or str(use.id),
        "cmdc_nb.tool_use.id": str(use.id),
        "cmdc_nb.status": use.status.value,
    }
    failed = use.error_type or (
        use.status.value in ("failed", "timeout", "denied", "cancelled") and use.status.value
    )
    if failed:
        attributes["error.type"] = str(failed)
    ids.next_span = _span_id(use.id)
    span = tracer.start_span(
        f"execute_tool {use.tool_name}",
        kind=api.SpanKind.INTERNAL,
        start_time=_ns(start, after),
        attributes=attributes,
    )
    if approval is not None:
        span.add_event("approval", attributes=approval["attributes"], timestamp=_ns(approval["at"], start))
    if failed:
        span.set_status(api.Status(api.StatusCode.ERROR, str(failed)))
    span.end(end_time=_ns(use.completed_at or use.started_at, start))


def _approvals(ws: Workspace, sid: uuid.UUID) -> dict[str, Any]:
    """Each decided approval item of the session, by id: when and how it was decided, by whom, and how
    long the call waited for it."""
    df = frames.approvals_frame(session=sid, ws=ws)
    out: dict[str, Any] = {}
    for row in df.itertuples(index=False):
        waited = (row.decided_at - row.requested_at).total_seconds() if row.decided_at is not None else None
        attributes = {"cmdc_nb.approval.how": str(row.how), "cmdc_nb.approval.status": str(row.status)}
        if isinstance(row.decided_by, str):
            attributes["cmdc_nb.approval.decided_by"] = row.decided_by
        if waited is not None:
            attributes["cmdc_nb.approval.waited_s"] = round(waited, 3)
        if isinstance(row.note, str):
            attributes["cmdc_nb.approval.note"] = row.note
        out[str(row.id)] = {"at": row.decided_at.to_pydatetime(), "attributes": attributes}
    return out


from cmdc_nb.traces.live import Follower, follow  # noqa: E402  (it uses _sdk above)
from cmdc_nb.traces.workflow import export_workflow_trace  # noqa: E402  (and the span builders)
