"""What one case's run holds: its stored session, the model under test, the eval's budget — and the
agents a task or a judge makes there, so every call is stored with the case and costs are booked once.

The case's session is named by the step's idempotency key, so a case cut off by a kill finds its
session again on resume: the agent is rebuilt from the stored conversation and finishes the turn, and a
reply already stored is not asked for again. A judge's reply already stored is read back, not paid twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cmdc_nb.errors import AbortedError, BudgetExceededError, NotFoundError
from cmdc_nb.evals.dataset import Case
from cmdc_nb.kernel.plugins import Abort, Action, HookEvent, Plugin
from cmdc_nb.kernel.tools import ToolContext
from cmdc_nb.store.enums import AgentCallStatus
from cmdc_nb.store.models import AgentCall, CostRecord, WorkflowRun

if TYPE_CHECKING:
    from cmdc_nb.evals.scorers import _Judge
    from cmdc_nb.kernel.agent import Agent
    from cmdc_nb.workflows.executors import StepContext

__all__ = ["TASK_AGENT", "EvalBudget", "EvalContext"]

TASK_AGENT = "task"


class EvalBudget:
    """An eval's spending limit, checked before every call of its tasks and judges: what its runs have
    recorded, plus the worst case of the calls in flight in this process, plus this call's worst case
    (its prompt with the system prompt counted, all of `max_tokens` out) must stay within the limit. In-flight worst cases are
    reserved per case until the case ends, so concurrent cases cannot all pass the same check; worker
    processes see each other's calls once they are recorded (overshoot: at most one call per worker)."""

    def __init__(self, limit_usd: Decimal, run_ids: list[uuid.UUID], *, replays: bool = False) -> None:
        self.limit_usd = limit_usd
        self.run_ids = run_ids
        self.replays = replays  # whether the eval has cassettes (so some of its costs may be replays)
        self._reserved: defaultdict[str, Decimal] = defaultdict(Decimal)
        self._lock = threading.Lock()

    def spent(self, ws: Any) -> Decimal:
        """What the eval's runs paid: their cost records, less those of cases replayed from cassettes
        (booked at their recorded cost, but nothing was sent)."""
        return spent_usd(ws, self.run_ids, replays=self.replays)

    def reserve(
        self, ws: Any, key: str, model: str, messages: list[Any], max_tokens: int | None, system: str | None
    ) -> str | None:
        """None when the call may go (its worst case now reserved), else the sentence that stops it."""
        from cmdc_nb.services import pricing

        estimate = pricing.estimate_cost(model, messages, max_tokens=max_tokens, system_prompt=system, ws=ws)
        price = pricing.get_price(model, ws=ws)
        # Tokenizers differ between providers (and the offline models count a token per four characters
        # of the request's JSON): the larger count keeps "never crosses the budget" true for all of them.
        sent = ([{"role": "system", "content": system}] if system else []) + messages
        prompt = max(estimate.prompt_tokens, math.ceil(len(json.dumps(sent, default=str)) / 4))
        worst = (
            price.cost(tokens_in=prompt, tokens_out=estimate.max_output_tokens)
            if price is not None
            else Decimal(0)
        )
        with self._lock:
            spent = self.spent(ws)
            held = sum(self._reserved.values(), Decimal(0))
            if spent + held + worst > self.limit_usd:
                return (
                    f"the eval's budget (${self.limit_usd}) would be exceeded: ${spent} spent, ${held} in flight, "
                    f"and this call to {model} could cost up to ${worst}"
                )
            self._reserved[key] += worst
        return None

    def release(self, key: str) -> None:
        with self._lock:
            self._reserved.pop(key, None)


def spent_usd(ws: Any, run_ids: list[uuid.UUID], *, replays: bool = True) -> Decimal:
    """The cost records of `run_ids`, less those of the sessions of cases their steps say were replayed.
    With `replays=False` (an eval without cassettes) one SQL sum: the budget asks before every call."""
    from cmdc_nb.store.models import WorkflowStep

    if not replays:
        with ws.read() as db:
            total = db.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(CostRecord.cost_usd), 0)).where(
                    CostRecord.workflow_run_id.in_(run_ids)
                )
            )
        return Decimal(str(total or 0))
    with ws.read() as db:
        rows = db.execute(
            sa.select(CostRecord.session_id, CostRecord.cost_usd).where(
                CostRecord.workflow_run_id.in_(run_ids)
            )
        ).all()
        replayed = {
            str(o.get("session_id"))
            for (o,) in db.execute(
                sa.select(WorkflowStep.output).where(WorkflowStep.workflow_run_id.in_(run_ids))
            )
            if isinstance(o, dict) and o.get("replayed")
        }
    return sum((c for s, c in rows if c is not None and str(s) not in replayed), Decimal(0))


