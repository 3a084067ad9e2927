"""DagView: a workflow or a run as a graph, laid out in the kernel (no network service), nodes coloured
by live status. Click a node for its input, output, error, cost and duration; start a run, cancel,
pause and resume it, and decide approval gates from the view."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as w
import networkx as nx
import traitlets

from cmdc_nb import workflows as wf
from cmdc_nb.events import topics
from cmdc_nb.store.models import Workflow, WorkflowRun
from cmdc_nb.widgets._common import Decision, Refresher
from cmdc_nb.widgets._render import CSS, escape, pretty_json

__all__ = ["DagView", "layout"]

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 46, 48, 18, 12
_ACTIVE = ("pending", "running", "waiting_approval", "paused")


class _DagCanvas(anywidget.AnyWidget):
    _esm = Path(__file__).with_name("static") / "dag.js"
    graph = traitlets.Dict().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)


def layout(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Positions for a left-to-right layered drawing: one column per topological generation, nodes in
    the order they were written, each column centred. `steps` need `id` and `depends_on`."""
    g: nx.DiGraph = nx.DiGraph()
    order = {s["id"]: i for i, s in enumerate(steps)}
    for s in steps:
        g.add_node(s["id"])
        for d in s.get("depends_on", []):
            g.add_edge(d, s["id"])
    columns = [sorted(gen, key=order.__getitem__) for gen in nx.topological_generations(g)]
    tallest = max((len(c) for c in columns), default=1)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    pos: dict[str, tuple[int, int]] = {}
    for ci, col in enumerate(columns):
        top = (height - (len(col) * NODE_H + (len(col) - 1) * GAP_Y)) // 2
        for ri, sid in enumerate(col):
            pos[sid] = (PAD + ci * (NODE_W + GAP_X), top + ri * (NODE_H + GAP_Y))
    width = PAD * 2 + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    return {"positions": pos, "edges": [list(e) for e in g.edges], "width": width, "height": height}


def _duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


