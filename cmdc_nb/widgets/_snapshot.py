"""What a widget leaves in the notebook for readers without a kernel: a static HTML picture of what it
shows, beside the live view, in one output.

A widget's output carries three mimetypes: the live view (`application/vnd.jupyter.widget-view+json`),
a `text/html` snapshot and a `text/plain` line. A live JupyterLab draws the view (its widget renderer
outranks HTML); nbconvert, nbviewer and GitHub, which have no widget state for it, draw the snapshot,
as plotly's figures carry their own HTML beside their JSON.

The snapshot follows the widget while nobody watches it live (a notebook run headless by nbclient,
papermill or `nbconvert --execute`): a change republishes the output (`update_display`), at most once
per `SNAPSHOT_S` on the kernel's loop, and whatever changed during a cell is published when the cell
ends, so the saved file holds the last picture. While a front end draws the live view it is left
alone: JupyterLab answers an output update by building the widget's view anew (its scroll, open
details and focus lost), so a `ViewProbe` in the widget says when a view is on screen, and updates wait
until none is. `close()` leaves the final picture, without the live view, in the output.

The picture is the widget's own HTML, read from its widget tree (`static_html`): the same escaped
strings and stylesheet the live view shows (`--jp-*` colours with light fallbacks), never a text box's
content (what a person types stays in the kernel), no buttons; pictures (a DAG, the cost charts) are
inline SVG that draws without JavaScript.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import uuid
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anywidget
import ipywidgets as w

from cmdc_nb.widgets._assets import asset
from cmdc_nb.widgets._common import Refresher
from cmdc_nb.widgets._render import escape

__all__ = ["SNAPSHOT_S", "Snapshot", "ViewProbe", "static_html"]

log = logging.getLogger("cmdc_nb.widgets")

_USED = "used"  # a view known from a person's click, not from its probe (see _snapshot_used)
SNAPSHOT_S = 0.3  # a snapshot is republished at most about three times a second

SNAPSHOT_CSS = """<style>
.cmdc-snapshot .cmdc-snap-note { font-size: 11px; color: var(--jp-ui-font-color2, #57606a); margin-top: 6px; }
.cmdc-snapshot .cmdc-snap-field { font-size: 12px; margin-right: 8px; }
.cmdc-snapshot progress { width: 260px; max-width: 100%; vertical-align: middle; }
.cmdc-snapshot td, .cmdc-snapshot th { text-align: left; }
</style>"""


class ViewProbe(anywidget.AnyWidget):
    """Takes no room; tells the kernel when a front end draws (and stops drawing) the widget it is in."""

    _esm = asset("view_probe.js")  # widgets/view_probe.js

    def __init__(self) -> None:
        super().__init__(layout=w.Layout(display="none"))


def _field(label: Any, value: Any) -> str:
    said = f"{escape(label)} " if label else ""
    return f'<span class="cmdc-snap-field">{said}<b>{escape(value)}</b></span>'


def _box_style(box: Any) -> str:
    """The inline style that lays a box out as the live view does (rows wrap, columns stack)."""
    rules = []
    if isinstance(box, w.HBox):
        rules = ["display:flex", "flex-wrap:wrap", "gap:4px 8px", "align-items:center"]
    elif isinstance(box, w.VBox):
        rules = ["display:flex", "flex-direction:column"]
    for trait in ("justify_content", "align_items"):
        value = getattr(box.layout, trait, None)
        if value:
            rules.append(f"{trait.replace('_', '-')}:{value}")
    return f' style="{escape(";".join(rules))}"' if rules else ""


def static_html(widget: Any, replace: Mapping[int, str] | None = None) -> str:
    """The HTML a widget tree shows: HTML widgets as they are, boxes as divs with their classes, a
    choice as its label, progress as a `<progress>`. Buttons, text boxes, outputs and front-end-only
    widgets are left out, unless `replace` (by `id(widget)`) gives their HTML."""
    swaps = replace or {}

    def walk(x: Any, in_row: bool) -> str:
        if id(x) in swaps:
            return swaps[id(x)]
        layout = getattr(x, "layout", None)
        if layout is not None and (layout.display == "none" or layout.visibility == "hidden"):
            return ""
        if isinstance(x, w.HTML | w.HTMLMath):
            if not x.value:
                return ""
            # in a column, one block (a heading of two spans stays one line); in a row, its own items
            return f'<div class="cmdc-snap-html"{_IN_ROW if in_row else ""}>{x.value}</div>'
        if isinstance(x, w.Label):
            return f"<span>{escape(x.value)}</span>"
        if isinstance(x, w.Box):
            inner = "".join(walk(c, isinstance(x, w.HBox)) for c in x.children)
            classes = escape(" ".join(x._dom_classes))
            return f'<div class="{classes}"{_box_style(x)}>{inner}</div>' if inner else ""
        if isinstance(x, w.Dropdown | w.ToggleButtons | w.RadioButtons | w.Select):
            return _field(x.description, x.label) if x.label is not None else ""
        if isinstance(x, w.DatePicker):
            return _field(x.description, x.value or "—")
        if isinstance(x, w.IntProgress | w.FloatProgress):
            return f'<progress value="{x.value}" max="{x.max}">{x.value}/{x.max}</progress>'
        return ""

    return walk(widget, False)


_IN_ROW = ' style="display:contents"'


class _Shown:
    """One displayed widget's output: its display id, whether the widget changed since the output was
    last published (`dirty`) and since a cell last ended (`since_cell`), and the coalescing of those
    publications on the kernel's loop."""

    def __init__(self, owner: Snapshot) -> None:
        self.owner = owner
        self.display_id = f"cmdc-{uuid.uuid4().hex}"
        self.dirty = self.since_cell = self.frozen = False
        self.refresher = Refresher(self.publish, delay=SNAPSHOT_S)
        _SHOWN.add(self)

    def changed(self) -> None:
        self.dirty = self.since_cell = True
        if not self.owner._snapshot_views:
            self.refresher()

    def publish(self, *, cell_ended: bool = False) -> None:
        """Publish the picture if it changed. When a cell ends, what changed since the last cell ended
        is published again: an update sent between two cells belongs to no running cell, and nbclient,
        which reads only the messages of the cell it runs, drops it."""
        if self.frozen or self.owner._snapshot_views or not (self.since_cell if cell_ended else self.dirty):
            return
        self.dirty = False
        if cell_ended:
            self.since_cell = False
        self._send(self.owner._snapshot_bundle())

    def freeze(self) -> None:
        """The last picture, without the live view (the widget is closing)."""
        bundle = self.owner._snapshot_bundle()
        bundle.pop("application/vnd.jupyter.widget-view+json", None)
        self.frozen = True
        self._send(bundle)

    def _send(self, bundle: dict[str, Any]) -> None:
        from IPython.display import update_display

        try:
            # In no cell's context: ipykernel then sends it as part of the request it serves now (or
            # served last), not of the cell that scheduled this update, which may have ended long ago.
            contextvars.Context().run(update_display, bundle, raw=True, display_id=self.display_id)
        except Exception:  # a picture never breaks the widget (a kernel shutting down, no shell)
            log.debug("could not publish a widget's snapshot", exc_info=True)


_SHOWN: weakref.WeakSet[_Shown] = weakref.WeakSet()
_HOOKED: set[int] = set()  # the shells whose cells publish what changed when they end


def _publish_changed(*_: Any) -> None:
    """After each cell: publish every changed snapshot now, so that a run that ends with this cell
    (nbclient stops the kernel then) saves the last picture, not one from before a pending update."""
    for shown in list(_SHOWN):
        shown.publish(cell_ended=True)


def _hook_cells() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or id(shell) in _HOOKED:
        return
    shell.events.register("post_run_cell", _publish_changed)
    _HOOKED.add(id(shell))


class Snapshot:
    """Mixed into a widget (before `ipywidgets.VBox`): its output carries a static snapshot, kept
    current; see the module docstring. A widget puts `self._view_probe()` among its children, says when
    what it shows changes (`_snapshot_changed()`, or `_snapshot_follow(parts)` once) — cheap: nothing
    happens until it is displayed —, and may draw its own `_snapshot_html()` (escaped)."""

    _snapshot_shown: _Shown | None = None

    if TYPE_CHECKING:  # the widget's own (ipywidgets) attribute
        comm: Any

    @property
    def _snapshot_views(self) -> set[str]:
        views: set[str] | None = self.__dict__.get("_cmdc_views")
        if views is None:
            views = self.__dict__["_cmdc_views"] = set()
        return views

    def _snapshot_html(self) -> str:
        """The widget's picture (escaped HTML); by default its widget tree as `static_html` reads it."""
        return static_html(self)

    def _snapshot_follow(self, *parts: Any) -> None:
        """Call `_snapshot_changed()` whenever one of `parts` changes what it shows (its value, its
        children, a progress bar's bounds)."""
        for part in parts:
            names = [n for n in ("value", "children", "max") if part.has_trait(n)]
            part.observe(lambda _change: self._snapshot_changed(), names=names)

    def _view_probe(self) -> ViewProbe:
        probe: ViewProbe | None = self.__dict__.get("_cmdc_probe")
        if probe is None:
            probe = self.__dict__["_cmdc_probe"] = ViewProbe()
            probe.on_msg(self._snapshot_view)
        return probe

    def _snapshot_used(self) -> None:
        """A person used a live view (a click reached the kernel): one is on screen, even if its probe
        never said so — anywidget gives a model 2 s to start and drops it after, which a busy page can
        miss, and an output update would then rebuild the view under the person's hands."""
        self._snapshot_views.add(_USED)

    def _snapshot_view(self, _probe: Any, content: Any, _buffers: Any = None) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("id"), str):
            return
        views = self._snapshot_views
        if content.get("view") == "shown":
            views.add(content["id"])
        elif content.get("view") == "gone":
            views.discard(content["id"])
            views.discard(_USED)  # the probes report: they say which views are left
            shown = self._snapshot_shown
            if not views and shown is not None and shown.dirty:
                shown.refresher()  # nobody watches live any more: catch the saved picture up

    def _snapshot_changed(self) -> None:
        shown = self._snapshot_shown
        if shown is not None:
            shown.changed()

    def _snapshot_page(self) -> str:
        """The snapshot: the widget's picture in a box that says it is one, and when it was taken."""
        try:
            body = self._snapshot_html()
        except Exception as exc:  # a picture that fails never stops the widget from showing
            log.exception("a widget's snapshot failed")
            body = f'<div class="cmdc-notice">(no snapshot: {escape(type(exc).__name__)})</div>'
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        return (
            # dollars are money here, not TeX: the notebook's MathJax leaves the snapshot alone
            f'<div class="cmdc-snapshot tex2jax_ignore mathjax_ignore" data-cmdc-widget="{type(self).__name__}">'
            f"{SNAPSHOT_CSS}{body}"
            f'<div class="cmdc-snap-note">Snapshot of the live widget, {now} UTC; '
            "run the notebook for the live view.</div></div>"
        )

    def _snapshot_bundle(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": repr(self)}
        if self.comm is not None:  # open: the live view too
            data = dict(w.Widget._repr_mimebundle_(self) or data)
        data["text/html"] = self._snapshot_page()
        return data

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return self._snapshot_bundle()

    def _ipython_display_(self) -> None:
        """Displayed (a cell's last value, or `display(widget)`): one output, under a display id the
        widget keeps, so that later changes update it (see the module docstring)."""
        from IPython.display import display

        if self._snapshot_shown is None:
            self._snapshot_shown = _Shown(self)
        _hook_cells()
        shown = self._snapshot_shown
        shown.dirty = shown.frozen = False
        self._snapshot_handle = display(  # type: ignore[no-untyped-call]
            self._snapshot_bundle(), raw=True, display_id=shown.display_id
        )

    def close(self) -> None:
        shown = self._snapshot_shown
        if shown is not None and not shown.frozen and self.comm is not None:
            try:
                shown.freeze()
            except Exception:  # closing never fails for want of a picture
                log.debug("could not leave a closing widget's snapshot", exc_info=True)
        super().close()  # type: ignore[misc]
