"""What building a trace from stored rows takes, shared by `export_trace` and `export_workflow_trace`:
a `Recording` (its own tracer provider, span ids planned from row ids, the spans kept and sent in one
export at the end) and the spans of an agent call and its tool uses."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cmdc_nb._plumbing.workspace import Workspace
from cmdc_nb.errors import ConfigurationError
from cmdc_nb.services import frames
from cmdc_nb.store.models import AgentCall, ToolUse

__all__ = ["Recording", "approvals_of", "call_span", "sdk"]


def sdk() -> Any:
    try:
        from opentelemetry.sdk import trace
    except ImportError:
        raise ConfigurationError(
            "exporting traces needs OpenTelemetry's SDK: pip install 'cmdc-nb[traces]'"
        ) from None
    return trace


def ns(moment: dt.datetime | None, fallback: dt.datetime) -> int:
    m = moment or fallback
    if m.tzinfo is None:  # SQLite hands back naive UTC
        m = m.replace(tzinfo=dt.UTC)
    return int(m.timestamp() * 1_000_000_000)


class _Ids:
    """The trace's id, and span ids in a planned order (the SDK asks its generator for both)."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.next_span: int | None = None

    def generate_trace_id(self) -> int:
        return self.trace_id

    def is_trace_id_random(self) -> bool:
        return False  # a row's UUID: not W3C "random" trace-id bits

    def generate_span_id(self) -> int:
        planned, self.next_span = self.next_span, None
        return planned or uuid.uuid4().int & ((1 << 64) - 1) or 1


class Recording:
    """One trace being built from stored rows. Its tracer provider is its own (the application's
    global one is left alone); the trace id is `trace_id`, each span's id comes from its row's id, so
    an export made again is the same trace; `finish` sends every span in one export."""

    def __init__(self, trace_id: int) -> None:
        from opentelemetry import trace as api
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.api = api
        self.ids = _Ids(trace_id)
        self.provider = sdk().TracerProvider(id_generator=self.ids)
        self.kept = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.kept))
        self.tracer = self.provider.get_tracer("cmdc_nb.traces")

    def start(
        self,
        row_id: uuid.UUID,
        name: str,
        start: dt.datetime,
        attributes: Mapping[str, Any],
        *,
        error: str | None = None,
        kind: Any = None,
    ) -> Any:
        """A span for the stored row `row_id`; an `error` is its `error.type` and its status."""
        self.ids.next_span = (row_id.int & ((1 << 64) - 1)) or 1
        span = self.tracer.start_span(
            name,
            kind=kind or self.api.SpanKind.INTERNAL,
            start_time=ns(start, start),
            attributes={**attributes, **({"error.type": error} if error else {})},
        )
        if error:
            span.set_status(self.api.Status(self.api.StatusCode.ERROR, error))
        return span

    def inside(self, span: Any) -> Any:
        return self.api.use_span(span, end_on_exit=False)

    def finish(self, exporter: Any) -> Sequence[Any]:
        """Send the finished spans in one export to `exporter` (default: OTLP over HTTP, from the
        `OTEL_EXPORTER_OTLP_*` variables) and return them, root first."""
        self.provider.shutdown()
        spans = sorted(self.kept.get_finished_spans(), key=lambda s: (s.start_time, s.parent is not None))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
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


def call_span(
    rec: Recording, call: AgentCall, uses: list[ToolUse], approvals: Mapping[str, Any], sid: uuid.UUID
) -> None:
    """A `chat <model>` span for the stored call, with its tool uses' `execute_tool` spans under it."""
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
    span = rec.start(
        call.id, f"chat {call.model}", start, attributes, error=call.error_type, kind=rec.api.SpanKind.CLIENT
    )
    with rec.inside(span):
        for use in uses:
            _tool_span(rec, use, approvals.get(str(use.approval_id)) if use.approval_id else None, start)
    span.end(end_time=ns(call.completed_at, start))


_FAILED = ("failed", "timeout", "denied", "cancelled")


def _tool_span(rec: Recording, use: ToolUse, approval: Mapping[str, Any] | None, after: dt.datetime) -> None:
    start = use.inserted_at or use.started_at or after
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": use.tool_name,
        "gen_ai.tool.call.id": use.tool_use_id or str(use.id),
        "cmdc_nb.tool_use.id": str(use.id),
        "cmdc_nb.status": use.status.value,
    }
    failed = use.error_type or (use.status.value if use.status.value in _FAILED else None)
    span = rec.start(use.id, f"execute_tool {use.tool_name}", start, attributes, error=failed)
    if approval is not None:
        span.add_event("approval", attributes=approval["attributes"], timestamp=ns(approval["at"], start))
    span.end(end_time=ns(use.completed_at or use.started_at, start))


def approvals_of(ws: Workspace, sid: uuid.UUID) -> dict[str, Any]:
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
