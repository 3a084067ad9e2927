"""The kernel's typed events and each agent's event log (monotonic index, replay, live delivery).

Every event is a frozen dataclass with a `type` string (the seed's names). The log wraps each in an
`Envelope(agent_id, index, ts, event)`; the index starts at 1 and grows by one per event of that agent.
`subscribe(since=, types=)` replays the buffered events after `since` (filtered by `types`, which
filters the replay only, never live delivery) and then follows live. Events are also published on the
workspace bus (topic `agent:{agent_id}`) as plain JSON so other layers can follow without the kernel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from cmdc_nb.providers import TokenUsage

log = logging.getLogger("cmdc_nb.kernel")

__all__ = [
    "EVENT_TYPES",
    "AgentAbort",
    "AgentEnd",
    "AgentEvent",
    "AgentResumed",
    "AgentStart",
    "ApprovalRequired",
    "Compaction",
    "Envelope",
    "EventLog",
    "Intervention",
    "LoopDetected",
    "MessageDelta",
    "MessageStart",
    "ModelFallback",
    "ModelSwitched",
    "PluginError",
    "PluginEvent",
    "PromptReceived",
    "RequestStart",
    "ResponseComplete",
    "Retry",
    "StatusUpdate",
    "SteeringApplied",
    "SteeringReceived",
    "StreamError",
    "ThinkingDelta",
    "TitleGenerated",
    "ToolAttached",
    "ToolCallUnknown",
    "ToolCalls",
    "ToolDecided",
    "ToolDetached",
    "ToolExecutionEnd",
    "ToolExecutionMetrics",
    "ToolExecutionStart",
    "ToolsUpdated",
    "TurnComplete",
    "UserInputRequested",
    "UserResponded",
    "events_table",
    "register_event_type",
]


@dataclass(frozen=True, slots=True)
class AgentEvent:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, TokenUsage):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- lifecycle ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentStart(AgentEvent):
    type: ClassVar[str] = "agent_start"
    prompt: str
    turn: int


@dataclass(frozen=True, slots=True)
class AgentEnd(AgentEvent):
    """A run ended; `reason` is normal, aborted, max_turns_exceeded, loop_detected, provider_error,
    plugin_aborted or exception."""

    type: ClassVar[str] = "agent_end"
    reply: str
    reason: str
    turns: int
    usage: TokenUsage
    cost_usd: Decimal | None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AgentAbort(AgentEvent):
    type: ClassVar[str] = "agent_abort"
    reason: str
    detail: str | None = None
    state: str = "idle"


@dataclass(frozen=True, slots=True)
class PromptReceived(AgentEvent):
    type: ClassVar[str] = "prompt_received"
    text: str
    queued: bool
    files: tuple[Mapping[str, Any], ...] = ()  # each attached file's name, type, size and SHA-256


@dataclass(frozen=True, slots=True)
class AgentResumed(AgentEvent):
    """The agent goes on after a wait: trigger is tool_approved, tool_rejected, user_respond or steering."""

    type: ClassVar[str] = "agent_resumed"
    trigger: str
    refs: tuple[str, ...] = ()
    count: int = 1


@dataclass(frozen=True, slots=True)
class TurnComplete(AgentEvent):
    type: ClassVar[str] = "turn_complete"
    turn: int
    usage: TokenUsage
    cost_usd: Decimal | None


# --- provider and stream ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RequestStart(AgentEvent):
    type: ClassVar[str] = "request_start"
    model: str
    messages: int
    turn: int
    agent_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class MessageStart(AgentEvent):
    type: ClassVar[str] = "message_start"
    turn: int
    model: str


@dataclass(frozen=True, slots=True)
class MessageDelta(AgentEvent):
    type: ClassVar[str] = "message_delta"
    delta: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta(AgentEvent):
    type: ClassVar[str] = "thinking_delta"
    delta: str


@dataclass(frozen=True, slots=True)
class StatusUpdate(AgentEvent):
    """A `<status>…</status>` the model wrote while streaming (with `stream_tags=True`)."""

    type: ClassVar[str] = "status_update"
    text: str


@dataclass(frozen=True, slots=True)
class TitleGenerated(AgentEvent):
    """A `<title>…</title>` the model wrote (with `stream_tags=True`), at most 60 characters."""

    type: ClassVar[str] = "title_generated"
    title: str


@dataclass(frozen=True, slots=True)
class ResponseComplete(AgentEvent):
    type: ClassVar[str] = "response_complete"
    text: str
    tool_calls: tuple[Mapping[str, Any], ...]
    finish_reason: str
    model: str
    usage: TokenUsage
    cost_usd: Decimal | None
    attempts: int = 1
    call_id: str | None = None  # the stored agent call (its assistant message links to it)


@dataclass(frozen=True, slots=True)
class Retry(AgentEvent):
    type: ClassVar[str] = "retry"
    attempt: int
    delay_s: float
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class ModelFallback(AgentEvent):
    type: ClassVar[str] = "model_fallback"
    from_model: str
    to_model: str
    reason: str


@dataclass(frozen=True, slots=True)
class StreamError(AgentEvent):
    type: ClassVar[str] = "stream_error"
    kind: str
    reason: str


# --- tools --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToolCalls(AgentEvent):
    type: ClassVar[str] = "tool_calls"
    count: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolExecutionStart(AgentEvent):
    type: ClassVar[str] = "tool_execution_start"
    name: str
    call_id: str
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolExecutionEnd(AgentEvent):
    type: ClassVar[str] = "tool_execution_end"
    name: str
    call_id: str
    ok: bool
    result: str


@dataclass(frozen=True, slots=True)
class ToolExecutionMetrics(AgentEvent):
    type: ClassVar[str] = "tool_execution_metrics"
    name: str
    call_id: str
    started_at_ms: int
    ended_at_ms: int | None = None
    duration_ms: int | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class ToolCallUnknown(AgentEvent):
    type: ClassVar[str] = "tool_call_unknown"
    name: str
    call_id: str


@dataclass(frozen=True, slots=True)
class ToolAttached(AgentEvent):
    type: ClassVar[str] = "tool_attached"
    name: str


@dataclass(frozen=True, slots=True)
class ToolDetached(AgentEvent):
    type: ClassVar[str] = "tool_detached"
    name: str


@dataclass(frozen=True, slots=True)
class ToolsUpdated(AgentEvent):
    type: ClassVar[str] = "tools_updated"
    attached: tuple[str, ...]
    detached: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoopDetected(AgentEvent):
    """Runaway tool use was stopped: kind is repeated_call, repeating_pattern or consecutive_failures."""

    type: ClassVar[str] = "loop_detected"
    kind: str
    detail: str


# --- approvals and user input -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ApprovalRequired(AgentEvent):
    """A tool call waits for a decision; `ref` is what approve()/reject() take (the tool use id when
    the agent persists to a session, else the model's call id)."""

    type: ClassVar[str] = "approval_required"
    ref: str
    tool: str
    args: Mapping[str, Any]
    call_id: str
    approval_id: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class ToolDecided(AgentEvent):
    """A tool call that needed a decision got one — from a person, or from a rule as it was recorded
    (then no `approval_required` came first). `how`: person, rule, remembered (an "always allow") or
    timeout; `by`: the person's e-mail or the rule's name (None when nobody is known); `note`: theirs."""

    type: ClassVar[str] = "tool_decided"
    ref: str
    name: str
    call_id: str
    approved: bool
    how: str
    by: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class UserInputRequested(AgentEvent):
    type: ClassVar[str] = "ask_user"
    ref: str
    question: str
    options: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class UserResponded(AgentEvent):
    type: ClassVar[str] = "user_responded"
    ref: str
    response: str


# --- control ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ModelSwitched(AgentEvent):
    type: ClassVar[str] = "model_switched"
    from_model: str
    to_model: str
    reason: str | None
    turn: int
    provider_opts_changed: bool = False


@dataclass(frozen=True, slots=True)
class SteeringReceived(AgentEvent):
    """status: queued, started (the agent was idle: it became a prompt), rejected_full, rejected_plugin."""

    type: ClassVar[str] = "steering_received"
    text: str
    status: str


@dataclass(frozen=True, slots=True)
class SteeringApplied(AgentEvent):
    type: ClassVar[str] = "steering_applied"
    count: int
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Intervention(AgentEvent):
    type: ClassVar[str] = "intervention"
    prompt: str
    hook: str


@dataclass(frozen=True, slots=True)
class Compaction(AgentEvent):
    type: ClassVar[str] = "compaction"
    messages_before: int
    messages_after: int
    removed: int
    summary: str


@dataclass(frozen=True, slots=True)
class PluginEvent(AgentEvent):
    type: ClassVar[str] = "plugin_event"
    plugin: str
    name: str
    payload: Any = None


@dataclass(frozen=True, slots=True)
class PluginError(AgentEvent):
    """A plugin raised or returned an action its hook does not allow; the run went on without it."""

    type: ClassVar[str] = "plugin_error"
    plugin: str
    hook: str
    error: str


EVENT_TYPES: dict[str, type[AgentEvent]] = {}  # every known event type, the kernel's and the features'
_KERNEL_TYPES: list[str] = []

E = TypeVar("E", bound=type[AgentEvent])


def register_event_type(cls: E) -> E:
    """Make an event class known by its `type`: listed in `EVENT_TYPES` and `events_table()`.

    Plugins and tools define and register their own events (`@register_event_type` above the
    dataclass) in their own modules, so a new feature never edits the kernel. A `type` may belong to
    one class only."""
    if not (isinstance(cls, type) and issubclass(cls, AgentEvent)) or cls.type == AgentEvent.type:
        raise TypeError("register_event_type takes an AgentEvent subclass with its own `type`")
    known = EVENT_TYPES.get(cls.type)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(
            f"event type {cls.type!r} already belongs to {known.__module__}.{known.__qualname__}"
        )
    EVENT_TYPES[cls.type] = cls
    return cls


# Every event class defined above, in the order defined (the order they happen in a run): a new kernel
# event is registered by being written here, not by also being added to a list.
for _cls in [c for c in list(globals().values()) if isinstance(c, type) and issubclass(c, AgentEvent)]:
    if _cls is not AgentEvent:
        register_event_type(_cls)
        _KERNEL_TYPES.append(_cls.type)


def events_table() -> str:
    """Every registered event type with its fields, as Markdown (docs/kernel.md embeds it, with the
    toolkit and plugins imported; a test keeps it true)."""
    # the kernel's own in the order they happen, then the features' by module (import order varies)
    features = sorted(set(EVENT_TYPES) - set(_KERNEL_TYPES), key=lambda n: (EVENT_TYPES[n].__module__, n))
    rows = [
        f"| `{name}` | `{EVENT_TYPES[name].__name__}` | "
        + ", ".join(f.name for f in dataclasses.fields(EVENT_TYPES[name]))
        + " |"
        for name in [*_KERNEL_TYPES, *features]
    ]
    return "\n".join(["| type | class | fields |", "|---|---|---|", *rows])


@dataclass(frozen=True, slots=True)
class Envelope:
    agent_id: str
    index: int
    ts: dt.datetime
    event: AgentEvent

    @property
    def type(self) -> str:
        return self.event.type

    def __repr__(self) -> str:
        return f"<Envelope #{self.index} {self.event.type}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "index": self.index,
            "ts": self.ts.isoformat(),
            "type": self.event.type,
            **self.event.to_dict(),
        }