_budgets: dict[tuple[str, str], EvalBudget] = {}
_budgets_lock = threading.Lock()


def run_chain(ws: Any, run_id: uuid.UUID) -> list[uuid.UUID]:
    """`run_id` and the runs it retried, newest first: one eval's runs."""
    chain = [run_id]
    with ws.read() as db:
        prev = db.scalar(sa.select(WorkflowRun.retry_of_run_id).where(WorkflowRun.id == run_id))
        while prev is not None and prev not in chain:
            chain.append(prev)
            prev = db.scalar(sa.select(WorkflowRun.retry_of_run_id).where(WorkflowRun.id == prev))
    return chain


def budget_for(ws: Any, run_id: uuid.UUID, limit: Any, *, replays: bool = False) -> EvalBudget | None:
    """This process's budget object for a run (one per run and limit), the runs it retried included."""
    if limit is None:
        return None
    key = (str(run_id), str(limit))
    with _budgets_lock:
        found = _budgets.get(key)
    if found is not None:
        return found
    budget = EvalBudget(Decimal(str(limit)), run_chain(ws, run_id), replays=replays)
    with _budgets_lock:
        return _budgets.setdefault(key, budget)


class _BudgetGuard(Plugin):
    """Before each request of a case's agents: the eval's budget (see EvalBudget)."""

    name = "eval_budget"
    priority = 121

    def __init__(self, budget: EvalBudget, ws: Any, key: str) -> None:
        super().__init__()
        self.budget, self.ws, self.key = budget, ws, key
        self.refused: str | None = None

    async def on_before_request(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        from cmdc_nb.kernel.prompts import build_system_prompt

        options = getattr(ctx.agent, "options", None)
        cassette = getattr(options, "cassette", None)
        if cassette is not None and cassette.replays(str(event.model)):
            return None  # served from the cassette: nothing sent, nothing to pay
        said = await asyncio.to_thread(
            self.budget.reserve,
            self.ws,
            self.key,
            str(event.model),
            list(event.messages),
            getattr(options, "max_tokens", None),
            build_system_prompt(ctx.agent) if ctx.agent is not None else None,  # what the request carries
        )
        if said is None:
            return None
        self.refused = said
        return Abort(said)


@dataclass
class EvalContext:
    """Handed to function tasks (`fn(inputs, ctx)`) and used by agent tasks and judges."""

    step: StepContext
    case: Case
    model: str
    session_id: uuid.UUID
    budget: EvalBudget | None = None
    output: Any = None  # the task's output, set before scoring
    sub_run: Any = None  # a workflow task's run
    cassettes: dict[str, Any] = field(default_factory=dict)  # by agent name, made on first need

    @property
    def ws(self) -> Any:
        return self.step.ws

    @property
    def key(self) -> str:
        return self.step.idempotency_key

    def cassette(self, agent_name: str) -> Any:
        """The cassette of this case's `agent_name` calls when the eval records or replays (one file per
        case, model and agent: cases run in any order, at once, and each replays its own calls)."""
        folder = self.step.input.get("cassettes")
        if not folder:
            return None
        from pathlib import Path

        from cmdc_nb.providers.cassette import Cassette

        if agent_name not in self.cassettes:  # one a case and agent: a Cassette stays registered
            digest = hashlib.sha256(f"{self.case.id}\0{self.model}\0{agent_name}".encode()).hexdigest()[:16]
            label = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.case.id}--{agent_name}")[:60]
            self.cassettes[agent_name] = Cassette(Path(folder) / f"{label}-{digest}.json", mode="auto")
        return self.cassettes[agent_name]

    def replays(self, agent_name: str, model: str) -> bool:
        """Whether this case's `agent_name` calls to `model` are served from its cassette."""
        cassette = self.cassette(agent_name)
        return cassette is not None and bool(cassette.replays(model))

    def _guard(self) -> list[Plugin]:
        return [_BudgetGuard(self.budget, self.ws, self.key)] if self.budget is not None else []

    async def agent(self, **options: Any) -> Agent:
        """An agent on the case's session with the model under test (unless `model=` says otherwise):
        its calls are stored with the case, and the budget guards each of them. Made again after a kill,
        it holds the conversation stored so far (`resume()` finishes an interrupted turn)."""
        from cmdc_nb.kernel.agent import Agent

        plugins = [*options.pop("plugins", ()), *self._guard()]
        model = options.pop("model", self.model)
        name = options.pop("name", TASK_AGENT)
        options.setdefault("cassette", self.cassette(name))
        return await asyncio.to_thread(
            Agent.from_session,
            self.session_id,
            model=model,
            ws=self.ws,
            workflow_step=(self.step.run_id, self.step.step_row_id),
            name=name,
            plugins=plugins,
            **options,
        )

    async def judge_reply(self, judge: _Judge) -> str:
        """The judge's reply for this case's output: read back when it is stored already, else asked."""
        from cmdc_nb.evals.scorers import JUDGE_SYSTEM
        from cmdc_nb.kernel.agent import Agent

        name = f"judge:{judge.name}"
        stored = await asyncio.to_thread(self._stored_reply, name)
        if stored is not None:
            return stored
        agent = Agent(
            model=judge.model,
            session=self.session_id,
            ws=self.ws,
            workflow_step=(self.step.run_id, self.step.step_row_id),
            name=name,
            agent_id=f"{self.session_id}:{name}",
            record_messages=False,
            system_prompt=JUDGE_SYSTEM,
            prompt_mode="none",
            max_tokens=judge.max_tokens,
            max_turns=1,
            plugins=self._guard(),
            cassette=self.cassette(name),
        )
        try:
            return str(await self.guarded(agent.prompt(judge.prompt(self.output, self.case)), agent))
        finally:
            await agent.stop()

    async def guarded(self, awaitable: Any, agent: Agent) -> Any:
        """`await awaitable`, turning the budget guard's abort into BudgetExceededError."""
        try:
            return await awaitable
        except AbortedError:
            refused = next(
                (p.refused for p in agent.plugins.plugins if isinstance(p, _BudgetGuard) and p.refused), None
            )
            if refused:
                raise BudgetExceededError(refused) from None
            raise

    def _stored_reply(self, agent_name: str) -> str | None:
        with self.ws.read() as db:
            rows = db.execute(
                sa.select(AgentCall.meta, AgentCall.response_content)
                .where(
                    AgentCall.workflow_step_id == self.step.step_row_id,
                    AgentCall.status == AgentCallStatus.COMPLETED,
                )
                .order_by(AgentCall.inserted_at.desc())
            ).all()
        for meta, content in rows:
            if (meta or {}).get("agent") == agent_name and content is not None:
                return str(content)
        return None

    async def run_workflow(self, workflow: str) -> Any:
        """Run `workflow` for this case (found again after a kill by the step's key), its output back."""
        from cmdc_nb.workflows import engine, records

        inputs = self.case.inputs if isinstance(self.case.inputs, dict) else {"input": self.case.inputs}
        existing = await asyncio.to_thread(self._sub_run, workflow)
        if existing is None:
            run = await asyncio.to_thread(
                records.start_workflow_run,
                workflow,
                self.step.user_id,
                input={**inputs, "model": self.model},
                trigger_type="api",
                trigger_metadata={"eval_step": self.key},
                ws=self.ws,
            )
            run = await engine.execute_workflow_run(run.id, ws=self.ws)
        elif existing.status.value in ("completed", "failed", "cancelled", "timeout"):
            run = existing
        else:
            from cmdc_nb.workflows import state

            await asyncio.to_thread(state.recover, self.ws, existing.id, force=True)
            run = await engine.execute_workflow_run(existing.id, ws=self.ws)
        if run.status.value != "completed":
            from cmdc_nb.errors import WorkflowError

            raise WorkflowError(
                f"the workflow run ended {run.status.value}: {run.error_message or ''}".strip(),
                error_type=run.error_type or "WorkflowFailed",
            )
        self.sub_run = run
        return run.output

    def _sub_run(self, workflow: str) -> Any:
        with self.ws.read() as db:
            rows = db.scalars(
                sa.select(WorkflowRun).where(
                    WorkflowRun.workflow_id == uuid.UUID(workflow), WorkflowRun.user_id == self.step.user_id
                )
            ).all()
        for r in rows:
            if (r.trigger_metadata or {}).get("eval_step") == self.key:
                return r
        return None


def case_session(step: StepContext, case: Case, model: str, eval_name: str) -> uuid.UUID:
    """The case's session, made on first need and found again by the step's key."""
    from cmdc_nb.services import sessions

    slug = "eval-" + hashlib.sha256(step.idempotency_key.encode()).hexdigest()[:32]
    try:
        return sessions.get_session_by_slug(step.user_id, slug, ws=step.ws).id
    except NotFoundError:
        pass
    s = sessions.create_session(
        step.user_id,
        name=f"{eval_name} · {case.id} · {model}"[:200],
        slug=slug,
        purpose="eval case",
        tags=["eval"],
        metadata={"eval_run": str(step.run_id), "case": case.id, "model": model},
        ws=step.ws,
    )
    return s.id
