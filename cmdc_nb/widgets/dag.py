"""DagView: a workflow or a run as a graph, laid out in the kernel (no network service), nodes coloured
by live status. Click a node for its input, output, error, cost and duration; start a run, cancel,
pause, resume and retry it, and decide approval gates from the view.

A gate decided in the view moves the run on whoever started it: a run started with
`stop_when_blocked=True` has no driver left once it reached the gate, so the view starts one (the run
stops again at the next undecided gate); a run whose driver is still waiting in this kernel is left to
it. The decision's database work runs off the kernel's loop."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets as w
import traitlets

from cmdc_nb import workflows as wf
from cmdc_nb.errors import CmdcError, InvalidStateError
from cmdc_nb.events import topics
from cmdc_nb.services import approvals
from cmdc_nb.store.models import ApprovalItem, Workflow, WorkflowRun
from cmdc_nb.widgets._assets import asset, asset_text
from cmdc_nb.widgets._common import Decision, Refresher
from cmdc_nb.widgets._dag_hand import HandPanel
from cmdc_nb.widgets._dag_layout import NODE_H, NODE_W, duration, example_value, layout
from cmdc_nb.widgets._dag_svg import DagSnapshot
from cmdc_nb.widgets._render import CSS, escape, pretty_json
from cmdc_nb.workflows.engine import driven_here

__all__ = ["NODE_W", "DagView", "example_value", "layout"]

_ACTIVE = ("pending", "running", "waiting_approval", "waiting_input", "paused")
_RETRYABLE = ("failed", "cancelled", "timeout")
# The view's own stylesheet (widgets/dag.css): boxed in its output area, readable in every theme.
_DAG_CSS = f"<style>{asset_text('dag.css')}</style>"
log = logging.getLogger("cmdc_nb.widgets")


class _DagCanvas(anywidget.AnyWidget):
    _esm = asset("dag.js")  # widgets/dag.js
    graph = traitlets.Dict().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)


class DagView(DagSnapshot, w.VBox):  # type: ignore[misc]
    """A workflow (before a run: Start) or a run (live). Methods do what the buttons do: `start(input)`,
    `select(step_id)`, `approve(payload=None, note=None)`, `deny(note=None)`, `take_up()`,
    `complete(output)`, `fail(error)` (external steps), `cancel()`, `pause()`,
    `resume()`, `retry()`; `refresh()` re-reads the run (done by itself on every event of the run).

    A decision made here moves the run on: if no driver in this kernel is driving it (it was started
    with `stop_when_blocked=True`, or elsewhere), the view drives it, until the next undecided gate.
    In a notebook `approve()` and `deny()` return a task (await it for the decision to be recorded).

    >>> view = DagView(run)                                         # doctest: +SKIP
    >>> view.select("ship"); await view.approve(note="looks good")  # doctest: +SKIP
    """

    def __init__(self, target: Workflow | WorkflowRun | Any, *, ws: Any = None, user: Any = None) -> None:
        from cmdc_nb._plumbing.workspace import get_workspace

        super().__init__([])
        self.ws = get_workspace(ws)
        self.user = user
        self.run: WorkflowRun | None = None
        self.workflow: Workflow
        self.handle: Any = None
        if isinstance(target, WorkflowRun):
            self.run = target
            self.workflow = wf.get_workflow(target.workflow_id, ws=self.ws)
        elif isinstance(target, Workflow):
            self.workflow = target
        else:
            try:
                self.run = wf.get_workflow_run(target, ws=self.ws)
                self.workflow = wf.get_workflow(self.run.workflow_id, ws=self.ws)
            except Exception:
                self.workflow = wf.get_workflow(target, ws=self.ws)
        self.canvas = _DagCanvas()
        self.canvas.observe(lambda change: self._show_details(), names="selected")
        self.heading = w.HTML()
        self.input_box = w.Textarea(
            value=json.dumps(self._example_input(), indent=2),
            # auto: stretched to the box by the column, margins included (100% overflowed it by them)
            layout=w.Layout(width="auto", height="70px"),
            placeholder="the run's input, as JSON",
        )
        self.input_box.add_class("cmdc-dag-input")
        self.start_button = w.Button(description="Start run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", button_style="danger", icon="stop")
        self.pause_button = w.Button(description="Pause", icon="pause")
        self.resume_button = w.Button(
            description="Resume", icon="play", tooltip="drive the run from this kernel, from where it stopped"
        )
        self.retry_button = w.Button(
            description="Retry from failed step",
            icon="redo",
            layout=w.Layout(width="auto"),
            tooltip="a new run of the same input: completed steps are carried over, the rest run again",
        )
        self.start_button.on_click(lambda _: self._start_from_box())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.pause_button.on_click(lambda _: self.pause())
        self.resume_button.on_click(lambda _: self.resume())
        self.retry_button.on_click(lambda _: self.retry())
        self.controls = w.HBox([])
        self.details = w.VBox([])
        self.message = w.HTML()
        self.children = [
            w.HTML(CSS + _DAG_CSS),
            self.heading,
            self.canvas,
            self.controls,
            self.message,
            self.details,
            self._view_probe(),
        ]
        self.add_class("cmdc-chat")
        self.add_class("cmdc-dagview")
        self._gates: dict[str, ApprovalItem] = {}  # steps waiting at a gate, with their approval item
        self._deciding: set[str] = set()  # gates whose decision is on its way: their buttons are gone
        self._decision: tuple[Any, Decision] | None = None  # kept across refreshes: an open editor stays
        self._hand: tuple[Any, HandPanel] | None = None  # an external step's panel: typed output stays
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closed = False
        # Bus callbacks come from whichever thread committed; redraw once per burst, on the kernel's loop.
        self._refresher = Refresher(self.refresh)
        self._loop = self._refresher.loop
        self._subs: list[Any] = []
        self._follow()
        self.refresh()

    def __repr__(self) -> str:
        state = self.run.status.value if self.run else "not started"
        return f"<DagView {self.workflow.slug!r} {state}>"

    # -- data --------------------------------------------------------------------------------------
    def _example_input(self) -> dict[str, Any]:
        schema = self.workflow.input_schema or {}
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        return {k: example_value(p) for k, p in props.items()} if isinstance(props, dict) else {}

    def _follow(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
        if self.run is not None:
            rid = self.run.id
            self._subs = [
                self.ws.bus.subscribe(topics.workflow_run_steps(rid), self._refresher),
                self.ws.bus.subscribe(topics.workflow_run(rid), self._refresher),
                # a gate decided elsewhere (the approval queue, another cell) changes what the view offers
                self.ws.bus.subscribe(topics.user_approvals(self.run.user_id), self._refresher),
            ]

    @property
    def steps(self) -> dict[str, Any]:
        """The run's step rows by id (empty before a run)."""
        if self.run is None:
            return {}
        return {s.step_id: s for s in wf.list_workflow_steps(self.run, ws=self.ws)}

    def _loop_usable(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    def _driving(self) -> bool:
        """Whether something in this kernel drives the run now (this view's task or another cell's)."""
        if self.run is None:
            return False
        own = self.handle is not None and not self.handle.done()
        return own or driven_here(self.run.id)

    # -- drawing -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self._closed:
            return
        if self.run is not None:
            self.run = wf.get_workflow_run(self.run.id, ws=self.ws)
            snapshot = self.run.workflow_snapshot["steps"]
        else:
            snapshot = self.workflow.steps
        rows = self.steps
        self._gates = {
            sid: approvals.get_approval_item(row.approval_id, ws=self.ws)
            for sid, row in rows.items()
            if row.status.value == "waiting_approval" and row.approval_id is not None
        }
        geo = layout(snapshot)
        nodes = []
        for s in snapshot:
            x, y = geo["positions"][s["id"]]
            row = rows.get(s["id"])
            status = row.status.value if row is not None else "planned"
            note = ""
            if row is not None and row.duration_ms is not None and status == "completed":
                note = duration(row.duration_ms)
            elif row is not None and row.attempt_number > 1:
                note = f"try {row.attempt_number}/{row.max_attempts}"
            nodes.append(
                {
                    "id": s["id"],
                    "label": (s.get("name") or s["id"])[:22],
                    "type": s["type"],
                    "status": status,
                    "note": note,
                    "x": x,
                    "y": y,
                    "w": NODE_W,
                    "h": NODE_H,
                }
            )
        self.canvas.graph = {
            "nodes": nodes,
            "edges": geo["edges"],
            "width": geo["width"],
            "height": geo["height"],
        }
        self._render_heading(rows)
        self._render_controls()
        self._show_details()
        self._snapshot_changed()

    def _render_heading(self, rows: dict[str, Any]) -> None:
        title = f'<span class="cmdc-title">{escape(self.workflow.name)}</span>'
        if self.run is None:
            self.heading.value = (
                f'{title} <span class="cmdc-stats">v{self.workflow.version} · {len(self.workflow.steps)} steps · '
                f"{self.workflow.run_count} runs</span>"
            )
            return
        r = self.run
        done = sum(1 for s in rows.values() if s.status.value in ("completed", "skipped"))
        state = r.status.value.replace("_", " ")
        if r.status.value == "waiting_approval":
            pending = [sid for sid, item in self._gates.items() if item.status.value == "pending"]
            state = f"waiting for approval at {', '.join(pending)}" if pending else "approved, not resumed"
        elif r.status.value == "waiting_input":
            turns = [sid for sid, s in rows.items() if s.status.value in ("waiting_input", "running")]
            state = f"waiting for input at {', '.join(turns)}"
        bits = [state, f"{done}/{len(rows)} steps"]
        if r.duration_ms is not None:
            bits.append(duration(r.duration_ms))
        if r.total_cost_usd:
            bits.append(f"${r.total_cost_usd:.4f}")
        if r.retry_of_run_id is not None:
            bits.append(f"retry of run {str(r.retry_of_run_id)[:8]}")
        if r.error_message and r.status.value in _RETRYABLE:
            bits.append(escape(r.error_message[:120]))
        self.heading.value = f'{title} <span class="cmdc-stats">run {str(r.id)[:8]} · {" · ".join(escape(b) for b in bits)}</span>'

    def _render_controls(self) -> None:
        status = self.run.status.value if self.run is not None else None
        if status in _ACTIVE:
            buttons = [self.cancel_button]
            if status == "paused":
                buttons.append(self.resume_button)
            else:
                buttons.append(self.pause_button)
                # Resume applies when nothing here drives the run and it has somewhere to go: not while
                # it only waits at an undecided gate (deciding it drives the run).
                stalled = status not in ("waiting_approval", "waiting_input") or any(
                    item.status.value != "pending" for item in self._gates.values()
                )
                if stalled and not self._deciding and not self._driving():
                    buttons.append(self.resume_button)
            self.controls.children = buttons
            return
        extra = [self.input_box] if self.workflow.input_schema else []
        self.start_button.description = "Start run" if self.run is None else "Start a new run"
        row = [self.start_button, *([self.retry_button] if status in _RETRYABLE else [])]
        self.controls.children = [w.VBox([*extra, w.HBox(row)], layout=w.Layout(width="100%"))]

    def select(self, step_id: str) -> None:
        """Show a step's details (what a click on its node does)."""
        self.canvas.selected = step_id
        self._snapshot_changed()

    def _show_details(self) -> None:
        sid = self.canvas.selected
        if not sid:
            self.details.children = []
            return
        row = self.steps.get(sid)
        spec = next(
            (
                s
                for s in (self.run.workflow_snapshot["steps"] if self.run else self.workflow.steps)
                if s["id"] == sid
            ),
            None,
        )
        if spec is None:
            self.details.children = []
            return
        facts = [
            f"<b>{escape(spec.get('name') or sid)}</b> <span class='cmdc-meta'>{escape(spec['type'])}</span>"
        ]
        if row is None:
            facts.append("not run yet")
            body = [w.HTML("<br>".join(facts) + pretty_json(spec.get("config", {})))]
            self.details.children = body
            return
        facts.append(
            f"status <b>{escape(row.status.value.replace('_', ' '))}</b> · attempt {row.attempt_number}/{row.max_attempts}"
        )
        if row.duration_ms is not None:
            facts.append(f"duration {duration(row.duration_ms)}")
        if row.tokens_in or row.tokens_out:
            facts.append(f"tokens {row.tokens_in or 0} in / {row.tokens_out or 0} out")
        if row.cost_usd is not None:
            facts.append(f"cost ${row.cost_usd:.6f}")
        parts = ["<br>".join(facts)]
        if row.input is not None:
            parts.append("<div class='cmdc-meta'>input</div>" + pretty_json(row.input))
        if row.output is not None:
            parts.append("<div class='cmdc-meta'>output</div>" + pretty_json(row.output))
        if row.error_message:
            parts.append(
                f"<div class='cmdc-notice'>{escape(row.error_type or 'error')}: {escape(row.error_message)}</div>"
            )
        children: list[Any] = [w.HTML("".join(parts))]
        item = self._gates.get(sid)
        if item is not None:
            children.insert(0, w.HTML(f"<div class='cmdc-title'>{escape(item.title)}</div>"))
            if sid in self._deciding:
                children.append(w.HTML("<div class='cmdc-notice'>Recording the decision…</div>"))
            elif item.status.value != "pending":
                # decided (elsewhere) but no driver has applied it yet: say so, offer no second decision
                children.append(
                    w.HTML(
                        f"<div class='cmdc-notice'>{escape(item.status.value.replace('_', ' '))}"
                        f"{' — the run goes on' if self._driving() else ' — Resume to go on'}</div>"
                    )
                )
            else:
                children.extend(self._decision_for(sid, item).widgets)
        elif row.step_type.value == "external" and row.status.value in ("waiting_input", "running"):
            children.extend(self._hand_for(sid, row).widgets(taken=row.status.value == "running"))
        self.details.children = children

    def _hand_for(self, sid: str, row: Any) -> HandPanel:
        key = (sid, row.id)
        if self._hand is None or self._hand[0] != key:
            panel = HandPanel(
                row.input or {},
                take_up=lambda: self._clicked(lambda: self.take_up(sid)),
                complete=lambda value: self._clicked(lambda: self.complete(value, step_id=sid)),
                fail=lambda why: self._clicked(lambda: self.fail(why, step_id=sid)),
            )
            self._hand = (key, panel)
        return self._hand[1]

    def _decision_for(self, sid: str, item: ApprovalItem) -> Decision:
        key = (sid, item.id)
        if self._decision is None or self._decision[0] != key:
            decision = Decision(
                item.payload,
                approve=lambda edited: self._clicked(lambda: self.approve(payload=edited)),
                deny=lambda: self._clicked(lambda: self.deny(note="denied in the DAG view")),
                edit_label="Edit payload",
            )
            self._decision = (key, decision)
        return self._decision[1]

    # -- external steps ------------------------------------------------------------------------------
    def _by_hand(self, step_id: str | None) -> str:
        sid = step_id or self.canvas.selected
        row = self.steps.get(sid) if sid else None
        if self.run is None or row is None or row.step_type.value != "external":
            raise ValueError("select an external step first")
        return sid

    def take_up(self, step_id: str | None = None) -> None:
        """Say that you are doing the selected external step (`workflows.start_step`)."""
        sid = self._by_hand(step_id)
        wf.start_step(self.run.id, sid, self.user, ws=self.ws)  # type: ignore[union-attr]
        self._say(f"Step {sid} is yours; mark it done when it is.")
        self.refresh()

    def complete(self, output: Any = None, *, step_id: str | None = None) -> None:
        """Record the selected external step's output (`workflows.complete_step`) and move the run on:
        the view drives it, unless something in this kernel already does, until it next waits."""
        sid = self._by_hand(step_id)
        try:
            wf.complete_step(self.run.id, sid, self.user, output=output, ws=self.ws)  # type: ignore[union-attr]
        except CmdcError as exc:
            if self._hand is not None:
                self._hand[1].say(str(exc))  # next to what was typed, which stays for correcting
            raise
        self._drive_on()
        self._say(f"Step {sid} done; the run goes on.")
        self.refresh()

    def fail(self, error: str = "failed in the DAG view", *, step_id: str | None = None) -> None:
        """Record that the selected external step could not be done; the run's failure policy applies."""
        sid = self._by_hand(step_id)
        wf.fail_step(self.run.id, sid, self.user, error=error, ws=self.ws)  # type: ignore[union-attr]
        self._drive_on()
        self._say(f"Step {sid} marked failed.")
        self.refresh()

    def _say(self, text: str) -> None:
        self.message.value = f'<div class="cmdc-notice">{escape(text)}</div>' if text else ""
        self._snapshot_changed()

    def _clicked(self, action: Callable[[], Any]) -> None:
        """A button's action: what goes wrong is said in the view and logged, never swallowed."""
        try:
            action()
        except (CmdcError, ValueError) as exc:
            self._say(str(exc))
        except Exception as exc:
            log.exception("a DagView button failed")
            self._say(f"{type(exc).__name__}: {exc}")

    # -- actions -----------------------------------------------------------------------------------
    def _start_from_box(self) -> None:
        try:
            data = json.loads(self.input_box.value or "{}")
        except ValueError as exc:
            self.message.value = f'<div class="cmdc-notice">The input is not valid JSON: {escape(exc)}</div>'
            return
        self.start(data)

    def start(self, input: dict[str, Any] | None = None, **options: Any) -> Any:
        """Start a run of the workflow and follow it (in a notebook it runs in the background)."""
        try:
            run = wf.start_workflow_run(self.workflow, self.user, input=input, ws=self.ws)
        except CmdcError as exc:
            self.message.value = f'<div class="cmdc-notice">{escape(exc)}</div>'
            return None
        self.message.value = ""
        self.run = run
        self.canvas.selected = ""
        self._follow()
        coro = wf.execute_workflow_run(run, ws=self.ws, **options)
        if self._loop_usable():
            assert self._loop is not None
            self._track(self._loop.create_task(coro))
        else:
            asyncio.run(coro)
        self.refresh()
        return self.handle or self.run

    def _track(self, handle: Any) -> None:
        """Follow a driver: when it ends (done, stopped at a gate, failed) the controls change."""
        self.handle = handle
        task = handle.task if isinstance(handle, wf.RunHandle) else handle

        def ended(t: asyncio.Future[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("a workflow run driven by a DagView failed", exc_info=t.exception())
                self._say(f"The run's driver stopped: {t.exception()}")
            self._refresher()

        task.add_done_callback(ended)

    def _gate(self) -> str:
        sid = self.canvas.selected
        if self.run is None or not sid or sid not in self._gates:
            raise ValueError("select a step waiting for approval first")
        return sid

    def approve(self, payload: dict[str, Any] | None = None, note: str | None = None) -> Any:
        """Approve the selected gate (`payload` replaces what the step runs with) and move the run on."""
        return self._decide(True, payload=payload, note=note or "approved in the DAG view")

    def deny(self, note: str | None = None) -> Any:
        """Deny the selected gate: the step fails (or is skipped, per its `on_deny`) and the run goes on."""
        return self._decide(False, note=note)

    def _decide(self, approve: bool, *, payload: dict[str, Any] | None = None, note: str | None) -> Any:
        sid = self._gate()
        assert self.run is not None
        if sid in self._deciding:
            self._say(f"The decision on step {sid} is being recorded already.")
            return None
        run_id, verb = self.run.id, "approved" if approve else "denied"

        def decide() -> None:
            if approve:
                wf.approve_workflow_step(run_id, sid, self.user, note=note, payload=payload, ws=self.ws)
            else:
                wf.deny_workflow_step(run_id, sid, self.user, note=note, ws=self.ws)

        if self._gates[sid].status.value != "pending":
            # decided elsewhere already: what is left to do is to move the run on
            self._drive_on()
            self.refresh()
            self._say(f"Step {sid} was {self._gates[sid].status.value} already; the run goes on.")
            return None
        self._deciding.add(sid)
        self._say(f"{'Approving' if approve else 'Denying'} step {sid}…")
        self._show_details()  # its buttons go at once: a second click cannot decide twice
        if not self._loop_usable():
            self._decided(sid, verb, _attempt(decide))
            return None
        assert self._loop is not None
        task = self._loop.create_task(self._decide_off_loop(sid, verb, decide))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _decide_off_loop(self, sid: str, verb: str, decide: Callable[[], None]) -> None:
        # the decision is a few database writes: off the loop, so the kernel stays responsive
        error = await asyncio.get_running_loop().run_in_executor(None, _attempt, decide)
        self._decided(sid, verb, error)

    def _decided(self, sid: str, verb: str, error: Exception | None) -> None:
        self._deciding.discard(sid)
        if error is None:
            self._say(f"Step {sid} {verb}; the run goes on.")
        elif isinstance(error, InvalidStateError):
            self._say(f"Step {sid} was decided elsewhere already; the run goes on from that decision.")
        else:
            self._say(f"Step {sid} was not {verb}: {error}")
            self.refresh()
            return
        self._drive_on()
        self.refresh()

    def _drive_on(self) -> None:
        """Drive the run past a decided gate unless something in this kernel already does; it stops again
        at the next undecided gate, as a run started with `stop_when_blocked` would."""
        if self.run is None or self._driving() or self.run.status.value not in _ACTIVE:
            return
        coro = wf.execute_workflow_run(self.run.id, stop_when_blocked=True, ws=self.ws)
        if self._loop_usable():
            assert self._loop is not None
            self._track(self._loop.create_task(coro))
        else:
            asyncio.run(coro)

    def cancel(self) -> None:
        if self.run is not None:
            wf.cancel_workflow_run(self.run, reason="cancelled in the DAG view", ws=self.ws)
            self.refresh()

    def pause(self) -> None:
        if self.run is not None:
            wf.pause_workflow_run(self.run, ws=self.ws)
            self.refresh()

    def resume(self) -> Any:
        """Drive the run from where it stopped (paused, interrupted, or past a gate decided elsewhere)."""
        if self.run is None:
            return None
        try:
            handle = wf.resume_workflow_run(self.run, ws=self.ws)
        except CmdcError as exc:
            self._say(str(exc))
            return None
        if not isinstance(handle, WorkflowRun):
            self._track(handle)
        self._say("")
        self.refresh()
        return handle

    def retry(self) -> Any:
        """Retry a failed (or cancelled) run from its failed step: a new run, which the view follows."""
        if self.run is None:
            return None
        old = self.run
        try:
            handle = wf.retry_workflow_run(old, ws=self.ws)
        except CmdcError as exc:
            self._say(str(exc))
            return None
        self.run = wf.get_workflow_run(
            handle if isinstance(handle, WorkflowRun) else handle.run_id, ws=self.ws
        )
        if not isinstance(handle, WorkflowRun):
            self._track(handle)
        self._follow()
        where = f"from step {old.failed_step_id}" if old.failed_step_id else "from where it stopped"
        self._say(f"Retrying run {str(old.id)[:8]} {where}; completed steps are carried over.")
        self.refresh()
        return handle

    def close(self) -> None:
        self._closed = True
        for sub in self._subs:
            sub.close()
        self._subs = []
        super().close()


def _attempt(fn: Callable[[], None]) -> Exception | None:
    """Call `fn`; the error a person can act on is returned (to be said in the view), others raise."""
    try:
        fn()
    except CmdcError as exc:
        return exc
    return None
