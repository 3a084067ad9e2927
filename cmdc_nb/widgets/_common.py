"""Pieces the widgets share: running a callback on the kernel's loop whatever thread an event came from,
and the Approve / Deny / Edit controls of a decision (whose Edit is the arguments' form)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from cmdc_nb.widgets._arg_form import ArgForm, sentence
from cmdc_nb.widgets._render import escape

__all__ = ["Decision", "Refresher", "on_loop"]


def on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn(*args)` on `loop` (at once when already there, or when there is no usable loop).

    Events reach the widgets from the publisher's thread — a sync tool's, a service writer's —, but a
    widget must change on the kernel's loop."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if loop is None or loop.is_closed() or here is loop:
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)


class Refresher:
    """A bus callback that calls `refresh()` on the kernel's loop, at most once per burst of events.

    Events come from whichever thread committed them (an agent's writer, another cell, a worker). The
    first event of a burst schedules one refresh (after `delay` seconds, if given); later ones until it
    runs are folded into it. Without a usable loop (a script), it refreshes at once."""

    def __init__(self, refresh: Callable[[], Any], *, delay: float = 0.0) -> None:
        self._refresh = refresh
        self._delay = delay
        self._pending = False
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def __call__(self, _event: Any = None) -> None:
        if self.loop is None or self.loop.is_closed():
            self._refresh()
            return
        if self._pending:
            return
        self._pending = True
        if self._delay:
            self.loop.call_soon_threadsafe(self.loop.call_later, self._delay, self._run)
        else:
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        self._pending = False
        self._refresh()


class Decision:
    """Approve / Deny / Edit controls. Edit opens the arguments as a form built from the tool's JSON
    `schema` (see ArgForm), and Approve becomes "Approve with edits": the edits are checked against the
    schema first, and arguments that fail it are never approved — the form says what is wrong, field by
    field. `approve(edited_args_or_None)` and `deny()` are called on click (None: approved as proposed).
    With `always`, an "Always allow" button approves the same way and calls `always(edited_or_None)`
    instead; `always_tip` says what it remembers (its tooltip).
    """

    def __init__(
        self,
        args: Mapping[str, Any],
        *,
        approve: Callable[[Any], None],
        deny: Callable[[], None],
        edit_label: str = "Edit arguments",
        extra: list[w.Widget] | None = None,
        schema: Mapping[str, Any] | None = None,
        always: Callable[[Any], None] | None = None,
        always_tip: str = "",
    ) -> None:
        self.args, self.schema = dict(args), schema
        self.approve_button = w.Button(
            description="Approve", button_style="success", icon="check",
            layout=w.Layout(width="auto", min_width="110px"),
        )  # fmt: skip
        self.deny_button = w.Button(
            description="Deny", button_style="danger", icon="times", layout=w.Layout(width="100px")
        )
        self.edit_button = w.Button(description=edit_label, icon="pencil", layout=w.Layout(width="auto"))
        self.form: ArgForm | None = None  # built on the first Edit: a queue of many items stays cheap
        self.editor = w.VBox([], layout=w.Layout(width="100%"))
        self.message = w.HTML()

        def approving(then: Callable[[Any], None]) -> Callable[[Any], None]:
            def on_click(_: Any) -> None:
                edited = None
                if self.form is not None and self.editor.children:
                    edited = self.form.collect()
                    if edited is None:
                        first = next(iter(self.form.problems.items()))
                        self.message.value = (
                            f'<div class="cmdc-notice">Not approved: {escape(sentence(*first))}</div>'
                        )
                        return
                    if edited == self.args:
                        edited = None
                self.message.value = ""
                then(edited)

            return on_click

        self.approve_button.on_click(approving(approve))
        self.deny_button.on_click(lambda _: deny())
        self.edit_button.on_click(lambda _: self.toggle_editor())
        self.always_button: w.Button | None = None
        if always is not None:
            self.always_button = w.Button(
                description="Always allow",
                icon="check-circle",
                tooltip=always_tip,
                layout=w.Layout(width="auto"),
            )
            self.always_button.on_click(approving(always))
        self.widgets: list[w.Widget] = [
            w.HBox(
                [
                    self.approve_button,
                    *([self.always_button] if self.always_button is not None else []),
                    self.deny_button,
                    self.edit_button,
                    *(extra or []),
                ]
            ),
            self.editor,
            self.message,
        ]

    @property
    def editing(self) -> bool:
        return bool(self.editor.children)

    def toggle_editor(self) -> None:
        """Open the form (Approve then approves the edits), or close it (Approve approves as proposed)."""
        if self.form is None:
            self.form = ArgForm(self.args, self.schema)
        self.editor.children = [] if self.editing else [self.form.box]
        self.approve_button.description = "Approve with edits" if self.editing else "Approve"
        self.message.value = ""
