"""Agent calls: every LLM call with its lifecycle (`pending → streaming → completed | failed | cancelled |
timeout`, retries as new attempts), its tokens and its exact cost, checked against the budgets before it
exists."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import check_transition, fetch, increment, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.services import budgets, costs
from cmdc_nb.store.enums import ActivityAction, AgentCallStatus, CostService, CostSourceType
from cmdc_nb.store.models import AgentCall, Session, ToolUse, WorkflowRun, WorkflowStep
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import to_money, utcnow

__all__ = [
    "AGENT_CALL_TRANSITIONS",
    "cancel_agent_call",
    "complete_agent_call",
    "create_agent_call",
    "fail_agent_call",
    "get_agent_call",
    "list_agent_calls",
    "retry_agent_call",
    "start_streaming",
    "timeout_agent_call",
]


_A = AgentCallStatus
AGENT_CALL_TRANSITIONS: dict[AgentCallStatus, frozenset[AgentCallStatus]] = {
    _A.PENDING: frozenset({_A.STREAMING, _A.COMPLETED, _A.FAILED, _A.CANCELLED, _A.TIMEOUT}),
    _A.STREAMING: frozenset({_A.COMPLETED, _A.FAILED, _A.CANCELLED, _A.TIMEOUT}),
    _A.FAILED: frozenset({_A.PENDING}),
    _A.TIMEOUT: frozenset({_A.PENDING}),
    _A.COMPLETED: frozenset(),
    _A.CANCELLED: frozenset(),
}
CallRef = AgentCall | uuid.UUID | str
ToolRef = ToolUse | uuid.UUID | str


def _elapsed_ms(start: Any) -> int | None:
    return max(0, int((utcnow() - start).total_seconds() * 1000)) if start is not None else None


def _call_payload(c: AgentCall) -> dict[str, Any]:
    return {
        "agent_call_id": str(c.id),
        "session_id": str(c.session_id),
        "provider": c.provider,
        "model": c.model,
        "status": c.status.value,
        "tokens_in": c.tokens_in,
        "tokens_out": c.tokens_out,
        "cost_usd": str(c.cost_usd) if c.cost_usd is not None else None,
        "duration_ms": c.duration_ms,
    }


def _provider_of(model: str, provider: str | None) -> str:
    if provider is not None:
        return v.text(provider, "provider", max_len=64)
    if "/" in model:
        return model.split("/", 1)[0]
    raise InvalidInputError(
        "give provider=, or a model string with its provider (e.g. 'openai/gpt-4o-mini')", field="provider"
    )


@checked
def create_agent_call(
    session: Session | uuid.UUID | str,
    *,
    model: str,
    provider: str | None = None,
    prompt_messages: Sequence[Mapping[str, Any]] = (),
    system_prompt: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    tools_provided: Sequence[str] = (),
    workflow_run: WorkflowRun | uuid.UUID | str | None = None,
    workflow_step: WorkflowStep | uuid.UUID | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> AgentCall:
    """Record an LLM request about to be sent (status `pending`, `started_at` now)."""
    model = v.text(model, "model", max_len=200)
    prov = _provider_of(model, provider)
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise InvalidInputError("must be a number from 0 to 2", field="temperature")
    if max_tokens is not None:
        v.count(max_tokens, "max_tokens", minimum=1)
    with get_workspace(ws).transaction() as tx:
        s = fetch(tx.db, Session, session, "session")
        # A call that could cross a hard budget is refused here, before anything is sent.
        budgets.guard_call_in(
            tx.db,
            user_id=s.user_id,
            session_id=s.id,
            model=model,
            provider=prov,
            messages=list(prompt_messages),
            system_prompt=system_prompt,
            max_tokens=max_tokens,
            ws=tx.ws,
        )
        call = AgentCall(
            id=uuid.uuid4(),
            session_id=s.id,
            user_id=s.user_id,
            provider=prov,
            model=model,
            prompt_messages=jsonable(list(prompt_messages)),
            system_prompt=system_prompt,
            temperature=temperature,
            max_tokens=max_tokens,
            tools_provided=list(tools_provided),
            workflow_run_id=v.id_of(workflow_run, "workflow_run") if workflow_run is not None else None,
            workflow_step_id=v.id_of(workflow_step, "workflow_step") if workflow_step is not None else None,
            started_at=utcnow(),
            meta=dict(metadata or {}),
        )
        tx.db.add(call)
        tx.db.flush()
        _log_call(tx, call, ActivityAction.AGENT_CALL_START, {"provider": prov, "model": model})
        tx.publish(topics.session_agent_calls(s.id), "agent_call_created", _call_payload(call))
    return call


def _log_call(tx: Tx, call: AgentCall, action: ActivityAction, details: dict[str, Any]) -> None:
    log_activity(
        tx,
        action,
        resource_type="agent_call",
        resource_id=call.id,
        user_id=call.user_id,
        session_id=call.session_id,
        details=details,
    )


def _move_call(tx: Tx, call: CallRef, target: AgentCallStatus) -> AgentCall:
    row = fetch(tx.db, AgentCall, call, "agent_call", lock=True)
    check_transition("agent_call", AGENT_CALL_TRANSITIONS, row.status, target)
    row.status = target
    return row


@checked
def get_agent_call(call: CallRef, *, ws: Workspace | None = None) -> AgentCall:
    with get_workspace(ws).read() as db:
        return fetch(db, AgentCall, call, "agent_call")


@checked
def start_streaming(call: CallRef, *, ws: Workspace | None = None) -> AgentCall:
    """The first token arrived: `streaming`, with `first_token_at` now."""
    with get_workspace(ws).transaction() as tx:
        row = _move_call(tx, call, _A.STREAMING)
        row.first_token_at = utcnow()
        tx.db.flush()
        tx.publish(topics.session_agent_calls(row.session_id), "agent_call_streaming", _call_payload(row))
    return row


@checked
def complete_agent_call(
    call: CallRef,
    *,
    response_content: str | None = None,
    response_blocks: Sequence[Any] | None = None,
    stop_reason: str | None = None,
    tokens_in: int | None = None,
    tokens_out: int | None = None,
    cache_tokens_read: int = 0,
    cache_tokens_write: int = 0,
    cost_usd: Decimal | float | str | int | None = None,
    ws: Workspace | None = None,
) -> AgentCall:
    """The response is complete. Duration, tokens and cost are added to the session's counters in
    the same transaction (atomically)."""
    tin = v.count(tokens_in, "tokens_in") if tokens_in is not None else None
    tout = v.count(tokens_out, "tokens_out") if tokens_out is not None else None
    cread = v.count(cache_tokens_read, "cache_tokens_read")
    cwrite = v.count(cache_tokens_write, "cache_tokens_write")
    cost = to_money(cost_usd, field="cost_usd") if cost_usd is not None else None
    if cost is not None and cost < 0:
        raise InvalidInputError("must not be negative", field="cost_usd")
    with get_workspace(ws).transaction() as tx:
        row = _move_call(tx, call, _A.COMPLETED)
        row.completed_at = utcnow()
        row.duration_ms = _elapsed_ms(row.started_at)
        row.response_content = response_content
        row.response_blocks = jsonable(list(response_blocks or []))
        row.stop_reason = stop_reason
        row.tokens_in, row.tokens_out = tin, tout
        row.cache_tokens_read, row.cache_tokens_write = cread, cwrite
        record = costs.insert_cost_in(
            tx,
            at=row.completed_at,
            cell=costs.current_notebook_cell(),
            cost_usd=cost,
            user_id=row.user_id,
            source_type=CostSourceType.AGENT_CALL,
            source_id=row.id,
            provider=row.provider,
            model=row.model,
            service=CostService.CHAT,
            tokens_in=tin or 0,
            tokens_out=tout or 0,
            cache_tokens_read=cread,
            cache_tokens_write=cwrite,
            session_id=row.session_id,
            workflow_run_id=row.workflow_run_id,
            meta={},
        )
        cost = row.cost_usd = record.cost_usd  # priced here when the caller gave no cost; None = unpriced
        tx.db.flush()
        if tin or tout or cost or row.duration_ms:
            tx.db.execute(
                increment(
                    Session,
                    row.session_id,
                    total_tokens_in=tin or 0,
                    total_tokens_out=tout or 0,
                    total_cost_usd=cost or Decimal(0),
                    total_duration_ms=row.duration_ms or 0,
                )
            )
        _log_call(
            tx,
            row,
            ActivityAction.AGENT_CALL_COMPLETE,
            # provider and model too: the kernel's fast path audits a call with this entry alone
            {"provider": row.provider, "model": row.model, "tokens_in": tin, "tokens_out": tout,
             "cost_usd": str(cost) if cost is not None else None},
        )  # fmt: skip
        tx.publish(topics.session_agent_calls(row.session_id), "agent_call_completed", _call_payload(row))
    return row


def _end_call(
    call: CallRef,
    target: AgentCallStatus,
    *,
    error_type: str | None,
    error_message: str | None,
    event: str,
    ws: Workspace | None,
) -> AgentCall:
    with get_workspace(ws).transaction() as tx:
        row = _move_call(tx, call, target)
        row.completed_at = utcnow()
        row.duration_ms = _elapsed_ms(row.started_at)
        row.error_type = error_type
        row.error_message = error_message
        tx.db.flush()
        if row.duration_ms:
            tx.db.execute(increment(Session, row.session_id, total_duration_ms=row.duration_ms))
        _log_call(tx, row, ActivityAction.AGENT_CALL_FAIL, {"status": target.value, "error_type": error_type})
        tx.publish(topics.session_agent_calls(row.session_id), event, _call_payload(row))
    return row


@checked
def fail_agent_call(
    call: CallRef, *, error_type: str, error_message: str | None = None, ws: Workspace | None = None
) -> AgentCall:
    error_type = v.text(error_type, "error_type", max_len=100)
    return _end_call(
        call, _A.FAILED, error_type=error_type, error_message=error_message, event="agent_call_failed", ws=ws
    )


@checked
def cancel_agent_call(call: CallRef, *, reason: str | None = None, ws: Workspace | None = None) -> AgentCall:
    return _end_call(
        call, _A.CANCELLED, error_type="cancelled", error_message=reason, event="agent_call_cancelled", ws=ws
    )


@checked
def timeout_agent_call(
    call: CallRef, *, error_message: str | None = None, ws: Workspace | None = None
) -> AgentCall:
    return _end_call(
        call, _A.TIMEOUT, error_type="timeout", error_message=error_message, event="agent_call_timeout", ws=ws
    )


@checked
def retry_agent_call(call: CallRef, *, ws: Workspace | None = None) -> AgentCall:
    """Send a failed or timed-out call again: back to `pending`, `retry_count + 1`, timings reset."""
    with get_workspace(ws).transaction() as tx:
        row = _move_call(tx, call, _A.PENDING)
        row.retry_count += 1
        row.started_at = utcnow()
        row.first_token_at = row.completed_at = None
        row.duration_ms = None
        previous_error = row.error_type
        row.error_type = row.error_message = None
        tx.db.flush()
        _log_call(
            tx,
            row,
            ActivityAction.AGENT_CALL_START,
            {"retry": row.retry_count, "previous_error": previous_error},
        )
        tx.publish(topics.session_agent_calls(row.session_id), "agent_call_retried", _call_payload(row))
    return row


@checked
def list_agent_calls(
    session: Session | uuid.UUID | str,
    *,
    status: AgentCallStatus | str | None = None,
    provider: str | None = None,
    model: str | None = None,
    limit: int = 50,
    after: str | None = None,
    before: str | None = None,
    ws: Workspace | None = None,
) -> Page[AgentCall]:
    """A session's calls, newest first."""
    stmt = sa.select(AgentCall).where(AgentCall.session_id == v.id_of(session, "session"))
    if status is not None:
        stmt = stmt.where(AgentCall.status == v.choice(AgentCallStatus, status, "status"))
    if provider is not None:
        stmt = stmt.where(AgentCall.provider == provider)
    if model is not None:
        stmt = stmt.where(AgentCall.model == model)
    with get_workspace(ws).read() as db:
        access.check_session_id(db, v.id_of(session, "session"), "read")
        return paginate(
            db,
            stmt,
            order_by=AgentCall.inserted_at,
            id_column=AgentCall.id,
            limit=limit,
            after=after,
            before=before,
        )
