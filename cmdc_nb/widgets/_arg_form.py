"""ArgForm: a tool call's arguments as a form built from the tool's JSON schema, to edit before approving.

One field per argument, by its schema: text (a text area for long or multi-line text), a whole number, a
number, a checkbox, a drop-down for an enum, and a JSON box for lists, objects and anything else. Labels
are the argument names (`*` when required) with the schema's description under them; a "JSON" toggle
edits the whole call as one JSON object instead. `collect()` returns the edited arguments once they pass
the schema (checked with jsonschema); otherwise it says what is wrong, one sentence next to each field,
and returns None.

A field left as it was gives back exactly what the model proposed (a `null`, an int in a number field,
a missing optional argument), so an untouched form changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ipywidgets as w

from cmdc_nb._plumbing.arguments import check_args, sentence
from cmdc_nb.widgets._render import escape

__all__ = ["ArgForm", "check_args", "sentence"]

_MISSING: Any = object()  # an argument that is not sent (the tool's default applies)


# Readable in Light and Dark: text in the theme's own colours; the problem's red is the dark end of the
# scale on a light theme and flips to the light end on a dark one, which holds ≥ 4.5:1 even on a waiting
# tool card's --jp-layout-color2. Every width is relative, so the form fits a 760 px card without a
# horizontal scroll bar.
_CSS = """<style>
.cmdc-argform { width: 100%; max-width: 100%; box-sizing: border-box; padding: 4px 0; }
.cmdc-argform * { box-sizing: border-box; }
.cmdc-argform .cmdc-arghead { flex-wrap: wrap; align-items: center; gap: 4px 8px; }
.cmdc-argform .cmdc-argfield { width: 100%; margin: 3px 0; padding-left: 6px; border-left: 3px solid transparent; }
.cmdc-argform .cmdc-argfield.cmdc-invalid { border-left-color: var(--jp-error-color1, #d32f2f); }
.cmdc-argform .cmdc-arglabel { font-size: 12px; color: var(--jp-ui-font-color1, #1f2328); overflow-wrap: anywhere; }
.cmdc-argform .cmdc-arglabel b { font-family: var(--jp-code-font-family, monospace); }
.cmdc-argform .cmdc-arghelp { font-size: 11px; color: var(--jp-ui-font-color1, #1f2328); opacity: 0.85; }
.cmdc-argform .cmdc-argproblem { font-size: 12px; font-weight: 600; color: var(--jp-error-color0, #b71c1c); overflow-wrap: anywhere; }
body[data-jp-theme-light="false"] .cmdc-argform .cmdc-argproblem { color: var(--jp-error-color3, #ffcdd2); }
/* full width without ipywidgets' side margins, which would add 4 px past the card's edge */
.cmdc-argform .widget-text, .cmdc-argform .widget-textarea, .cmdc-argform .widget-dropdown { width: 100%; max-width: 100%; margin-left: 0; margin-right: 0; }
.cmdc-argform .cmdc-argjson textarea { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
</style>"""


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list | tuple) else "object"


def _effective(prop: Any, root: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """An argument's schema with local `$ref`s followed and an optional (`anyOf [X, null]`) unwrapped to
    X; and whether null is allowed."""
    prop = dict(prop) if isinstance(prop, Mapping) else {}
    for _ in range(8):  # a $ref may lead to another; a cycle stops here
        ref = prop.pop("$ref", None)
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, Mapping) else {}
            prop = {**dict(target), **prop}
        elif isinstance(prop.get("allOf"), list) and len(prop["allOf"]) == 1:
            prop = {**dict(prop.pop("allOf")[0]), **prop}
        else:
            break
    nullable = False
    branches = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(branches, list):
        real = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
        nullable = len(real) < len(branches)
        if len(real) == 1:
            inner, _ = _effective(real[0], root)
            rest = {k: v for k, v in prop.items() if k not in ("anyOf", "oneOf")}
            prop = {**inner, **rest}
    types = prop.get("type")
    if isinstance(types, list):
        nullable = nullable or "null" in types
        real_types = [t for t in types if t != "null"]
        prop["type"] = real_types[0] if len(real_types) == 1 else real_types
    return prop, nullable


def _kind(prop: Mapping[str, Any], value: Any, present: bool) -> str:
    """Which widget shows this argument: the schema's type, unless the proposed value does not fit it
    (the model sent text for a number): then a JSON box shows it as it is, and the check says why."""
    if "enum" in prop or "const" in prop:
        return "enum"
    if present and value is None:
        return "json"
    declared = prop.get("type")
    kind = declared if isinstance(declared, str) else (_type_of(value) if present else None)
    if present and not (_type_of(value) == kind or (kind == "number" and _type_of(value) == "integer")):
        return "json"
    if kind == "string":
        return "textarea" if present and ("\n" in value or len(value) > 60) else "text"
    if kind in ("integer", "number") and (present or _type_of(prop.get("default")) in ("integer", "number")):
        return "int" if kind == "integer" else "float"
    return "bool" if kind == "boolean" else "json"


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


class _Field:
    """One argument: its label, its widget, and the sentence that says what is wrong with it."""

    def __init__(
        self, name: str, prop: Mapping[str, Any], nullable: bool, required: bool, value: Any
    ) -> None:
        self.name, self.present, self.value = name, value is not _MISSING, value
        self.kind = _kind(prop, value, self.present)
        initial = value if self.present else prop.get("default", prop.get("const"))
        wide = w.Layout(width="100%", max_width="100%")
        self.choices: list[Any] = []
        if self.kind == "enum":
            self.choices = list(prop.get("enum", [prop.get("const")]))
            if nullable and None not in self.choices:
                self.choices.append(None)
            if self.present and value not in self.choices:
                self.choices.append(value)  # shown as proposed; the check says it is not allowed
            if not self.present:
                self.choices.insert(0, _MISSING)
            at = self.choices.index(value) if self.present else 0
            labels = ["(not set)" if c is _MISSING else _dump(c) for c in self.choices]
            self.widget: w.Widget = w.Dropdown(
                options=list(zip(labels, range(len(labels)), strict=True)), value=at, layout=wide
            )
        elif self.kind in ("text", "textarea"):
            text = "" if initial is None else str(initial)
            if self.kind == "text":
                self.widget = w.Text(value=text, placeholder="" if self.present else "not set", layout=wide)
            else:
                rows = min(10, text.count("\n") + 2 + len(text) // 90)
                self.widget = w.Textarea(value=text, rows=rows, layout=wide)
        elif self.kind == "int":
            self.widget = w.IntText(value=int(initial or 0), layout=wide)
        elif self.kind == "float":
            self.widget = w.FloatText(value=float(initial or 0), layout=wide)
        elif self.kind == "bool":
            self.widget = w.Checkbox(
                value=bool(initial), indent=False, description="", layout=w.Layout(width="auto")
            )
        else:
            text = _dump(value) if self.present else ""
            rows = min(10, text.count("\n") + 2)
            self.widget = w.Textarea(value=text, rows=rows, placeholder="JSON (not set)", layout=wide)
            self.widget.add_class("cmdc-argjson")
        self.shown = self.widget.value
        about = str(prop.get("description") or "")
        self.widget.tooltip = about or None
        mark = ' <abbr title="required">*</abbr>' if required else ""
        help_text = f'<div class="cmdc-arghelp">{escape(about)}</div>' if about else ""
        label = w.HTML(
            f'<div class="cmdc-arglabel" title="{escape(about)}"><b>{escape(name)}</b>{mark}{help_text}</div>'
        )
        self.problem = w.HTML()
        self.box = w.VBox([label, self.widget, self.problem], layout=w.Layout(width="100%"))
        self.box.add_class("cmdc-argfield")

    def read(self) -> Any:
        """The argument as edited (`_MISSING`: not sent); ValueError says why the text is not a value."""
        current = self.widget.value
        if current == self.shown:  # untouched: exactly what was proposed, or nothing if nothing was
            return self.value if self.present else _MISSING
        if self.kind == "enum":
            return self.choices[current]
        if self.kind == "json":
            if not current.strip():
                return _MISSING
            try:
                return json.loads(current)
            except ValueError as exc:
                raise ValueError(f"is not valid JSON ({exc})") from None
        return current

    def say(self, problem: str | None) -> None:
        self.problem.value = (
            f'<div class="cmdc-argproblem">{escape(sentence(self.name, problem))}</div>' if problem else ""
        )
        (self.box.add_class if problem else self.box.remove_class)("cmdc-invalid")


class ArgForm:
    """The form for `args` under the tool's parameters `schema` (a JSON schema of an object; without one,
    the fields follow the proposed values' own types and nothing is checked). `box` is the widget."""

    def __init__(self, args: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> None:
        self.schema = dict(schema) if isinstance(schema, Mapping) else None
        self.problems: dict[str, str] = {}
        self.fields: dict[str, _Field] = {}
        self.json_toggle = w.ToggleButton(
            description="JSON", icon="code", tooltip="Edit all the arguments as one JSON object",
            layout=w.Layout(width="auto"),
        )  # fmt: skip
        self.raw = w.Textarea(layout=w.Layout(width="100%", height="160px", display="none"))
        self.raw.add_class("cmdc-argjson")
        self.message = w.HTML()
        self.fields_box = w.VBox([], layout=w.Layout(width="100%"))
        self._build(args)
        note = "Arguments" + (" · <abbr title='required'>*</abbr> required" if self._required else "")
        head = w.HBox([w.HTML(f'<span class="cmdc-arglabel">{note}</span>'), self.json_toggle])
        head.add_class("cmdc-arghead")
        self.box = w.VBox(
            [w.HTML(_CSS), head, self.fields_box, self.raw, self.message], layout=w.Layout(width="100%")
        )
        self.box.add_class("cmdc-argform")
        self._switching = False
        self.json_toggle.observe(self._toggled, names="value")

    def __repr__(self) -> str:
        return f"<ArgForm fields={list(self.fields)} json={self.json_toggle.value}>"

    def _build(self, args: Mapping[str, Any]) -> None:
        schema = self.schema or {}
        found = schema.get("properties")
        props: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        self._required = [str(n) for n in schema.get("required") or []]
        names = [*props, *(n for n in args if n not in props)]
        self.fields = {}
        for name in names:
            prop, nullable = _effective(props.get(name, {}), schema)
            value = args.get(name, _MISSING)
            self.fields[name] = _Field(name, prop, nullable, name in self._required, value)
        self.fields_box.children = [f.box for f in self.fields.values()]

    def _read_fields(self) -> tuple[dict[str, Any], dict[str, str]]:
        values: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for name, f in self.fields.items():
            try:
                value = f.read()
            except ValueError as exc:
                problems[name] = str(exc)
                continue
            if value is not _MISSING:
                values[name] = value
        return values, problems

    def _read_raw(self) -> tuple[dict[str, Any], dict[str, str]]:
        try:
            value = json.loads(self.raw.value or "{}")
        except ValueError as exc:
            return {}, {"": f"The arguments are not valid JSON ({exc})."}
        if not isinstance(value, dict):
            return {}, check_args(value, None)
        return value, {}

    def collect(self) -> dict[str, Any] | None:
        """The edited arguments if they pass the schema; else None, each problem said next to its field
        (in the JSON view, under the box) and kept in `problems`."""
        values, problems = self._read_raw() if self.json_toggle.value else self._read_fields()
        if not problems:
            problems = check_args(values, self.schema)
        self._show(problems)
        return None if problems else values

    def _show(self, problems: dict[str, str]) -> None:
        self.problems = problems
        raw = bool(self.json_toggle.value)
        for name, f in self.fields.items():
            f.say(None if raw else problems.get(name))
        loose = [sentence(n, p) for n, p in problems.items() if raw or n not in self.fields]
        self.message.value = "".join(f'<div class="cmdc-argproblem">{escape(s)}</div>' for s in loose)

    def _toggled(self, change: Mapping[str, Any]) -> None:
        """Fields → JSON carries the edits over; JSON → fields rebuilds them from the JSON. Either way,
        text that is not a value keeps the view where it is and says why."""
        if self._switching:
            return
        to_raw = bool(change["new"])
        values, problems = self._read_fields() if to_raw else self._read_raw()
        if problems:
            self._switching = True
            try:
                self.json_toggle.value = not to_raw
            finally:
                self._switching = False
        self._show(problems)
        if problems:
            return
        if to_raw:
            self.raw.value = _dump(values)
        else:
            self._build(values)
        self.fields_box.layout.display = "none" if to_raw else None
        self.raw.layout.display = None if to_raw else "none"
