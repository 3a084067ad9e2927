"""Compaction: when the context grows too big (or on request), older messages are summarised by the
model, kept in a file, and replaced by the summary. The before_compact hook runs first.

Before the old turns go to the summary call, large tool-call arguments in them are cut
(`truncate_tool_args`, the CMDC kernel's ArgTruncator): a file an agent wrote or a command it ran
can be megabytes that the summary needs only the gist of, and would otherwise overflow the very
call meant to shrink the context. The evicted messages are kept in full in the history file.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from cmdc_nb.errors import AgentError, ProviderError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel._core import AgentCore
from cmdc_nb.kernel.plugins import Hook
from cmdc_nb.kernel.run_state import add_cost
from cmdc_nb.providers import ProviderRequest, stream_completion

__all__ = ["SUMMARY_PROMPT", "Compaction", "truncate_tool_args"]


def _cut(value: Any, limit: int) -> tuple[Any, bool]:
    if isinstance(value, str):
        if len(value) <= limit:
            return value, False
        return f"{value[:limit]}… [{len(value) - limit} more characters cut before summarising]", True
    if isinstance(value, dict):
        pairs = {k: _cut(v, limit) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(c for _, c in pairs.values())
    if isinstance(value, list):
        items = [_cut(v, limit) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    return value, False


def truncate_tool_args(messages: list[dict[str, Any]], limit: int = 2000) -> list[dict[str, Any]]:
    """The messages with every text value longer than `limit` in a tool call's arguments cut to
    `limit` characters and a note of how much was cut (the arguments stay valid JSON). Messages
    are copied, never changed in place; a message with nothing to cut is the same object."""
    out: list[dict[str, Any]] = []
    for m in messages:
        calls = m.get("tool_calls") if m.get("role") == "assistant" else None
        if not calls:
            out.append(m)
            continue
        new_calls, changed = [], False
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            raw = fn.get("arguments") if isinstance(fn, dict) else None
            if fn is None or raw is None:
                new_calls.append(call)
                continue
            try:
                args = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:  # not JSON: cut the text itself
                args = raw
            cut, did = _cut(args, limit)
            if did:
                text = cut if isinstance(cut, str) else json.dumps(cut, ensure_ascii=False)
                call = {**call, "function": {**fn, "arguments": text}}
                changed = True
            new_calls.append(call)
        out.append({**m, "tool_calls": new_calls} if changed else m)
    return out


class Compaction(AgentCore):
    def context_tokens(self) -> int:
        """How full the context is: the last request's prompt tokens plus what came since (counted)."""
        from cmdc_nb.providers.catalog import count_tokens

        return count_tokens(self.messages, model=self.model)

    def _compaction_due(self) -> bool:
        opts = self.options
        if opts.compact_at_tokens is None and opts.compact_at_fraction is None:
            return False
        used = self.context_tokens()
        if opts.compact_at_tokens is not None and used >= opts.compact_at_tokens:
            return True
        if opts.compact_at_fraction is not None:
            window = _context_window(self.model)
            return window is not None and used >= opts.compact_at_fraction * window
        return False

    async def _summarise(self, old: list[dict[str, Any]]) -> str:
        """One model call that writes the summary; stored (with its cost) like any call of the session."""
        messages = [
            {"role": "system", "content": SUMMARY_PROMPT},
            {
                "role": "user",
                "content": json.dumps(
                    truncate_tool_args(old, self.options.compact_arg_chars), ensure_ascii=False, default=str
                ),
            },
        ]
        call_id = await self.recorder.start_call(
            model=self.model, messages=messages, system_prompt=SUMMARY_PROMPT, temperature=None,
            max_tokens=None, tools=[], turn=self.turns, purpose="compaction",
        )  # fmt: skip
        try:
            done = await stream_completion(
                ProviderRequest(self.model, messages, extra=self.provider_opts),
                on_part=lambda p: None,
                retry=self.options.retry,
                cassette=self.options.cassette,
                pricer=self.recorder.pricer(self.options.cassette),
            )
        except ProviderError as err:
            await self.recorder.fail_call(call_id, err.kind, str(err), timeout=err.kind == "timeout")
            raise
        cost = await self.recorder.complete_response(call_id, done, message=False)
        self.usage += done.usage
        self.cost_usd = add_cost(self.cost_usd, cost)
        return done.text

    async def compact(
        self, *, keep_last: int = 6, summary: str | None = None, during_run: bool = False
    ) -> ev.Compaction | None:
        """Replace all but the last `keep_last` messages by a summary (written by the model unless
        given). The evicted messages are kept in `<working_dir>/.cmdc/conversation_history/`.
        Returns None when a before_compact plugin skipped it, or there was nothing to compact.
        (`during_run` is for the kernel and the compact_conversation tool, which run inside a turn.)"""
        self._bind()
        if self.busy and not during_run:
            raise AgentError("compact() while a run is in progress; wait for it (or abort it) first")
        cut = max(0, len(self.messages) - keep_last)
        while cut > 0 and self.messages[cut].get("role") == "tool":
            cut -= 1  # never keep a tool result without the call that asked for it
        if cut <= 0:
            return None
        out = await self._hook(Hook.BEFORE_COMPACT, {"messages": list(self.messages)})
        if out.skipped_by is not None:
            return None
        old = self.messages[:cut]
        if summary is None:
            summary = await self._summarise(old)
        folder = Path(self.options.working_dir) / ".cmdc" / "conversation_history"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        (folder / f"{self.id}-{stamp}.json").write_text(
            json.dumps(old, ensure_ascii=False, default=str, indent=1), encoding="utf-8"
        )
        before = len(self.messages)
        self.messages = [
            {"role": "user", "content": f"[Summary of the earlier conversation]\n{summary}"},
            *self.messages[cut:],
        ]
        event = ev.Compaction(before, len(self.messages), len(old), summary)
        self.emit(event)
        return event


def _context_window(model: str) -> int | None:
    from cmdc_nb.providers.catalog import context_window

    return context_window(model)


SUMMARY_PROMPT = (
    "Summarise this conversation for the assistant that continues it: keep key decisions, facts, open "
    "tasks and file names. Be brief."
)
