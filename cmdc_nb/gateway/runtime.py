"""The gateway's live state: its configuration, and the agents it runs for remote callers.

A gateway session is a stored chat session (`cmdc_nb.sessions`) with a live `Agent` attached, made
for the user whose key created it. The agent runs on the gateway's event loop — the server's, or the
notebook's when the gateway was started from a cell — and keeps a large event buffer, so an SSE
client that reconnects with `Last-Event-ID` gets every event it missed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import AccessDeniedError, InvalidInputError, NotFoundError
from cmdc_nb.gateway.guardrails import Guardrails
from cmdc_nb.kernel import Agent, Plugin, Tool
from cmdc_nb.kernel.tools import as_tool
from cmdc_nb.providers import Script
from cmdc_nb.services import sessions as sessions_service
from cmdc_nb.store.enums import SessionStatus
from cmdc_nb.store.models import Session, User

__all__ = ["GatewayConfig", "GatewayRuntime", "LiveSession", "Webhook", "fire_and_forget"]


def fire_and_forget(handle: Any) -> None:
    """A prompt nobody awaits here (its reply reaches callers as events): its outcome, an abort
    included, counts as seen, so asyncio never warns of an unretrieved exception."""
    handle.future.add_done_callback(lambda f: f.cancelled() or f.exception())


def _echo(messages: list[dict[str, Any]]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    return f"(offline echo) {last.get('content') or ''}"


# The default model: an offline echo, so a gateway started with no settings answers at once. Serve a
# real one with `models=[...]` / `cmdc-nb serve --model openai/gpt-4.1-mini`.
GATEWAY_ECHO = Script(_echo, name="gateway-echo")


@dataclass(frozen=True)
class Webhook:
    """Where to POST task and approval events: each body is signed with HMAC-SHA256 of `secret`
    (header `X-Cmdc-Signature: sha256=<hex>` over `<timestamp>.<body>`). `events` are glob patterns
    of event types (`task.*`, `approval.*`)."""

    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = ("task.*", "approval.*")

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^\s/]+", self.url or ""):
            raise InvalidInputError("must be an http(s) URL", field="url")
        if not isinstance(self.secret, str) or len(self.secret) < 16:
            raise InvalidInputError("must be at least 16 characters", field="secret")


@dataclass(frozen=True)
class GatewayConfig:
    """What `cmdc-nb serve` (or `Gateway(...)` in a notebook) offers.

    - `models`: the models callers may ask for; the first is the default.
    - `tools`: tools callers may attach by name; `default_tools` are attached to every new session.
    - `plugins`: a factory called once per session (plugins keep per-agent state), e.g.
      `lambda: [HumanApproval(require_approval_for=["deploy"])]`.
    - `rate_limit_per_minute` applies per gateway key (see `create_gateway_key`), with bursts up to
      `rate_limit_burst`; `auth_failures_per_minute` per client address to requests whose key is
      refused, so keys cannot be guessed at speed (the address then waits, whatever key it sends).
    - `cors_origins`: origins allowed to call from a browser; none by default (never `*` unless listed).
    - `guardrails`: refusals at the edge (empty by default). `webhooks`: task and approval events.
    """

    models: tuple[str, ...] = ("scripted/gateway-echo",)
    tools: Mapping[str, Tool] = field(default_factory=dict)
    default_tools: tuple[str, ...] = ()
    plugins: Callable[[], Sequence[Plugin]] | None = None
    system_prompt: str | None = None
    rate_limit_per_minute: float = 60.0
    rate_limit_burst: int | None = None
    auth_failures_per_minute: float = 30.0
    cors_origins: tuple[str, ...] = ()
    guardrails: Guardrails = field(default_factory=Guardrails)
    webhooks: tuple[Webhook, ...] = ()
    webhook_max_attempts: int = 5
    webhook_base_delay_s: float = 0.5
    heartbeat_s: float = 15.0
    event_buffer: int = 10_000
    agent_name: str = "cmdc_nb agent"
    agent_description: str = "An agent served by cmdc_nb's gateway."
    public_url: str | None = None

    @classmethod
    def build(cls, **raw: Any) -> GatewayConfig:
        """Validate and normalise keyword settings (tools may be plain functions)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInputError(f"unknown setting(s) {', '.join(unknown)}", field=unknown[0])
        kw = dict(raw)
        models = tuple(kw.get("models") or cls.models)
        if not models or not all(isinstance(m, str) and m.strip() for m in models):
            raise InvalidInputError("give at least one model name", field="models")
        kw["models"] = models
        tools = kw.get("tools") or {}
        if not isinstance(tools, Mapping):
            tools = {as_tool(t).name: as_tool(t) for t in tools}
        kw["tools"] = {name: as_tool(t) for name, t in tools.items()}
        kw["default_tools"] = tuple(kw.get("default_tools") or ())
        for name in kw["default_tools"]:
            if name not in kw["tools"]:
                raise InvalidInputError(f"{name!r} is not one of the gateway's tools", field="default_tools")
        kw["cors_origins"] = tuple(kw.get("cors_origins") or ())
        if "*" in kw["cors_origins"] and len(kw["cors_origins"]) > 1:
            raise InvalidInputError("'*' stands alone", field="cors_origins")
        kw["webhooks"] = tuple(kw.get("webhooks") or ())
        if isinstance(kw.get("guardrails"), Mapping):
            kw["guardrails"] = Guardrails(**kw["guardrails"])
        for name in ("rate_limit_per_minute", "auth_failures_per_minute"):
            rate = kw.get(name, getattr(cls, name))
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < float("inf"):
                raise InvalidInputError("must be a positive number", field=name)
        return cls(**kw)


