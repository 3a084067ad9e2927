"""Where approval items come from: the agent that asked (its name, its model), the chat session, the
workflow run and step, and the process and notebook the request was made in — read for a whole page of
items in one query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.services.approvals.items import ItemRef
from cmdc_nb.store.enums import ApprovalSourceType
from cmdc_nb.store.models import (
    AgentCall,
    ApprovalItem,
    Session,
    ToolUse,
    Workflow,
    WorkflowRun,
    WorkflowStep,
)

__all__ = ["Origin", "approval_origins"]


@dataclass(frozen=True)
class Origin:
    """Where one approval item comes from. A field is None when the item has no such origin (a manual
    item has no agent) or when it was not recorded (calls stored before agents recorded their process).
    `agent` is the name given to the agent (`Agent(name=...)`), `model` the model of the call that asked.
    `notebook` is the notebook's path from the Jupyter server's root, when the agent ran in a Jupyter kernel.
    """

    agent: str | None = None
    model: str | None = None
    session_id: uuid.UUID | None = None
    session: str | None = None
    workflow: str | None = None
    run_id: uuid.UUID | None = None
    step: str | None = None
    notebook: str | None = None
    host: str | None = None
    pid: int | None = None

    def describe(self) -> str:
        """One line: 'agent Scout (openai/gpt-4o) · session “Release” · notebook ops/release.ipynb'."""
        parts = []
        if self.agent or self.model:
            who = self.agent or "agent"
            parts.append(
                f"agent {who} ({self.model})"
                if self.agent and self.model
                else f"{who} {self.model or ''}".strip()
            )
        if self.workflow:
            run = f" run {str(self.run_id)[:8]}" if self.run_id else ""
            parts.append(f"workflow “{self.workflow}”{run}" + (f" step “{self.step}”" if self.step else ""))
        if self.session:
            parts.append(f"session “{self.session}”")
        if self.notebook:
            parts.append(f"notebook {self.notebook}")
        elif self.host:
            parts.append(f"process {self.pid} on {self.host}" if self.pid else f"host {self.host}")
        return " · ".join(parts)


def _origin(item: ApprovalItem, row: Any) -> Origin:
    meta: dict[str, Any] = row.call_meta if isinstance(row.call_meta, dict) else {}
    found = meta.get("origin")
    process: dict[str, Any] = found if isinstance(found, dict) else {}
    pid = process.get("pid")
    return Origin(
        agent=str(meta["agent"]) if meta.get("agent") else None,
        model=row.model,
        session_id=item.session_id,
        session=row.Session.name if row.Session is not None else None,
        workflow=row.workflow_name,
        run_id=row.run_id,
        step=row.step_name,
        notebook=str(process["notebook"]) if process.get("notebook") else None,
        host=str(process["host"]) if process.get("host") else None,
        pid=pid if isinstance(pid, int) else None,
    )


@checked
def approval_origins(items: Sequence[ItemRef], *, ws: Workspace | None = None) -> dict[uuid.UUID, Origin]:
    """The origin of each of `items` (approval items or their ids), by item id, in one query. An item
    the acting user may not read raises AccessDeniedError; an unknown id is left out.

    >>> page = list_pending_approvals(user, ws=ws)                                      # doctest: +SKIP
    >>> {i.title: o.describe() for i, o in zip(page.entries, approval_origins(page.entries).values())}
    {'Approve tool: publish': 'agent Scout (openai/gpt-4o) · session “social” · notebook posts.ipynb'}
    """
    ids = [v.id_of(i, "approval_item") for i in items]
    if not ids:
        return {}
    tool_use = sa.and_(
        ApprovalItem.source_type == ApprovalSourceType.TOOL_USE, ToolUse.id == ApprovalItem.source_id
    )
    gate = sa.and_(
        ApprovalItem.source_type == ApprovalSourceType.WORKFLOW_STEP,
        WorkflowStep.id == ApprovalItem.source_id,
    )
    # an agent working for a workflow step asks as that step: its call names the run and the step
    run_id = sa.func.coalesce(ApprovalItem.workflow_run_id, AgentCall.workflow_run_id)
    stmt = (
        sa.select(
            ApprovalItem,
            Session,  # the entity: the access check below finds it loaded, and asks no more
            AgentCall.model.label("model"),
            AgentCall.meta.label("call_meta"),
            WorkflowRun.id.label("run_id"),
            Workflow.name.label("workflow_name"),
            WorkflowStep.step_name.label("step_name"),
        )
        .outerjoin(Session, Session.id == ApprovalItem.session_id)
        .outerjoin(ToolUse, tool_use)
        .outerjoin(AgentCall, AgentCall.id == ToolUse.agent_call_id)
        .outerjoin(WorkflowRun, WorkflowRun.id == run_id)
        .outerjoin(Workflow, Workflow.id == WorkflowRun.workflow_id)
        .outerjoin(WorkflowStep, sa.or_(gate, WorkflowStep.id == AgentCall.workflow_step_id))
        .where(ApprovalItem.id.in_(ids))
    )
    with get_workspace(ws).read() as db:
        rows = db.execute(stmt).all()
        for row in rows:
            access.check_row(db, row.ApprovalItem, "approval_item", write=False)
        return {row.ApprovalItem.id: _origin(row.ApprovalItem, row) for row in rows}
