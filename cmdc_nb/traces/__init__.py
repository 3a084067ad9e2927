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

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.services import sessions
from cmdc_nb.store.models import AgentCall, Session, ToolUse
from cmdc_nb.traces._spans import Recording, approvals_of, call_span, sdk
from cmdc_nb.traces._spans import ns as _ns
from cmdc_nb.traces.live import Follower, follow
from cmdc_nb.traces.workflow import export_workflow_trace

__all__ = ["Follower", "export_trace", "export_workflow_trace", "follow", "trace_id_of"]


def trace_id_of(session: Session | uuid.UUID | str) -> int:
    """The trace id of a session's trace: the session's UUID as a 128-bit number."""
    return v.id_of(session, "session").int


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
    sdk()  # says which extra to install before anything is read or sent
    rec = Recording(trace_id_of(sid))
    approvals = approvals_of(workspace, sid) if any(u.approval_id for u in uses) else {}
    name = agent_name or stored.name
    first = min((c.started_at for c in calls if c.started_at), default=stored.inserted_at)
    ends = [c.completed_at or c.started_at for c in calls if c.started_at]
    ends += [u.completed_at for u in uses if u.completed_at]
    total = sum((c.cost_usd or Decimal(0) for c in calls), Decimal(0))
    root = rec.start(
        sid,
        f"invoke_agent {name}",
        first,
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "gen_ai.conversation.id": str(sid),
            "cmdc_nb.cost_usd": str(total),
        },
    )
    with rec.inside(root):
        for call in calls:
            call_span(rec, call, [u for u in uses if u.agent_call_id == call.id], approvals, sid)
    root.end(end_time=_ns(max(ends, default=first), first))
    return rec.finish(exporter)
