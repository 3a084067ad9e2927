"""A stored workflow run as an OpenTelemetry trace: `invoke_workflow <name>` over one span per step, and
under an agent step its `chat` spans (and their `execute_tool` spans) as `export_trace` makes them. A
`rag_query` step is a `retrieval <index>` span (the query, the hits, the best citation) over the
query's `embeddings <model>` span when its embedder is priced per token. An eval run
(`cmdc_nb.evals`) is a workflow run: each case and model is a step over its task's and judge's calls.

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

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.store.models import AgentCall, ToolUse
from cmdc_nb.traces._spans import Recording, approvals_of, call_span, ns, sdk

__all__ = ["export_workflow_trace"]


def export_workflow_trace(run: Any, *, exporter: Any = None, ws: Workspace | None = None) -> Sequence[Any]:
    """Send the stored workflow run as one trace to `exporter` (default: OTLP over HTTP, from the
    `OTEL_EXPORTER_OTLP_*` variables). Returns the finished spans, root first."""
    from cmdc_nb import workflows

    workspace = get_workspace(ws)
    # an EvalRun is a workflow run too (it has the run's id); refuses a run the acting user may not read
    row = workflows.get_workflow_run(v.id_of(run, "run"), ws=workspace)
    steps = list(workflows.list_workflow_steps(row, ws=workspace))
    with workspace.read() as db:
        calls = list(
            db.scalars(
                sa.select(AgentCall).where(AgentCall.workflow_run_id == row.id).order_by(AgentCall.started_at)
            )
        )
        uses = list(
            db.scalars(
                sa.select(ToolUse).where(ToolUse.agent_call_id.in_([c.id for c in calls])).order_by(ToolUse.sequence)
            )
        ) if calls else []  # fmt: skip
        embeddings = _query_embeddings(db, row, steps)
    sdk()  # says which extra to install before anything is sent
    rec = Recording(row.id.int)
    sid = row.session_id
    approvals = approvals_of(workspace, sid) if sid and any(u.approval_id for u in uses) else {}
    name = str((row.workflow_snapshot or {}).get("name") or "workflow")
    begun = row.started_at or row.inserted_at
    root = rec.start(
        row.id, f"invoke_workflow {name}", begun, _run_attributes(row, name), error=row.error_type
    )
    with rec.inside(root):
        for step in steps:
            mine = [c for c in calls if c.workflow_step_id == step.id]
            _step_span(rec, step, mine, uses, approvals, sid, embeddings.get(step.id, []))
    ends = [s.completed_at for s in steps if s.completed_at]
    root.end(end_time=ns(row.completed_at or max(ends, default=begun), begun))
    return rec.finish(exporter)


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
    return attributes


def _retrieval(step: Any, attributes: dict[str, Any]) -> str:
    """A `rag_query` step is a `retrieval` span: the index searched (as the data source), the query as
    rendered, and how many hits came back with the best one's citation and score."""
    config = step.input if isinstance(step.input, dict) else dict(step.step_config or {})
    index = str(config.get("index", ""))
    attributes["gen_ai.operation.name"] = "retrieval"
    attributes["gen_ai.data_source.id"] = index
    attributes["cmdc_nb.rag.query"] = str(config.get("query", ""))[:1000]
    attributes["cmdc_nb.rag.mode"] = str(config.get("mode", "hybrid"))
    hits = step.output if isinstance(step.output, list) else []
    attributes["cmdc_nb.rag.hits"] = len(hits)
    if hits and isinstance(hits[0], dict):
        attributes["cmdc_nb.rag.top_citation"] = str(hits[0].get("citation", ""))
        if isinstance(hits[0].get("score"), int | float):
            attributes["cmdc_nb.rag.top_score"] = float(hits[0]["score"])
    return f"retrieval {index}"


def _query_embeddings(db: Any, row: Any, steps: list[Any]) -> dict[uuid.UUID, list[Any]]:
    """For each finished `rag_query` step, the cost records its search wrote for embedding the query
    (a model priced per token writes one; local embedders none): the index's `embedding` records marked
    `query`, incurred while the step ran."""
    from cmdc_nb.store.models import CostRecord, Index

    out: dict[uuid.UUID, list[Any]] = {}
    for step in steps:
        config = step.input if isinstance(step.input, dict) else {}
        ref = str(config.get("index", ""))
        if step.step_type.value != "rag_query" or not step.completed_at or not ref:
            continue
        try:
            where = Index.id == uuid.UUID(ref)
        except ValueError:
            where = sa.and_(Index.slug == ref, Index.user_id == row.user_id)
        index_id = db.scalar(sa.select(Index.id).where(where))
        if index_id is None:
            continue
        found = db.scalars(
            sa.select(CostRecord).where(
                CostRecord.source_type == "embedding",
                CostRecord.source_id == index_id,
                CostRecord.incurred_at >= (step.started_at or step.inserted_at),
                CostRecord.incurred_at <= step.completed_at,
            )
        ).all()
        out[step.id] = [r for r in found if (r.meta or {}).get("query")]
    return out


def _embedding_span(rec: Recording, record: Any, start: Any) -> None:
    """A query's embedding as an `embeddings <model>` span, from the step's start to when its cost was
    recorded, with its tokens and exact cost."""
    attributes = {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.request.model": record.model,
        "gen_ai.provider.name": record.provider,
        "gen_ai.usage.input_tokens": record.tokens_in,
    }
    if record.cost_usd is not None:
        attributes["cmdc_nb.cost_usd"] = str(record.cost_usd)
    span = rec.start(record.id, f"embeddings {record.model}", start, attributes)
    span.end(end_time=ns(record.incurred_at, start))


def _step_span(
    rec: Recording,
    step: Any,
    calls: list[AgentCall],
    uses: list[ToolUse],
    approvals: Any,
    session_id: uuid.UUID | None,
    embedded: list[Any],
) -> None:
    start = step.started_at or step.inserted_at
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
    name = f"step {step.step_id}"
    if step.step_type.value == "rag_query":
        name = _retrieval(step, attributes)
    span = rec.start(step.id, name, start, attributes, error=step.error_type)
    with rec.inside(span):
        for record in embedded:
            _embedding_span(rec, record, start)
        for call in calls:
            uses_of = [u for u in uses if u.agent_call_id == call.id]
            call_span(rec, call, uses_of, approvals, session_id or call.session_id)
    span.end(end_time=ns(step.completed_at, start))
