"""An external step's controls in DagView: what the person is asked to do, the step's output as JSON
(started from its `output_schema`), and Take it up / Mark done / Mark failed.

The panel only collects: the view records through `workflows.start_step` / `complete_step` /
`fail_step`, which check the output against the schema and say what is wrong; the panel shows that
sentence and keeps what was typed, so a refused output can be corrected rather than retyped."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from cmdc_nb.widgets._dag_layout import example_value
from cmdc_nb.widgets._render import escape

__all__ = ["HandPanel"]


class HandPanel:
    def __init__(
        self,
        config: dict[str, Any],
        *,
        take_up: Callable[[], None],
        complete: Callable[[Any], None],
        fail: Callable[[str], None],
    ) -> None:
        schema = config.get("output_schema")
        start = example_value(schema) if isinstance(schema, dict) else {}
        asked = str(config.get("instructions") or "Do this step, then record its output.")
        self.instructions = w.HTML(
            f"<div class='cmdc-title'>Your turn</div><div class='cmdc-dag-asked'>{escape(asked)}</div>"
        )
        self.output_box = w.Textarea(
            value=json.dumps(start, indent=2),
            layout=w.Layout(width="auto", height="70px"),
            placeholder="the step's output, as JSON",
        )
        self.output_box.add_class("cmdc-dag-output")
        self.reason = w.Text(placeholder="why it could not be done", layout=w.Layout(width="auto"))
        self.take_button = w.Button(
            description="Take it up", icon="user", tooltip="say that you are doing this step now"
        )
        self.done_button = w.Button(description="Mark done", button_style="success", icon="check")
        self.fail_button = w.Button(description="Mark failed", button_style="danger", icon="times")
        self.message = w.HTML()
        self.take_button.on_click(lambda _: take_up())
        self.done_button.on_click(lambda _: self._done(complete))
        self.fail_button.on_click(lambda _: fail(self.reason.value.strip() or "failed in the DAG view"))

    def _done(self, complete: Callable[[Any], None]) -> None:
        try:
            value = json.loads(self.output_box.value or "null")
        except ValueError as exc:
            self.say(f"The output is not valid JSON: {exc}")
            return
        self.say("")
        complete(value)

    def say(self, text: str) -> None:
        self.message.value = f'<div class="cmdc-notice">{escape(text)}</div>' if text else ""

    def widgets(self, *, taken: bool) -> list[w.Widget]:
        """The controls for a step that is waiting (Take it up offered) or already taken up."""
        wrap = w.Layout(flex_flow="row wrap")
        done = [self.done_button] if taken else [self.take_button, self.done_button]
        return [
            self.instructions,
            self.output_box,
            w.HBox(done, layout=wrap),
            w.HBox([self.reason, self.fail_button], layout=wrap),
            self.message,
        ]
