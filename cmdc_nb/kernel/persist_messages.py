"""The recorder's messages: a conversation's messages stored as the agent adds them (a user's files
with theirs, as artifacts of the session), and read back to rebuild a conversation; and the messages
stored since the prompt base, which the next prompt refers to instead of copying them (migration
0014, `store.prompt_refs`). See `persist`."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cmdc_nb.kernel.stored import blocks, storable
from cmdc_nb.providers import ToolCall
from cmdc_nb.providers.attachments import Attachment
from cmdc_nb.store.prompt_refs import as_sent, reads_back_exactly
from cmdc_nb.store.values import storable_json

__all__ = ["MessageRecorder"]

T = TypeVar("T")


class MessageRecorder:
    """The message half of `persist.Recorder` (which supplies what is declared here), and where the
    recorder's database work runs (`_run`, `_write`)."""

    record_messages: bool
    stored_files: set[str]
    session_id: Any
    ws: Any
    _after_base: list[tuple[int, dict[str, Any]]] | None
    _last_seq: int | None = None  # the sequence of the message this recorder stored last

    if TYPE_CHECKING:  # supplied by Recorder

        @property
        def enabled(self) -> bool: ...

        @property
        def backend(self) -> str: ...

        async def flush(self) -> None: ...

    # -- where the recorder's work runs --------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, ws=self.ws, **kw))

    async def _write(self, fn: Callable[..., T], /, *args: Any) -> T:
        """A fast-path write, `fn(*args, ws=, wait=)`. On SQLite, on the loop's own thread when its
        transaction can start at once (`Workspace.transaction(wait=False)`; no thread hop: ≈0.4 ms of
        a round), else on a worker thread that waits there: the notebook's loop never waits for
        another process. On PostgreSQL (a statement may wait on a row lock, or the network) a thread."""
        from cmdc_nb._plumbing.workspace import WouldWait

        if self.backend == "sqlite":
            try:
                return fn(*args, ws=self.ws, wait=False)
            except WouldWait:
                pass
        return await asyncio.to_thread(functools.partial(fn, *args, ws=self.ws, wait=True))

    async def _statement(self, plan_of: Callable[[Any], Any], written: Callable[[Any], None]) -> Any:
        """PostgreSQL: a fast-path write as one statement sent from the loop itself, on the
        workspace's async connection (`round_statements.run_async`: the loop waits on the socket, no
        thread to hand the write to and back). What it returns, noted by `written`; or `NOT_HERE`:
        then `_write` takes it, on a thread. Once sent, a write runs to its end as a task of its own,
        its outcome noted and its events published, even when the run that awaits it is cancelled
        (an abort, a steer killing the tool): as a thread's write would."""
        sent = self._send(plan_of, written)
        return sent if not isinstance(sent, asyncio.Future) else await asyncio.shield(sent)

    def _send(self, plan_of: Callable[[Any], Any], written: Callable[[Any], None] | None = None) -> Any:
        """`_statement`'s write planned here and now, and its task made: the task (which sends the
        statement as soon as the loop runs it); or `NOT_HERE` (not on PostgreSQL, or not planned)."""
        from cmdc_nb._plumbing.workspace import get_workspace
        from cmdc_nb.services.agents import round_statements

        if self.backend != "postgresql":
            return round_statements.NOT_HERE
        w = get_workspace(self.ws)
        plan = plan_of(w)
        if plan is None:
            return round_statements.NOT_HERE

        async def send() -> Any:
            found = await round_statements.run_async(w, plan)
            if found is not round_statements.NOT_HERE and written is not None:
                written(found)
            return found

        return asyncio.ensure_future(send())

    # -- messages ------------------------------------------------------------------------------------
    async def message(
        self,
        role: str,
        content: str | None,
        *,
        tool_calls: Sequence[ToolCall] = (),
        agent_call_id: str | None = None,
        tool_use_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
        files: Sequence[Attachment] = (),
    ) -> str | None:
        if not self.enabled or not self.record_messages:
            return None
        await self.flush()
        from cmdc_nb.services import sessions

        if files:
            from cmdc_nb.services import attachments

            with_files = await self._run(
                attachments.create_message_with_files,
                self.session_id,
                role=role,
                content=storable(content) or "",
                files=list(files),
                metadata=storable_json(dict(meta or {})),
            )
            self.stored_files.update(f.sha256 for f in files)
            self._last_seq = with_files.sequence
            self._after_base = None  # sent with its files' bytes: never referred to
            return str(with_files.id)
        asked = blocks(tool_calls)
        row = await self._run(
            sessions.create_message,
            self.session_id,
            role=role,
            content=storable(content) if content is not None or not asked else "",
            content_blocks=storable_json(asked),
            agent_call=agent_call_id,
            tool_use=tool_use_id,
            metadata=storable_json(dict(meta or {})),
        )
        self.stored_message(row.sequence, row.role, row.content, row.content_blocks, row.meta)
        return str(row.id)

    def _next_sequence(self) -> int | None:
        """The sequence this session's next message will most likely take: the one this recorder
        stored last, plus one (None: none stored yet). A guess the server checks (`rounds.write_call`):
        a message someone else added meanwhile only costs that write the transaction's path."""
        return None if self._last_seq is None else self._last_seq + 1

    def stored_message(
        self, sequence: int, role: Any, content: str | None, content_blocks: Any, meta: Any
    ) -> None:
        """Note a message stored after the prompt base, as sent (see `Recorder._refer_to_messages`);
        one that may not read back exactly as written means the next prompt keeps its copy."""
        self._last_seq = sequence
        if self._after_base is None:
            return
        if not reads_back_exactly(self.backend, content_blocks):
            self._after_base = None
            return
        self._after_base.append(
            (sequence, as_sent(str(getattr(role, "value", role)), content, content_blocks, meta))
        )

    def _refer_to_messages(
        self, ref: dict[str, Any] | None, tail: list[Any]
    ) -> tuple[dict[str, Any] | None, list[Any]]:
        """The prompt's reference and new part: when the new part is exactly the messages stored
        since its base (the base's reply and the tool results), stored one after another, it refers to
        their sequences and stores no copy (`store.prompt_refs`); otherwise the copy stays."""
        after, self._after_base = self._after_base, None
        if ref is None or not after or len(after) != len(tail):
            return ref, tail
        first = after[0][0]
        if any(seq != first + k for k, (seq, _) in enumerate(after)):  # another writer's in between
            return ref, tail
        if [m for _, m in after] != tail:
            return ref, tail
        return {**ref, "messages": [first, after[-1][0]]}, []

    def files_of(self, row: Any) -> list[Attachment]:
        """The files of a stored message, read back (sync: called when rebuilding a conversation)."""
        from cmdc_nb.services import attachments

        found = attachments.message_files(row.id, ws=self.ws)
        self.stored_files.update(f.sha256 for f in found)
        return found

    def history(self) -> list[Any]:
        """Every stored message of the session, oldest first (sync: called once, when resuming)."""
        from cmdc_nb.services import sessions

        assert self.session_id is not None
        rows: list[Any] = []
        after = None
        while True:
            page = sessions.list_messages(self.session_id, limit=500, after=after, ws=self.ws)
            rows.extend(page.entries)
            if not page.has_next or not page.next_cursor:
                return rows
            after = page.next_cursor