@dataclass(eq=False)
class _Sub:
    deliver: Callable[[Envelope], None]
    active: bool = True


@dataclass(eq=False)
class EventSubscription:
    """A live subscription to one agent's events; `close()` stops delivery."""

    _log: EventLog
    _sub: _Sub
    _queue: asyncio.Queue[Envelope | None] | None = None

    def close(self) -> None:
        self._log._remove(self._sub)
        if self._queue is not None:
            self._queue.put_nowait(None)

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self

    async def __anext__(self) -> Envelope:
        if self._queue is None:
            raise TypeError("this subscription delivers to a callback; use agent.events() to iterate")
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


@dataclass(eq=False)
class EventLog:
    """One agent's events: a bounded replay buffer (`size` newest; 0 keeps none) and its subscribers."""

    agent_id: str
    size: int = 500
    forward: Callable[[Envelope], None] | None = None
    _buffer: deque[Envelope] = field(init=False)
    _subs: list[_Sub] = field(default_factory=list)
    _index: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._buffer = deque(maxlen=self.size or None) if self.size else deque(maxlen=0)

    @property
    def last_index(self) -> int | None:
        return self._index or None

    def emit(self, event: AgentEvent) -> Envelope:
        with self._lock:
            self._index += 1
            env = Envelope(self.agent_id, self._index, dt.datetime.now(dt.UTC), event)
            if self.size:
                self._buffer.append(env)
            for sub in list(self._subs):
                if sub.active:
                    _safe(sub.deliver, env)
        if self.forward is not None:
            _safe(self.forward, env)
        return env

    def replay(self, *, since: int | None = None, types: Iterable[str] | None = None) -> list[Envelope]:
        wanted = set(types) if types is not None else None
        with self._lock:
            return [
                e for e in self._buffer if e.index > (since or 0) and (wanted is None or e.type in wanted)
            ]

    def subscribe(
        self,
        callback: Callable[[Envelope], None] | None = None,
        *,
        since: int | None = None,
        types: Iterable[str] | None = None,
    ) -> EventSubscription:
        """With a callback: call it per event. Without: an async iterator (call from a running loop)."""
        queue: asyncio.Queue[Envelope | None] | None = None
        if callback is None:
            loop = asyncio.get_running_loop()
            q: asyncio.Queue[Envelope | None] = asyncio.Queue()
            queue = q

            def callback(env: Envelope) -> None:
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    running = None
                if running is loop:
                    q.put_nowait(env)
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(q.put_nowait, env)

        sub = _Sub(callback)
        with self._lock:
            if since is not None:
                for env in self.replay(since=since, types=types):
                    _safe(sub.deliver, env)
            self._subs.append(sub)
        return EventSubscription(self, sub, queue)

    def _remove(self, sub: _Sub) -> None:
        with self._lock:
            sub.active = False
            if sub in self._subs:
                self._subs.remove(sub)


def _safe(fn: Callable[[Envelope], None], env: Envelope) -> None:
    try:
        fn(env)
    except Exception:
        log.exception("event subscriber failed on %r", env)