@dataclass
class LiveSession:
    """A stored session and the agent working in it."""

    session_id: uuid.UUID
    agent: Agent
    watchers: list[Any] = field(default_factory=list)  # subscriptions to close when it ends
    owned: bool = True  # False for an agent served with expose(): the notebook keeps it running


class GatewayRuntime:
    """The live sessions of one gateway. All methods run on the gateway's event loop."""

    def __init__(self, config: GatewayConfig, ws: Workspace) -> None:
        self.config = config
        self.ws = ws
        self.live: dict[uuid.UUID, LiveSession] = {}
        # where approval events go (the webhooks): on_event(type, data)
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None

    # -- sessions ---------------------------------------------------------------------------------------
    def check_model(self, model: str | None) -> str:
        if model is None:
            return self.config.models[0]
        if model not in self.config.models:
            raise InvalidInputError(
                f"{model!r} is not offered here; choose one of: {', '.join(self.config.models)}",
                field="model",
            )
        return model

    def tools_named(self, names: Iterable[str]) -> list[Tool]:
        out = []
        for name in names:
            found = self.config.tools.get(name)
            if found is None:
                offered = ", ".join(sorted(self.config.tools)) or "none"
                raise InvalidInputError(
                    f"{name!r} is not one of the gateway's tools ({offered})", field="tools"
                )
            out.append(found)
        return out

    def create(
        self,
        user: User,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
        name: str | None = None,
        tools: Sequence[str] = (),
        user_data: Mapping[str, Any] | None = None,
        prompt_mode: str = "full",
    ) -> LiveSession:
        model = self.check_model(model)
        chosen = self.tools_named(
            [*self.config.default_tools, *(t for t in tools if t not in self.config.default_tools)]
        )
        prompt = system_prompt if system_prompt is not None else self.config.system_prompt
        with access.acting_as(user.id):
            row = sessions_service.create_session(
                user.id,
                name=name or "gateway session",
                system_prompt=prompt,
                default_model=model,
                metadata={"source": "gateway"},
                ws=self.ws,
            )
        agent = self._agent(row, model, chosen, prompt, user_data=user_data or {}, prompt_mode=prompt_mode)
        return self._serve(row.id, agent)

    def expose(self, agent: Agent) -> LiveSession:
        """Serve an agent built elsewhere (a notebook's, with its own tools and plugins). It must store
        its turns in a session of this workspace: that session's owner, and those it is shared with,
        reach it with their keys."""
        sid = getattr(agent.recorder, "session_id", None)
        if not agent.recorder.enabled or sid is None:
            raise InvalidInputError(
                "only an agent that stores its turns in a session can be served", field="agent"
            )
        if get_workspace(agent.recorder.ws) is not self.ws:
            raise InvalidInputError("the agent's session is in another workspace", field="agent")
        current = self.live.get(sid)
        if current is not None:
            if current.agent is agent:
                return current
            raise InvalidInputError(f"session {sid} is already served by another agent", field="agent")
        return self._serve(sid, agent, owned=False)

    def _serve(self, sid: uuid.UUID, agent: Agent, *, owned: bool = True) -> LiveSession:
        live = LiveSession(sid, agent, owned=owned)
        self.live[sid] = live
        self._watch_approvals(live)
        return live

    def _watch_approvals(self, live: LiveSession) -> None:
        """Approval requests and decisions of this session, as `approval.*` events for webhooks."""
        from cmdc_nb.events import topics

        sid = str(live.session_id)

        def on_agent(env: Any) -> None:
            if env.type == "approval_required" and self.on_event is not None:
                e = env.event
                self.on_event(
                    "approval.required",
                    {"session_id": sid, "ref": e.ref, "tool": e.tool, "call_id": e.call_id},
                )

        def on_bus(event: Any) -> None:
            if event.type in ("tool_use_approved", "tool_use_denied") and self.on_event is not None:
                kind = "approval.approved" if event.type == "tool_use_approved" else "approval.rejected"
                self.on_event(kind, {"session_id": sid, "ref": str(event.payload.get("tool_use_id"))})

        live.watchers.append(live.agent.events.subscribe(on_agent))
        live.watchers.append(self.ws.bus.subscribe(topics.session_agent_calls(live.session_id), on_bus))

    def _agent(
        self,
        row: Session,
        model: str,
        tools: Sequence[Tool],
        system_prompt: str | None,
        *,
        from_history: bool = False,
        **options: Any,
    ) -> Agent:
        """A gateway agent working in `row`: new, or rebuilt from the session's stored conversation."""
        make = Agent.from_session if from_history else Agent
        return make(
            model=model,
            tools=list(tools),
            plugins=list(self.config.plugins()) if self.config.plugins else [],
            system_prompt=system_prompt,
            session=row,
            ws=self.ws,
            event_buffer_size=self.config.event_buffer,
            name=f"gateway:{row.id}",
            **options,
        )

    def get(self, session_id: Any, user: User, action: str = "read") -> LiveSession:
        """The live session `session_id`, if `user` may `action` it (read, write, decide, own)."""
        try:
            sid = uuid.UUID(str(session_id))
        except ValueError:
            raise NotFoundError("session", session_id) from None
        live = self.live.get(sid)
        with self.ws.read() as db:
            row = db.get(Session, sid)
            if row is None:
                raise NotFoundError("session", sid)
            if not access.session_allows(row, user.id, action):
                if access.session_allows(row, user.id, "read"):
                    raise AccessDeniedError("session", sid, action)
                raise NotFoundError("session", sid)  # not even its existence is shown
            db.expunge(row)
        if live is None:
            live = self._resume(row)
        return live

    def _resume(self, row: Session) -> LiveSession:
        """A stored gateway session with no live agent (the gateway restarted): its agent is rebuilt
        from the stored conversation, and an interrupted turn is finished. Archived sessions (deleted
        through the gateway) and sessions made elsewhere stay closed."""
        if row.status == SessionStatus.ARCHIVED or (row.meta or {}).get("source") != "gateway":
            raise NotFoundError("session", row.id)
        model = row.default_model if row.default_model in self.config.models else self.config.models[0]
        tools = self.tools_named(self.config.default_tools)
        agent = self._agent(row, model, tools, row.system_prompt, from_history=True)
        live = self._serve(row.id, agent)
        if agent.interrupted:
            with access.acting_as(row.user_id):
                fire_and_forget(agent.resume())
        return live

    async def stop_agent(self, live: LiveSession) -> None:
        self.live.pop(live.session_id, None)
        for watcher in live.watchers:
            watcher.close()
        live.watchers.clear()
        if not live.owned:  # served, not owned: it is no longer reachable, and keeps running where it is
            return
        if live.agent.busy:
            live.agent.abort("user_cancelled")
        await live.agent.stop()

    async def delete(self, live: LiveSession, user: User) -> None:
        """End the session: its agent stops and the stored session is archived (kept, not resumable).
        An exposed agent is only withdrawn from the gateway."""
        await self.stop_agent(live)
        if not live.owned:
            return
        with access.acting_as(user.id):
            sessions_service.archive_session(live.session_id, ws=self.ws)

    async def close(self) -> None:
        """The gateway stops: agents stop; their sessions stay resumable by the next gateway."""
        for live in list(self.live.values()):
            await self.stop_agent(live)
