"""MemoryLoader (memory files into the system prompt) and MemoryFlush (facts kept before compaction)."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.plugins import HookEvent, Plugin
from cmdc_nb.kernel.tools import ToolContext

__all__ = ["MemoryFlush", "MemoryFlushed", "MemoryLoader", "extract_facts"]


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class MemoryFlushed(ev.AgentEvent):
    type: ClassVar[str] = "memory_flushed"
    facts: tuple[str, ...]
    count: int
    path: str


class MemoryLoader(Plugin):
    """Loads memory files (`MEMORY.md`, `AGENTS.md` in the working directory, `~/.cmdc/AGENTS.md`) into an
    `agent_memory` section of the system prompt, once, when the agent first runs."""

    name = "memory_loader"
    priority = 60

    @checked
    def __init__(
        self,
        files: Sequence[str] = ("MEMORY.md", "AGENTS.md", "~/.cmdc/AGENTS.md"),
        *,
        max_chars: int = 20_000,
    ) -> None:
        super().__init__()
        self.files = tuple(files)
        self.max_chars = max_chars
        self.loaded: list[str] = []

    def on_session_start(self, event: HookEvent, ctx: ToolContext) -> None:
        parts: list[str] = []
        for name in self.files:
            path = Path(name).expanduser()
            path = path if path.is_absolute() else Path(ctx.working_dir) / path
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace").strip()
                if text:
                    parts.append(f"<!-- {name} -->\n{text}")
                    self.loaded.append(str(path))
        if parts and ctx.agent is not None:
            ctx.agent.system_context["agent_memory"] = (
                "<agent_memory>\n" + "\n\n".join(parts)[: self.max_chars] + "\n</agent_memory>"
            )


_FACT = re.compile(
    r"(?i)^(?:(?:please )?remember(?: that)?|note(?: that)?|fyi|i am|i'm|my |we use|we are|our |always |never |prefer )"
)


def extract_facts(messages: Sequence[dict[str, Any]]) -> list[str]:
    """The offline default: sentences of the user's messages that state a preference or a fact about
    them or their project ("remember …", "I am …", "we use …", "always …", "never …")."""
    facts: list[str] = []
    for m in messages:
        if m.get("role") != "user" or not isinstance(m.get("content"), str):
            continue
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", m["content"]):
            s = sentence.strip()
            if 8 <= len(s) <= 300 and _FACT.match(s):
                facts.append(re.sub(r"(?i)^(?:please )?remember(?: that)?\s*", "", s).rstrip(".") + ".")
    return facts


class MemoryFlush(Plugin):
    """Before compaction, facts are extracted from the conversation (your `extract_fn`, sync or async,
    called as the seed's `extract_fn(messages, ctx, opts)` — `ctx.user_data` is there, `opts` is
    `options` —, or `(messages, opts)`, `(messages, ctx)`, `(messages)` by its parameters; or the
    offline heuristic), de-duplicated (sha256 of the normalised text, against the
    file too) and appended to `MEMORY.md` as `- fact` lines. A failure is a warning, never a lost run."""

    name = "memory_flush"
    priority = 70

    @checked
    def __init__(
        self,
        *,
        file: str = "MEMORY.md",
        extract_fn: Callable[..., Any] | None = None,
        max_facts_per_flush: int = 10,
        dedupe: bool = True,
    ) -> None:
        super().__init__()
        self.file = file
        self.extract_fn: Callable[..., Any] = extract_fn or extract_facts
        self.max_facts = max_facts_per_flush
        self.dedupe = dedupe

    @staticmethod
    def _key(fact: str) -> str:
        return hashlib.sha256(" ".join(fact.lower().split()).rstrip(".").encode()).hexdigest()

    @property
    def options(self) -> dict[str, Any]:
        """What an `extract_fn(messages, ctx, opts)` is given as `opts`."""
        return {"file": self.file, "max_facts_per_flush": self.max_facts, "dedupe": self.dedupe}

    def _arguments(self, messages: Any, ctx: ToolContext) -> tuple[Any, ...]:
        """The seed's signatures, told apart by their parameters: (messages, ctx, opts), the seed's
        older (messages, opts) — a second parameter named opts/options —, (messages, ctx), (messages)."""
        try:
            params = list(inspect.signature(self.extract_fn).parameters.values())
        except (TypeError, ValueError):  # a builtin or a C callable: the one-argument form
            return (messages,)
        if any(p.kind is p.VAR_POSITIONAL for p in params) or len(params) >= 3:
            return (messages, ctx, self.options)
        if len(params) == 2:
            return (messages, self.options if params[1].name in ("opts", "options") else ctx)
        return (messages,)

    async def on_before_compact(self, event: HookEvent, ctx: ToolContext) -> None:
        try:
            got = self.extract_fn(*self._arguments(event.messages, ctx))
            if inspect.isawaitable(got):
                got = await got
            facts = [str(f).strip() for f in got or () if str(f).strip()]
            path = Path(self.file)
            path = path if path.is_absolute() else Path(ctx.working_dir) / path
            existing = path.read_text(encoding="utf-8") if path.exists() else ""
            seen = {self._key(line[2:]) for line in existing.splitlines() if line.startswith("- ")}
            new: list[str] = []
            for f in facts:
                k = self._key(f)
                if self.dedupe and k in seen:
                    continue
                seen.add(k)
                new.append(f)
                if len(new) >= self.max_facts:
                    break
            if new:
                sep = "" if not existing or existing.endswith("\n") else "\n"
                path.write_text(existing + sep + "".join(f"- {f}\n" for f in new), encoding="utf-8")
            if ctx.agent is not None:
                ctx.agent.emit(MemoryFlushed(tuple(new), len(new), str(path)))
        except Exception as exc:
            if ctx.agent is not None:
                ctx.agent.emit(ev.PluginError(self.name, "before_compact", f"memory flush failed: {exc}"))
