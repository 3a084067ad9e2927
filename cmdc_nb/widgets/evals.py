"""EvalView: an eval run as a person reads it — the case × model matrix (✓ passed, ✗ failed, ! the task
failed, · not run yet), a click on a cell to see that case's transcripts for two models side by side with
each scorer's reason, a filter to the cases some model failed, and the Pareto chart of cost and quality.

It follows the run while it runs (each case finished redraws the matrix, once per burst of events) and
leaves a static picture — the matrix as a table, the chart as SVG, the open case — for readers without a
kernel (see `_snapshot`)."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.evals import EvalRun, get_eval
from cmdc_nb.evals.results import summary_frame
from cmdc_nb.events import topics
from cmdc_nb.services import sessions
from cmdc_nb.widgets._common import Refresher
from cmdc_nb.widgets._eval_svg import pareto_svg
from cmdc_nb.widgets._snapshot import Snapshot, static_html
from cmdc_nb.widgets._theme import PANEL_CSS

__all__ = ["EvalView"]

_MARKS = {"pass": "✓", "fail": "✗", "error": "!", "pending": "·"}
_SAID = {"pass": "passed", "fail": "failed", "error": "the task failed", "pending": "not run yet"}
_TRANSCRIPT_CHARS = 4000

EVAL_CSS = """<style>
.cmdc-evalview .cmdc-eval-grid { display: grid; gap: 2px 4px; align-items: center; max-width: min(100%, 900px); }
.cmdc-evalview .cmdc-eval-grid > * { min-width: 0; }
.cmdc-evalview .cmdc-eval-case-label { overflow: hidden; white-space: nowrap; text-overflow: ellipsis; font-size: 12px; }
.cmdc-evalview .cmdc-eval-model { font-size: 11px; font-weight: 600; overflow-wrap: anywhere; text-align: center; line-height: 1.2; }
.cmdc-evalview .jupyter-button.cmdc-eval-cell { width: 100%; min-width: 0; height: 24px; padding: 0; margin: 0; font-size: 15px;
  font-weight: 700; background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 5px; }
