"""A stored workflow run as an OpenTelemetry trace: `invoke_workflow <name>` over one span per step, and
under an agent step its `chat` spans (and their `execute_tool` spans) as `export_trace` makes them.

>>> traces.export_workflow_trace(run)        # doctest: +SKIP   (OTLP, from the OTEL_* variables)

The trace id is the run's UUID and each span id comes from its row, so a run exported again is the same
trace; times, tokens, exact costs, statuses and errors are the stored ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.store.models import AgentCall, ToolUse
from cmdc_nb.traces import _approvals, _call_span, _Ids, _ns, _sdk, _send, _span_id

__all__ = ["export_workflow_trace"]


def export_workflow_trace(run: Any, *, exporter: Any = None, ws: Workspace | None = None) -> Sequence[Any]:
    """Send the stored workflow run as one trace to `exporter` (default: OTLP over HTTP, from the
    `OTEL_EXPORTER_OTLP_*` variables). Returns the finished spans, root first."""
    from cmdc_nb import workflows

    workspace = get_workspace(ws)
    row = workflows.get_workflow_run(run, ws=workspace)  # refuses a run the acting user may not read
    steps = list(workflows.list_workflow_steps(row, ws=workspace))
    with workspace.read() as db:
        calls = list(
            db.scalars(
                sa.select(AgentCall).where(AgentCall.workflow_run_id == row.id).order_by(AgentCall.started_at)
            )
        )
        ids_of_calls = [c.id for c in calls]
        uses = (
            list(
                db.scalars(
                    sa.select(ToolUse)
                    .where(ToolUse.agent_call_id.in_(ids_of_calls))
                    .order_by(ToolUse.sequence)
                )
            )
            if calls
            else []
        )
    sdk = _sdk()
    from opentelemetry import trace as api
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    ids = _Ids(row.id.int)
    provider = sdk.TracerProvider(id_generator=ids)
    kept = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("cmdc_nb.traces")
    approvals = (
        _approvals(workspace, row.session_id) if row.session_id and any(u.approval_id for u in uses) else {}
    )
    name = str((row.workflow_snapshot or {}).get("name") or "workflow")
    begun = row.started_at or row.inserted_at
    attributes = _run_attributes(row, name)
    ids.next_span = _span_id(row.id)
    root = tracer.start_span(f"invoke_workflow {name}", start_time=_ns(begun, begun), attributes=attributes)
    if row.error_type:
        root.set_status(api.Status(api.StatusCode.ERROR, row.error_type))
    with api.use_span(root, end_on_exit=False):
        for step in steps:
            _step_span(
                tracer,
                api,
                ids,
                step,
                [c for c in calls if c.workflow_step_id == step.id],
                uses,
                approvals,
                row.session_id,
                begun,
            )
    ends = [s.completed_at for s in steps if s.completed_at]
    root.end(end_time=_ns(row.completed_at or max(ends, default=begun), begun))
    provider.shutdown()
    spans = sorted(kept.get_finished_spans(), key=lambda s: (s.start_time, s.parent is not None))
    _send(exporter, spans)
    return spans


def _run_attributes(row: Any, name: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_workflow",
        "cmdc_nb.workflow.name": name,
        "cmdc_nb.workflow_run.id": str(row.id),
        "cmdc_nb.status": row.status.value,
        "gen_ai.usage.input_tokens": row.total_tokens_in,
        "gen_ai.usage.output_tokens": row.total_tokens_out,
        "cmdc_nb.cost_usd": str(row.total_cost_usd or Decimal(0)),
    }
    if row.session_id:
        attributes["gen_ai.conversation.id"] = str(row.session_id)
    if row.error_type:
        attributes["error.type"] = row.error_type
    return attributes


def _step_span(
    tracer: Any, api: Any, ids: _Ids, step: Any, calls: list[AgentCall], uses: list[ToolUse],
    approvals: Any, session_id: uuid.UUID | None, begun: Any,
) -> None:  # fmt: skip
    start = step.started_at or step.inserted_at or begun
    attributes: dict[str, Any] = {
        "cmdc_nb.step.id": step.step_id,
        "cmdc_nb.step.type": step.step_type.value,
        "cmdc_nb.status": step.status.value,
        "cmdc_nb.step.attempt": step.attempt_number,
    }
    if step.tokens_in is not None:
        attributes["gen_ai.usage.input_tokens"] = step.tokens_in
        attributes["gen_ai.usage.output_tokens"] = step.tokens_out or 0
    if step.cost_usd is not None:
        attributes["cmdc_nb.cost_usd"] = str(step.cost_usd)
    if step.error_type:
        attributes["error.type"] = step.error_type
    ids.next_span = _span_id(step.id)
    span = tracer.start_span(f"step {step.step_id}", start_time=_ns(start, start), attributes=attributes)
    if step.error_type:
        span.set_status(api.Status(api.StatusCode.ERROR, step.error_type))
    with api.use_span(span, end_on_exit=False):
        for call in calls:
            _call_span(
                tracer,
                api,
                ids,
                call,
                [u for u in uses if u.agent_call_id == call.id],
                approvals,
                session_id or call.session_id,
            )
    span.end(end_time=_ns(step.completed_at, start))
