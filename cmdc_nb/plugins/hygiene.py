"""Plugins that keep a run clean and observable: OutputFilter (redact secrets and PII), PatchToolCalls
(results for dangling tool calls), LargeResultOffload (huge results to a file) and EventLogger (JSON
Lines per agent)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.plugins import Action, Emit, HookEvent, Plugin, ReplaceToolResult
from cmdc_nb.kernel.tools import ToolContext

__all__ = [
    "SECRET_PATTERNS",
    "EventLogger",
    "LargeResultOffload",
    "LargeResultOffloaded",
    "OutputFilter",
    "PatchToolCalls",
    "redactor",
]


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class LargeResultOffloaded(ev.AgentEvent):
    type: ClassVar[str] = "large_result_offloaded"
    tool: str
    call_id: str
    path: str
    chars: int


SECRET_PATTERNS: dict[str, str] = {
    "api_key": r"\b(?:sk|pk|rk)-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{16,}",
    "aws_key": r"\bAKIA[0-9A-Z]{16}\b",
    "github_token": r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    "slack_token": r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",
    "google_key": r"\bAIza[0-9A-Za-z_\-]{35}\b",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    "private_key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    "password_assignment": r"(?i)\b(password|passwd|secret|token)\s*[=:]\s*\S+",
}
PII_PATTERNS: dict[str, str] = {
    "email": r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b",
    "phone": r"(?<!\w)\+?\d[\d \-().]{8,}\d(?!\w)",
    "card": r"\b(?:\d[ \-]?){13,19}\b",
}


def redactor(patterns: Mapping[str, str], words: Iterable[str] = ()) -> Any:
    compiled = [(name, re.compile(rx)) for name, rx in patterns.items()]
    words = list(words)
    word_rx = re.compile("|".join(re.escape(w) for w in words), re.I) if words else None

    def redact(text: str) -> str:
        for name, rx in compiled:
            if name == "password_assignment":
                text = rx.sub(r"\1=[REDACTED:password_assignment]", text)
            else:
                text = rx.sub(f"[REDACTED:{name}]", text)
        if word_rx is not None:
            text = word_rx.sub("[REDACTED]", text)
        return text

    return redact


class OutputFilter(Plugin):
    """Redacts secrets (and, with `pii=True`, e-mail addresses, phone and card numbers) from everything
    the model says — streamed deltas, the stored message, the reply — and, by default, from tool results
    before the model sees them."""

    name = "output_filter"
    priority = 300

    @checked
    def __init__(
        self,
        *,
        pii: bool = False,
        words: Iterable[str] = (),
        tool_results: bool = True,
        patterns: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        table = dict(patterns if patterns is not None else SECRET_PATTERNS)
        if pii:
            table.update(PII_PATTERNS)
        self.redact = redactor(table, words)
        self.tool_results = tool_results

    def on_session_start(self, event: HookEvent, ctx: ToolContext) -> None:
        if ctx.agent is not None and self.redact not in ctx.agent.output_filters:
            ctx.agent.output_filters.append(self.redact)

    def on_after_tool(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        if not self.tool_results:
            return None
        clean = self.redact(event.result.content)
        return ReplaceToolResult(clean, event.result.is_error) if clean != event.result.content else None


class PatchToolCalls(Plugin):
    """Before a request, every tool call in the history without a result gets a synthetic one, so a
    history cut short (an import, a crash, a hand-edited transcript) is still valid for the provider."""

    name = "patch_tool_calls"
    priority = 110

    @checked
    def __init__(
        self, *, synthetic_content: str = "Error: Tool call was interrupted or not executed."
    ) -> None:
        super().__init__()
        self.synthetic_content = synthetic_content

    def on_before_request(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        agent = ctx.agent
        if agent is None:
            return None
        answered = {m.get("tool_call_id") for m in agent.messages if m.get("role") == "tool"}
        patched: list[dict[str, Any]] = []
        out: list[dict[str, Any]] = []
        for m in agent.messages:
            out.append(m)
            for c in m.get("tool_calls") or ():
                if m.get("role") == "assistant" and c["id"] not in answered:
                    out.append({"role": "tool", "tool_call_id": c["id"], "content": self.synthetic_content})
                    patched.append({"call_id": c["id"], "content": self.synthetic_content, "is_error": True})
        if not patched:
            return None
        agent.messages[:] = out
        return Emit(
            "synthetic_tool_results_applied",
            {"count": len(patched), "call_ids": [p["call_id"] for p in patched]},
        )


class LargeResultOffload(Plugin):
    """A tool result longer than `max_chars` (≈ 20,000 tokens) is written to
    `.cmdc/large_tool_results/<call_id>.txt` in the sandbox and replaced by its head, its tail and the path
    (the model pages through it with read_file)."""

    name = "large_result_offload"
    priority = 320
    EXCLUDED = frozenset({"ls", "glob", "grep", "read_file", "edit_file", "write_file"})

    @checked
    def __init__(
        self, *, max_chars: int = 80_000, preview_chars: int = 2_000, exclude: Iterable[str] = EXCLUDED
    ) -> None:
        super().__init__()
        self.max_chars = max_chars
        self.preview_chars = preview_chars
        self.exclude = frozenset(exclude)

    def on_after_tool(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        content = event.result.content
        save = getattr(ctx.sandbox, "save", None)  # a sandbox that cannot keep files keeps the result
        if event.name in self.exclude or len(content) <= self.max_chars or save is None:
            return None
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", event.call_id)[:80]
        rel = save(f".cmdc/large_tool_results/{safe_id}.txt", content)
        if ctx.agent is not None:
            ctx.agent.emit(LargeResultOffloaded(event.name, event.call_id, rel, len(content)))
        n = self.preview_chars
        preview = (
            f"{content[:n]}\n… [{len(content)} characters; the whole result is in {rel} — "
            f"read it with read_file(path={rel!r}, offset=…, limit=…)] …\n{content[-n // 2 :]}"
        )
        return ReplaceToolResult(preview, event.result.is_error)


class EventLogger(Plugin):
    """Every event of the agent as JSON Lines: `{ts, agent, session, event, data, level, turn}` in
    `<working_dir>/.cmdc/logs/<agent_id>.jsonl` (or `log_file`). Level `debug` includes streamed deltas,
    `info` (the default) leaves them out, `warn` keeps only errors, aborts and refusals."""

    name = "event_logger"
    priority = 5
    _WARN = frozenset(
        {
            "agent_abort",
            "stream_error",
            "plugin_error",
            "loop_detected",
            "security_audit",
            "tool_call_unknown",
            "retry",
        }
    )
    _DEBUG_ONLY = frozenset({"message_delta", "thinking_delta", "tool_execution_metrics"})

    @checked
    def __init__(
        self,
        *,
        level: str = "info",
        log_dir: str | None = None,
        log_file: str | None = None,
        include_args: bool = True,
    ) -> None:
        super().__init__()
        if level not in ("debug", "info", "warn"):
            from cmdc_nb.errors import InvalidInputError

            raise InvalidInputError(f"{level!r} is not one of: debug, info, warn", field="level")
        self.level, self.log_dir, self.log_file, self.include_args = level, log_dir, log_file, include_args
        self.path: Path | None = None
        self._sub: Any = None

    def on_session_start(self, event: HookEvent, ctx: ToolContext) -> None:
        agent = ctx.agent
        if agent is None or self._sub is not None:
            return
        base = Path(self.log_dir) if self.log_dir else Path(ctx.working_dir) / ".cmdc" / "logs"
        self.path = Path(self.log_file) if self.log_file else base / f"{agent.id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a", encoding="utf-8")

        def write(env: ev.Envelope) -> None:
            if self.level != "debug" and env.type in self._DEBUG_ONLY:
                return
            level = "warn" if env.type in self._WARN else "debug" if env.type in self._DEBUG_ONLY else "info"
            if self.level == "warn" and level != "warn":
                return
            data = env.event.to_dict()
            if not self.include_args:
                data.pop("args", None)
            record = {"ts": env.ts.isoformat(), "agent": env.agent_id, "session": ctx.session_id, "index": env.index,
                      "event": env.type, "data": data, "level": level, "turn": agent.turns}  # fmt: skip
            handle.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
            handle.flush()

        self._sub = agent.events.subscribe(write)
        self._handle = handle

    def on_session_end(self, event: HookEvent, ctx: ToolContext) -> None:
        if self._sub is not None:
            self._sub.close()
            self._handle.close()
            self._sub = None
