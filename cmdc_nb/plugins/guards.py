"""CostGuard (limits checked before each request), ModelRouter (pick the model by the seed's
conditions) and Recovery (back off, fall back to another model, escalate, give up)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import BudgetExceededError, InvalidInputError
from cmdc_nb.kernel.plugins import Abort, Action, Emit, HookEvent, Plugin, SwitchModel
from cmdc_nb.kernel.tools import ToolContext

__all__ = ["CONDITIONS", "CostGuard", "ModelRouter", "Recovery"]

log = logging.getLogger("cmdc_nb.plugins")


class CostGuard(Plugin):
    """Before each request: the agent's own token and cost limits, and the workspace's budgets for its
    session (a request that would cross a hard budget aborts the run with the budget named). Warns once
    at `warn_threshold` of a limit."""

    name = "cost_guard"
    priority = 120

    @checked
    def __init__(
        self,
        *,
        max_tokens: int | None = None,
        max_cost_usd: Decimal | str | float | None = None,
        warn_threshold: float = 0.8,
        check_budgets: bool = True,
    ) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.max_cost_usd = _money(max_cost_usd) if max_cost_usd is not None else None
        self.warn_threshold = warn_threshold
        self.check_budgets = check_budgets
        self._warned: set[str] = set()

    def on_before_request(self, event: HookEvent, ctx: ToolContext) -> Action | list[Action] | None:
        actions: list[Action] = []
        cost = ctx.cost_usd if isinstance(ctx.cost_usd, Decimal) else None
        for key, used, limit in (
            ("tokens", Decimal(ctx.total_tokens), self.max_tokens),
            ("cost_usd", cost, self.max_cost_usd),
        ):
            if limit is None or used is None:
                continue
            if used >= Decimal(str(limit)):
                return Abort(f"{key} budget exhausted ({used}/{limit})")
            if used >= Decimal(str(limit)) * Decimal(str(self.warn_threshold)) and key not in self._warned:
                self._warned.add(key)
                actions.append(Emit("cost_warning", {"limit": key, "used": str(used), "max": str(limit)}))
        if self.check_budgets and ctx.session_id is not None:
            from cmdc_nb.services import budgets

            ws = getattr(getattr(ctx.agent, "options", None), "ws", None)
            try:
                statuses = budgets.check_budgets(session=ctx.session_id, user=_user_of(ctx), ws=ws)
            except BudgetExceededError as exc:
                return Abort(str(exc))
            for st in statuses:
                if st.limit_usd and st.spent_usd >= st.limit_usd * Decimal(str(self.warn_threshold)):
                    key = f"budget:{st.budget.id}:{st.period_key}"
                    if key not in self._warned:
                        self._warned.add(key)
                        actions.append(
                            Emit("cost_warning", {"budget": st.budget.name, "percent": str(st.percent)})
                        )
        return actions or None


def _money(value: Decimal | str | float) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidInputError("must be an amount in USD, e.g. '2.50'", field="max_cost_usd") from None
    if not out.is_finite() or out < 0:
        raise InvalidInputError("must be a finite amount of at least 0", field="max_cost_usd")
    return out


def _user_of(ctx: ToolContext) -> Any:
    recorder = getattr(ctx.agent, "recorder", None)
    return getattr(recorder, "user_id", None)


# --- routing ------------------------------------------------------------------------------------------
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "gt": operator.gt, "lt": operator.lt, "gte": operator.ge, "lte": operator.le,
}  # fmt: skip


def _hour_in(hour: int, spans: Iterable[Any]) -> bool:
    for span in spans:
        if isinstance(span, range) and hour in span:
            return True
        if isinstance(span, tuple | list) and len(span) == 2 and span[0] <= hour <= span[1]:
            return True
        if isinstance(span, int) and hour == span:
            return True
    return False


def _condition(cond: Sequence[Any], ctx: ToolContext, now: dt.datetime) -> bool:
    kind, *args = cond
    ud = ctx.user_data or {}
    match kind:
        case "turn_gt":
            return bool(ctx.turn > args[0])
        case "cost_gt":
            return ctx.cost_usd is not None and Decimal(str(ctx.cost_usd)) > Decimal(str(args[0]))
        case "tokens_gt":
            return bool(ctx.total_tokens > args[0])
        case "token_budget_lt":
            budget = ud.get("token_budget")
            return budget is not None and budget - ctx.total_tokens < args[0]
        case "task_complexity":
            return bool(ud.get("task_complexity") == args[0])
        case "task_complexity_in":
            return ud.get("task_complexity") in args[0]
        case "time_of_day_in":
            return _hour_in(now.hour, args[0])
        case "user_tier":
            return bool(ud.get("user_tier") == args[0])
        case "user_tier_in":
            return ud.get("user_tier") in args[0]
        case "user_data" if len(args) == 2:
            return bool(ud.get(args[0]) == args[1])
        case "user_data" if len(args) == 3:
            return args[0] in ud and _OPS[args[1]](ud[args[0]], args[2])
    raise KeyError(kind)


CONDITIONS = (
    "turn_gt", "cost_gt", "tokens_gt", "token_budget_lt", "task_complexity", "task_complexity_in",
    "time_of_day_in", "user_tier", "user_tier_in", "user_data",
)  # fmt: skip


class ModelRouter(Plugin):
    """Before each request, the first rule whose condition holds picks the model (else `default_model`).

    Rules are `(condition, model)` with the seed's conditions, e.g. `(("turn_gt", 5), "openai/gpt-4o-mini")`,
    `(("time_of_day_in", [range(22, 24), range(0, 7)]), "ollama/llama3.2")` (UTC hours; `now_fn`
    injectable), `(("user_data", "plan", "eq", "pro"), "anthropic/claude-sonnet-4-5")`. A condition that
    cannot be evaluated is false, never an error."""

    name = "model_router"
    priority = 130

    @checked
    def __init__(
        self,
        rules: Sequence[tuple[Sequence[Any], str]],
        *,
        default_model: str | None = None,
        now_fn: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        super().__init__()
        for cond, _model in rules:
            if not cond or cond[0] not in CONDITIONS:
                raise InvalidInputError(
                    f"unknown condition {cond!r}; valid: {', '.join(CONDITIONS)}", field="rules"
                )
        self.rules = list(rules)
        self.default_model = default_model
        self.now_fn = now_fn

    def choose(self, ctx: ToolContext) -> str | None:
        now = self.now_fn()
        for cond, model in self.rules:
            try:
                if _condition(cond, ctx, now):
                    return model
            except Exception:  # the seed evaluates every condition "in rescue": false, never a crash
                continue
        return self.default_model

    def on_before_request(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        model = self.choose(ctx)
        if model is not None and model != event.model:
            return SwitchModel(model)
        return None


class Recovery(Plugin):
    """When a tool fails: wait (exponential backoff) while the agent retries; once `max_retries` are
    spent, switch to `fallback_model` (once), then emit an escalation, then abort with a report."""

    name = "recovery"
    priority = 150

    @checked
    def __init__(
        self,
        *,
        max_retries: int = 3,
        backoff_base_s: float = 1.0,
        fallback_model: str | None = None,
        escalation_event: bool = True,
    ) -> None:
        super().__init__()
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.fallback_model = fallback_model
        self.escalation_event = escalation_event
        self._stage: dict[str, int] = {}

    def on_session_start(self, event: HookEvent, ctx: ToolContext) -> None:
        # The retries happen in the kernel; Recovery makes sure there are enough, and does the waiting.
        agent = ctx.agent
        if agent is not None and agent.options.tool_retries < self.max_retries - 1:
            agent.options = agent.options.with_(tool_retries=self.max_retries - 1, tool_retry_delay_s=0.0)

    async def on_on_tool_error(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        if event.attempt < self.max_retries:
            await asyncio.sleep(self.backoff_base_s * 2 ** (event.attempt - 1))
            return None
        stage = self._stage.get(event.name, 0)
        self._stage[event.name] = stage + 1
        if stage == 0 and self.fallback_model:
            return SwitchModel(self.fallback_model)
        if stage <= 1 and self.escalation_event:
            return Emit("escalation", {"tool": event.name, "error": event.error, "attempts": event.attempt})
        return Abort(f"{event.name} kept failing after {event.attempt} attempts: {event.error}")