class DagView(w.VBox):  # type: ignore[misc]
    """A workflow (before a run: Start) or a run (live). Methods do what the buttons do: `start(input)`,
    `select(step_id)`, `approve(payload=None, note=None)`, `deny(note=None)`, `cancel()`, `pause()`,
    `resume()`; `refresh()` re-reads the run (done by itself on every event of the run)."""

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
            layout=w.Layout(width="98%", height="70px"),
            description="input",
        )
        self.start_button = w.Button(description="Start run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", button_style="danger", icon="stop")
        self.pause_button = w.Button(description="Pause", icon="pause")
        self.resume_button = w.Button(description="Resume", icon="play")
        self.start_button.on_click(lambda _: self._start_from_box())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.pause_button.on_click(lambda _: self.pause())
        self.resume_button.on_click(lambda _: self.resume())
        self.controls = w.HBox([])
        self.details = w.VBox([])
        self.message = w.HTML()
        self.children = [
            w.HTML(CSS),
            self.heading,
            self.canvas,
            self.controls,
            self.message,
            self.details,
        ]
        self.add_class("cmdc-chat")
        self.add_class("cmdc-dagview")
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
        return {
            k: p.get("default", p.get("examples", [""])[0] if p.get("examples") else "")
            for k, p in props.items()
        }

    def _follow(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
        if self.run is not None:
            rid = self.run.id
            self._subs = [
                self.ws.bus.subscribe(topics.workflow_run_steps(rid), self._refresher),
                self.ws.bus.subscribe(topics.workflow_run(rid), self._refresher),
            ]

    @property
    def steps(self) -> dict[str, Any]:
        """The run's step rows by id (empty before a run)."""
        if self.run is None:
            return {}
        return {s.step_id: s for s in wf.list_workflow_steps(self.run, ws=self.ws)}

    # -- drawing -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.run is not None:
            self.run = wf.get_workflow_run(self.run.id, ws=self.ws)
            snapshot = self.run.workflow_snapshot["steps"]
        else:
            snapshot = self.workflow.steps
        rows = self.steps
        geo = layout(snapshot)
        nodes = []
        for s in snapshot:
            x, y = geo["positions"][s["id"]]
            row = rows.get(s["id"])
            status = row.status.value if row is not None else "planned"
            note = ""
            if row is not None and row.duration_ms is not None and status == "completed":
                note = _duration(row.duration_ms)
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
        bits = [r.status.value.replace("_", " "), f"{done}/{len(rows)} steps"]
        if r.duration_ms is not None:
            bits.append(_duration(r.duration_ms))
        if r.total_cost_usd:
            bits.append(f"${r.total_cost_usd:.4f}")
        if r.error_message and r.status.value in ("failed", "cancelled"):
            bits.append(escape(r.error_message[:120]))
        self.heading.value = (
            f'{title} <span class="cmdc-stats">run {str(r.id)[:8]} · {" · ".join(bits)}</span>'
        )

    def _render_controls(self) -> None:
        if self.run is None or self.run.status.value not in _ACTIVE:
            self.controls.children = [self.start_button]
            extra = [self.input_box] if self.workflow.input_schema else []
            self.controls.children = [w.VBox([*extra, self.start_button])]
            return
        buttons = [self.cancel_button]
        buttons.append(self.resume_button if self.run.status.value == "paused" else self.pause_button)
        self.controls.children = buttons

    def select(self, step_id: str) -> None:
        """Show a step's details (what a click on its node does)."""
        self.canvas.selected = step_id

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
            f"status <b>{escape(row.status.value)}</b> · attempt {row.attempt_number}/{row.max_attempts}"
        )
        if row.duration_ms is not None:
            facts.append(f"duration {_duration(row.duration_ms)}")
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
        if row.status.value == "waiting_approval":
            from cmdc_nb.services import approvals

            item = approvals.get_approval_item(row.approval_id, ws=self.ws)
            decision = Decision(
                item.payload,
                approve=lambda edited: self.approve(payload=edited),
                deny=lambda: self.deny(note="denied in the DAG view"),
                edit_label="Edit payload",
            )
            children = [
                w.HTML(f"<div class='cmdc-title'>{escape(item.title)}</div>"),
                *children,
                *decision.widgets,
            ]
        self.details.children = children

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
        from cmdc_nb.errors import CmdcError

        try:
            run = wf.start_workflow_run(self.workflow, self.user, input=input, ws=self.ws)
        except CmdcError as exc:
            self.message.value = f'<div class="cmdc-notice">{escape(exc)}</div>'
            return None
        self.message.value = ""
        self.run = run
        self._follow()
        coro = wf.execute_workflow_run(run, ws=self.ws, **options)
        if self._loop is not None and not self._loop.is_closed():
            self.handle = self._loop.create_task(coro)
        else:
            asyncio.run(coro)
        self.refresh()
        return self.handle or self.run

    def _gate(self) -> str:
        sid = self.canvas.selected
        if self.run is None or not sid:
            raise ValueError("select a step waiting for approval first")
        return sid

    def approve(self, payload: dict[str, Any] | None = None, note: str | None = None) -> None:
        assert self.run is not None
        wf.approve_workflow_step(
            self.run,
            self._gate(),
            self.user,
            note=note or "approved in the DAG view",
            payload=payload,
            ws=self.ws,
        )
        self.refresh()

    def deny(self, note: str | None = None) -> None:
        assert self.run is not None
        wf.deny_workflow_step(self.run, self._gate(), self.user, note=note, ws=self.ws)
        self.refresh()

    def cancel(self) -> None:
        if self.run is not None:
            wf.cancel_workflow_run(self.run, reason="cancelled in the DAG view", ws=self.ws)
            self.refresh()

    def pause(self) -> None:
        if self.run is not None:
            wf.pause_workflow_run(self.run, ws=self.ws)
            self.refresh()

    def resume(self) -> Any:
        if self.run is None:
            return None
        handle = wf.resume_workflow_run(self.run, ws=self.ws)
        if not isinstance(handle, WorkflowRun):
            self.handle = handle
        self.refresh()
        return handle

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
        super().close()