.cmdc-evalview .jupyter-button.cmdc-eval-cell.pass { color: var(--cmdc-ok); }
.cmdc-evalview .jupyter-button.cmdc-eval-cell.fail, .cmdc-evalview .jupyter-button.cmdc-eval-cell.error { color: var(--cmdc-error); border-color: var(--cmdc-error); }
.cmdc-evalview .jupyter-button.cmdc-eval-cell.pending { color: var(--cmdc-muted); }
.cmdc-evalview .jupyter-button.cmdc-eval-cell.selected { outline: 2px solid var(--cmdc-info); outline-offset: 1px; }
.cmdc-evalview .cmdc-eval-sides { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 280px), 1fr)); gap: 8px; }
.cmdc-evalview .cmdc-eval-side { border: 1px solid var(--jp-border-color2, #d0d7de); border-top: 4px solid var(--cmdc-ok);
  border-radius: 8px; padding: 6px 8px; min-width: 0; background: var(--jp-layout-color1, #fff); }
.cmdc-evalview .cmdc-eval-side.fail, .cmdc-evalview .cmdc-eval-side.error { border-top-color: var(--cmdc-error); }
.cmdc-evalview .cmdc-eval-side.pending { border-top-color: var(--jp-border-color1, #bdbdbd); }
.cmdc-evalview .cmdc-eval-msg { white-space: pre-wrap; overflow-wrap: anywhere; margin: 3px 0; padding: 3px 6px; border-radius: 6px;
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color1, #1f2328); font-size: 12px; max-height: 220px; overflow: auto; }
.cmdc-evalview .cmdc-eval-role { font-size: 11px; font-weight: 600; color: var(--cmdc-muted); }
.cmdc-evalview .cmdc-eval-scores { margin: 4px 0; padding-left: 18px; font-size: 12px; }
.cmdc-evalview .cmdc-eval-chart { max-width: 420px; }
.cmdc-evalview table.cmdc-eval-matrix td.pass { color: var(--cmdc-ok); font-weight: 700; text-align: center; }
.cmdc-evalview table.cmdc-eval-matrix td.fail, .cmdc-evalview table.cmdc-eval-matrix td.error { color: var(--cmdc-error); font-weight: 700; text-align: center; }
</style>"""


def _state(row: Any) -> str:
    if row["status"] != "completed":
        return "pending"
    if isinstance(row["error"], str) and row["error"]:
        return "error"
    return "pass" if bool(row["passed"]) else "fail"


def _short(value: Any, n: int = 70) -> str:
    text = (
        value
        if isinstance(value, str)
        else ", ".join(f"{k}: {v}" for k, v in value.items())
        if isinstance(value, dict)
        else str(value)
    )
    return text if len(text) <= n else text[: n - 1] + "…"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class EvalView(Snapshot, w.VBox):  # type: ignore[misc]
    """An eval run (an EvalRun, or its run id). `select(case, model)` opens a cell as a click does;
    `compare` names the model shown beside it (default: another model, one that passed when one did).

        EvalView(run)               # after `run = await evals.run_eval(...)`, or while it runs"""

    def __init__(
        self,
        run: EvalRun | Any,
        *,
        compare: str | None = None,
        page_size: int = 40,
        ws: Any = None,
        width: int | None = None,
    ) -> None:
        super().__init__([])
        self.eval = run if isinstance(run, EvalRun) else get_eval(run, ws=ws)
        self.ws = self.eval._ws
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise InvalidInputError("must be an integer of at least 1", field="page_size")
        self.page_size, self.page = page_size, 0
        self.models = self.eval.models
        if compare is not None and compare not in self.models:
            raise InvalidInputError(
                f"{compare!r} is not one of this eval's models: {', '.join(self.models)}", field="compare"
            )
        self.compare = compare
        self.selected: tuple[str, str] | None = None
        self.frame: Any = None
        self.stats = w.HTML()
        self.show = w.ToggleButtons(
            options=["all cases", "failures"], value="all cases", style={"button_width": "90px"}
        )
        self.show.observe(lambda _: self._goto(0), names="value")
        prev_btn = w.Button(description="◀", tooltip="previous cases", layout=w.Layout(width="36px"))
        next_btn = w.Button(description="▶", tooltip="next cases", layout=w.Layout(width="36px"))
        prev_btn.on_click(lambda _: self._goto(self.page - 1))
        next_btn.on_click(lambda _: self._goto(self.page + 1))
        self.pager = w.HBox([prev_btn, w.HTML(), next_btn])
        self.pager.add_class("cmdc-row")
        refresh = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        refresh.on_click(lambda _: self.refresh())
        self.grid = w.GridBox([])
        self.grid.add_class("cmdc-eval-grid")
        self.detail = w.HTML()
        self.chart = w.HTML()
        self.chart.add_class("cmdc-eval-chart")
        head = w.HBox([w.HTML(f'<span class="cmdc-title">{_esc(self.eval.name)}</span>'), self.stats])
        controls = w.HBox([self.show, self.pager, refresh])
        for row in (head, controls):
            row.add_class("cmdc-row")
        self.children = [
            w.HTML(PANEL_CSS + EVAL_CSS),
            head,
            controls,
            self.grid,
            self.detail,
            self.chart,
            self._view_probe(),
        ]
        if width is not None:
            self.layout.max_width = f"{width}px"
        self.add_class("cmdc-panel")
        self.add_class("cmdc-evalview")
        self._refresher = Refresher(self.refresh)
        rid = self.eval.run_id
        self._subs = [self.ws.bus.subscribe(topics.workflow_run(rid), self._refresher)]
        self.refresh()

    def __repr__(self) -> str:
        return f"<EvalView {self.eval.name!r} {self.eval.status}>"

    # -- data ------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the results and redraw the matrix, the open case and the chart."""
        self.frame = self.eval.results()
        f = self.frame
        done = f[f["status"] == "completed"]
        passed = int(done["passed"].fillna(False).sum())
        self.stats.value = (
            f'<span class="cmdc-stats">&nbsp;{self.eval.status} · {len(done)}/{len(f)} case runs · {passed} passed · '
            f"${self.eval.cost_usd()}</span>"
        )
        self._draw_grid()
        self._draw_detail()
        # the summary of the frame just read, not of a second read of every step
        self.chart.value = pareto_svg(summary_frame(f), title="Cost and quality") if len(done) else ""
        self._snapshot_changed()

    def _cases(self) -> list[str]:
        f = self.frame
        cases = list(dict.fromkeys(f["case"]))
        if self.show.value == "failures":
            bad = {
                c
                for c, s in zip(f["case"], (_state(r) for _, r in f.iterrows()), strict=True)
                if s in ("fail", "error")
            }
            cases = [c for c in cases if c in bad]
        return cases

    def _goto(self, page: int) -> None:
        pages = max(1, -(-len(self._cases()) // self.page_size))
        self.page = max(0, min(page, pages - 1))
        self._draw_grid()
        self._snapshot_changed()

    # -- drawing ---------------------------------------------------------------------------------------
    def _draw_grid(self) -> None:
        f = self.frame
        cases = self._cases()
        pages = max(1, -(-len(cases) // self.page_size))
        self.page = min(self.page, pages - 1)
        shown = cases[self.page * self.page_size : (self.page + 1) * self.page_size]
        rows = {(r["case"], r["model"]): r for _, r in f.iterrows()}
        first = {r["case"]: r for _, r in f.iterrows()}
        children: list[w.Widget] = [w.HTML('<span class="cmdc-eval-model">case</span>')]
        children += [
            w.HTML(f'<div class="cmdc-eval-model" title="{_esc(m)}">{_esc(m.split("/", 1)[-1])}</div>')
            for m in self.models
        ]
        for case in shown:
            label = w.HTML(
                f'<div class="cmdc-eval-case-label" title="{_esc(_short(first[case]["inputs"], 400))}"><b>{_esc(case)}</b> '
                f'<span class="cmdc-meta">{_esc(_short(first[case]["inputs"]))}</span></div>'
            )
            children.append(label)
            for model in self.models:
                children.append(self._cell(case, model, rows.get((case, model))))
        self.grid.children = children
        self.grid.layout.grid_template_columns = (
            f"minmax(0, 26em) repeat({len(self.models)}, minmax(44px, 64px))"
        )
        self.pager.children[1].value = (
            f'<span class="cmdc-stats">{self.page * self.page_size + (1 if shown else 0)}–{self.page * self.page_size + len(shown)} '
            f"of {len(cases)}{' failing' if self.show.value == 'failures' else ''} cases</span>"
        )

    def _cell(self, case: str, model: str, row: Any) -> w.Button:
        state = _state(row) if row is not None else "pending"
        said = f"{case} · {model}: {_SAID[state]}"
        if row is not None and state in ("pass", "fail"):
            said += f" (score {row['score']:.2f})"
        button = w.Button(description=_MARKS[state], tooltip=said, layout=w.Layout(width="auto"))
        button.add_class("cmdc-eval-cell")
        button.add_class(state)
        if self.selected == (case, model):
            button.add_class("selected")
        button.on_click(lambda _b, c=case, m=model: self._clicked(c, m))
        return button

    def _clicked(self, case: str, model: str) -> None:
        self._snapshot_used()
        self.select(case, model)

    def select(self, case: str, model: str) -> None:
        """Open `case` for `model` (and the model compared with it) under the matrix."""
        if model not in self.models:
            raise InvalidInputError(f"{model!r} is not one of this eval's models", field="model")
        if case not in set(self.frame["case"]):
            raise InvalidInputError(f"no case {case!r} in this eval", field="case")
        self.selected = (case, model)
        self._draw_grid()
        self._draw_detail()
        self._snapshot_changed()

    def _other(self, case: str, model: str) -> str | None:
        if self.compare is not None and self.compare != model:
            return self.compare
        others = [m for m in self.models if m != model]
        rows = self.frame[(self.frame["case"] == case) & self.frame["model"].isin(others)]
        passing = [m for m, ok in zip(rows["model"], rows["passed"], strict=True) if ok is True]
        return passing[0] if passing else (others[0] if others else None)

    def _draw_detail(self) -> None:
        if self.selected is None:
            self.detail.value = (
                '<div class="cmdc-notice">Click a cell to read that case, beside another model\'s.</div>'
            )
            return
        case, model = self.selected
        rows = {m: r for _, r in self.frame[self.frame["case"] == case].iterrows() for m in [r["model"]]}
        first = rows[model]
        expected = first["expected"]
        head = (
            f'<div class="cmdc-eval-case"><b>{_esc(case)}</b> · inputs <code>{_esc(_short(first["inputs"], 300))}</code>'
            + (f" · expected <code>{_esc(_short(expected, 200))}</code>" if expected is not None else "")
            + "</div>"
        )
        sides = [
            self._side(rows[m]) for m in (model, self._other(case, model)) if m is not None and m in rows
        ]
        self.detail.value = (
            f'<div class="cmdc-eval-detail">{head}<div class="cmdc-eval-sides">{"".join(sides)}</div></div>'
        )

    def _side(self, row: Any) -> str:
        state = _state(row)
        parts = [
            f'<div class="cmdc-eval-side {state}" data-model="{_esc(row["model"])}">',
            f'<div class="cmdc-title">{_MARKS[state]} {_esc(row["model"])}</div>',
        ]
        if state == "pending":
            return "".join([*parts, '<div class="cmdc-notice">not run yet</div></div>'])
        cost = row["cost_usd"]
        parts.append(
            f'<div class="cmdc-meta">score {row["score"]:.2f} · ${cost if cost is not None else "—"}'
            + (f" (+ judge ${row['judge_cost_usd']})" if row["judge_cost_usd"] else "")
            + (f" · {row['latency_s'] * 1000:.0f} ms" if row["latency_s"] == row["latency_s"] else "")
            + "</div>"
        )
        if state == "error":
            parts.append(f'<div class="cmdc-error-text">{_esc(row["error"])}</div>')
        reasons = [c[len("reason_") :] for c in self.frame.columns if c.startswith("reason_")]
        items = "".join(
            f"<li><b>{_esc(n)}</b> {row[f'score_{n}']:.2f} — {_esc(row[f'reason_{n}'] or '')}</li>"
            for n in reasons
            if row[f"score_{n}"] == row[f"score_{n}"]
        )
        parts.append(f'<ul class="cmdc-eval-scores">{items}</ul>')
        parts.append(self._transcript(row["session_id"]))
        return "".join([*parts, "</div>"])

    def _transcript(self, session_id: Any) -> str:
        if not session_id:
            return ""
        out = []
        for m in sessions.list_messages(session_id, ws=self.ws):
            text = m.content or ""
            if len(text) > _TRANSCRIPT_CHARS:
                text = text[:_TRANSCRIPT_CHARS] + "…"
            out.append(
                f'<div class="cmdc-eval-role">{_esc(m.role.value)}</div><div class="cmdc-eval-msg">{_esc(text)}</div>'
            )
        return "".join(out)

    # -- the static picture ----------------------------------------------------------------------------
    def _snapshot_html(self) -> str:
        """The matrix as a table (the page shown), the open case and the chart."""
        f = self.frame
        rows = {(r["case"], r["model"]): r for _, r in f.iterrows()}
        shown = self._cases()[self.page * self.page_size : (self.page + 1) * self.page_size]
        head = "".join(f"<th>{_esc(m.split('/', 1)[-1])}</th>" for m in self.models)
        body = "".join(
            f"<tr><td><b>{_esc(c)}</b></td>"
            + "".join(
                f'<td class="{(s := _state(rows[(c, m)]) if (c, m) in rows else "pending")}">{_MARKS[s]}</td>'
                for m in self.models
            )
            + "</tr>"
            for c in shown
        )
        table = f'<div class="cmdc-scroll-x"><table class="cmdc-eval-matrix"><tr><th>case</th>{head}</tr>{body}</table></div>'
        return static_html(self, {id(self.grid): table})

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs = []
        super().close()
