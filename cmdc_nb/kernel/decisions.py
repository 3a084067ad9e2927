"""Deciding a waiting tool call: `approve` / `reject` on the agent, and how a decision taken anywhere
reaches the call that waits for it (see docs/kernel.md, "One decision, two vocabularies").

A stored agent never resolves the wait itself: it writes the decision (in a worker thread when called
on its loop) and the call goes on when the decision's event arrives — the same way as for a decision
taken in the approval queue, by a rule, or in another process. An agent that stores nothing has no
event to wait for, so `approve` resolves the wait directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Mapping
from typing import Any

from cmdc_nb._plumbing.arguments import ensure_args
from cmdc_nb.errors import AgentNotAliveError, InvalidInputError, InvalidStateError, NotFoundError
from cmdc_nb.kernel._core import AgentCore
from cmdc_nb.kernel.run_state import Decision, Pending

__all__ = ["Decisions"]

log = logging.getLogger("cmdc_nb.kernel")


class Decisions(AgentCore):
    """The agent's part that takes and receives approval decisions."""

    def _subscribe_decisions(self) -> None:
        """The one way a stored decision reaches a waiting tool call: its event on the session's
        agent-calls topic, whoever took it (this agent's approve(), another cell, the approval queue, a
        rule, a colleague's kernel through the event bridge). The tool runner reads the database only as
        a fallback, for processes whose events do not reach this bus."""
        if not self.recorder.enabled:
            return
        from cmdc_nb._plumbing.workspace import get_workspace
        from cmdc_nb.events import topics

        loop = self._loop
        assert loop is not None
        decided = {"tool_use_approved": True, "tool_use_denied": False}

        def on_event(event: Any) -> None:
            if event.type in decided and not loop.is_closed():
                ref = str(event.payload.get("tool_use_id"))
                loop.call_soon_threadsafe(self._decided, ref, decided[event.type])
            elif event.type == "tool_use_cancelled" and not loop.is_closed():
                ref = str(event.payload.get("tool_use_id"))
                loop.call_soon_threadsafe(self._cancelled_elsewhere, ref)

        self._bus_sub = get_workspace(self.recorder.ws).bus.subscribe(
            topics.session_agent_calls(self.recorder.session_id), on_event
        )

    def _cancelled_elsewhere(self, ref: str) -> None:
        """A tool use this agent is running was cancelled elsewhere (a widget, another cell or kernel):
        its tool is stopped as a steer stops one, so the model is told it was cancelled, and the
        cancel stands. (This agent's own cancels come here too, once their task is ending: left alone.)"""
        for r in list(self._running.values()):
            if r.tool_use_id == ref and r.executing and not r.task.done() and not r.task.cancelling():
                r.task.cancel("cancelled: the tool use was cancelled while it ran")

    def _decided(self, ref: str, approved: bool) -> None:
        """A stored decision arrived (on the loop). Kept when nothing waits for it yet: the call may be
        about to wait (decided between its read and its wait)."""
        pending = self._approvals.get(ref)
        if pending is None:
            self._early_decisions[ref] = approved
            while len(self._early_decisions) > 256:  # decisions no call here waits for (auto-approved)
                self._early_decisions.pop(next(iter(self._early_decisions)))
            return
        choice = pending.choice
        decision = choice if choice is not None and choice.approved == approved else Decision(approved)
        if not pending.future.done():
            pending.future.set_result(decision)

    def approve(
        self,
        ref: str,
        *,
        args: Mapping[str, Any] | None = None,
        note: str | None = None,
        auto_resume: bool = True,
        remember: bool = False,
        by: Any = None,
    ) -> asyncio.Future[None] | None:
        """Approve a waiting tool call (`ref` from its approval_required event); `args` edits it.

        A stored agent writes the decision (services: `agents.approve_tool_use`) and the waiting call
        goes on when its event arrives. Called on the agent's own loop (a cell, a widget, the gateway),
        the write runs in a worker thread and this returns its future — `await` it to wait for the write
        and see its errors; called from another thread, it is written before this returns (None)."""
        return self._decide(
            str(ref), True, args=args, note=note, auto_resume=auto_resume, remember=remember, by=by
        )

    def reject(
        self, ref: str, *, note: str | None = None, auto_resume: bool = False, by: Any = None
    ) -> asyncio.Future[None] | None:
        """Deny a waiting tool call. With auto_resume=False (the default) the run ends after this
        batch of tools instead of asking the model again. Returns as `approve` does."""
        return self._decide(
            str(ref), False, args=None, note=note, auto_resume=auto_resume, remember=False, by=by
        )

    def _decide(
        self,
        ref: str,
        approved: bool,
        *,
        args: Mapping[str, Any] | None,
        note: str | None,
        auto_resume: bool,
        remember: bool,
        by: Any,
    ) -> asyncio.Future[None] | None:
        if not self.alive:
            raise AgentNotAliveError(self.id)
        pending = self._approvals.get(ref)
        if pending is None:
            raise NotFoundError("pending approval", ref)
        if args is not None and not isinstance(args, Mapping):
            raise InvalidInputError("must be a mapping of argument names to values", field="args")
        if note is not None and not isinstance(note, str):
            raise InvalidInputError("must be text", field="note")
        if approved and args is not None and pending.tool in self.tools:
            ensure_args(args, self.tools[pending.tool].parameters, field="args")
        choice = Decision(approved, note, dict(args) if args is not None else None, bool(auto_resume))
        if not self.recorder.enabled:  # nothing stored: this call is the only way the decision arrives
            choice.by = None if by is None else str(getattr(by, "email", None) or by)
            self._resolve(pending.future, choice)
            return None
        if pending.choice is not None:  # already decided here, its event not arrived yet
            if pending.choice.approved == approved and pending.writing is not None:
                return pending.writing
            raise InvalidStateError(
                "tool call",
                "approved" if pending.choice.approved else "rejected",
                "approved" if approved else "rejected",
            )
        pending.choice = choice

        def write() -> None:
            self.recorder.decide(ref, approved, note=note, args=args, by=by, remember=remember)

        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            try:
                write()
            except BaseException:
                pending.choice = None  # nothing was decided: the call waits for a person again
                raise
            return None
        assert self._loop is not None
        # the caller's context goes along: who is acting (`acting_as`) decides what they may decide
        future: asyncio.Future[None] = self._loop.run_in_executor(None, contextvars.copy_context().run, write)
        pending.writing = future
        future.add_done_callback(functools.partial(_written, pending))
        return future


def _written(pending: Pending, future: asyncio.Future[None]) -> None:
    if future.cancelled() or future.exception() is None:
        return
    # Nothing was decided: the call waits for a person again (unless someone else decided first).
    pending.choice, pending.writing = None, None
    log.warning("the decision was not stored: %s", future.exception())
