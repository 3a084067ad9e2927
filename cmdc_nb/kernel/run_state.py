"""The small types an agent's runs are made of: states, end reasons, prompt handles, and the records of
what a run is waiting for."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from cmdc_nb.providers import TokenUsage
from cmdc_nb.providers.attachments import Attachment

__all__ = [
    "ABORT_REASONS",
    "KILL_TOOLS",
    "AgentState",
    "EndReason",
    "PromptHandle",
    "SteerResult",
    "normalize_abort_reason",
]

log = logging.getLogger("cmdc_nb.kernel")

ABORT_REASONS = (
    "user_cancelled",
    "timeout",
    "shutdown",
    "budget_exceeded",
    "permission_denied",
    "provider_error",
)
KILL_TOOLS = ("running", "all", "none")


def normalize_abort_reason(reason: Any) -> str:
    """The seed's whitelist: a known reason passes; None is user_cancelled; anything else is unknown."""
    if reason is None:
        return "user_cancelled"
    text = str(getattr(reason, "value", reason)).strip().lower().replace("-", "_").replace(" ", "_")
    if text in ABORT_REASONS:
        return text
    log.warning("abort reason %r is not one of %s; recorded as 'unknown'", reason, ", ".join(ABORT_REASONS))
    return "unknown"


class AgentState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    STREAMING = "streaming"
    EXECUTING_TOOLS = "executing_tools"


@dataclass(frozen=True)
class EndReason:
    """How a run (or the agent) ended: normal, aborted, max_turns_exceeded, loop_detected,
    provider_error, provider_timeout, plugin_aborted, exception or shutdown."""

    kind: str
    detail: str | None = None
    plugin: str | None = None


class PromptHandle:
    """What `prompt()` returns: `await handle` gives the reply (all assistant text of the run)."""

    def __init__(
        self, text: str, queued: bool, future: asyncio.Future[str], files: tuple[Attachment, ...] = ()
    ) -> None:
        self.text = text
        self.queued = queued
        self.future = future
        self.files = files  # attached to the prompt

    def __await__(self) -> Any:
        return self.future.__await__()

    def done(self) -> bool:
        return self.future.done()

    def result(self) -> str:
        return self.future.result()

    def __repr__(self) -> str:
        state = "done" if self.future.done() else "queued" if self.queued else "running"
        return f"<PromptHandle {state} {self.text[:40]!r}>"


@dataclass(frozen=True)
class SteerResult:
    """`status`: queued, started (the agent was idle: the text became a prompt), rejected_full."""

    accepted: bool
    status: str
    handle: PromptHandle | None = None


@dataclass
class Decision:
    approved: bool
    note: str | None = None
    args: Mapping[str, Any] | None = None
    auto_resume: bool = True
    by: str | None = None  # who decided, for an agent that stores nothing (a stored one reads it back)


@dataclass
class Pending:
    """A tool call waiting for a decision (approval) or an answer (user input)."""

    ref: str
    future: asyncio.Future[Any]
    tool: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)
    call_id: str = ""
    question: str = ""
    requested_at: float = field(default_factory=time.time)
    approval_id: str | None = None
    # what this process's approve()/reject() asked for (note, edited args, auto_resume), applied when
    # the stored decision comes back as an event
    choice: Decision | None = None
    writing: asyncio.Future[None] | None = None  # the store write of that decision


@dataclass
class RunningTool:
    task: asyncio.Task[Any]
    name: str
    call_id: str
    started: float
    immune: bool
    executing: bool = False
    tool_use_id: str | None = None  # the stored tool use, once it is executing


@dataclass
class Run:
    handle: PromptHandle
    started: float
    texts: list[str] = field(default_factory=list)
    turns: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: Decimal | None = Decimal(0)
    messages_at_start: int = 0
    call_id: str | None = None  # the agent call in flight (for cancellation)
    stop_after_batch: bool = False
    abort: tuple[str, str | None] | None = None
    batch_size: int = 0  # tool calls in the batch running now
    results_stored: set[str] = field(default_factory=set)  # tool call ids whose result message is stored


def ms(t: float) -> int:
    return int(t * 1000)


def add_cost(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


class Stop(Exception):
    """Internal: end the run with this reason."""

    def __init__(self, reason: EndReason) -> None:
        self.reason = reason
        super().__init__(reason.kind)
