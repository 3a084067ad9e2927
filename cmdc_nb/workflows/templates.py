"""Step configs as templates: `{{ input.pr_url }}`, `{{ steps.analyze.output }}`, rendered in a sandbox.

Rendering walks a config (dicts, lists, strings) and renders every string with Jinja2's immutable
sandbox, so a spec can read its inputs and earlier outputs but cannot call methods that change them,
reach Python internals, or read the environment. A string that is exactly one `{{ expression }}` keeps
the expression's native value (`{{ steps.count.output }}` stays an int, a dict stays a dict); anything
else renders to text. An undefined name is an error naming the step and the field, never an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cmdc_nb.errors import WorkflowError

__all__ = ["render", "step_references", "truthy"]

_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


MAX_BUILT = 1_000_000  # items or characters one `*` may build; digits one `**` may reach


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with `*` and `**` bounded: `'a' * 10**9` or `2 ** 10**9` would
    otherwise take the process's memory or time before any limit of the run's applied."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_BUILT:
                    raise jinja2.exceptions.SecurityError(f"'*' would build more than {MAX_BUILT:,} items")
        big = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
        if operator == "**" and big and right * abs(left).bit_length() > MAX_BUILT:
            raise jinja2.exceptions.SecurityError("'**' would build a number too large")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def _env() -> ImmutableSandboxedEnvironment:
    env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def _single_expression(text: str) -> str | None:
    m = _WHOLE.match(text)
    if m is None or "{{" in m.group(1) or "}}" in m.group(1) or "{%" in text:
        return None
    return m.group(1).strip()


def render(value: Any, context: Mapping[str, Any], *, step_id: str, field: str = "config") -> Any:
    """`value` with every string rendered against `context` (`input`, `steps`, `run`)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            expr = _single_expression(value)
            if expr is not None:
                out = _env().compile_expression(expr, undefined_to_none=False)(**context)
                if isinstance(out, jinja2.Undefined):
                    str(out)  # a strict Undefined raises UndefinedError, naming what is missing
                return out
            return _env().from_string(value).render(**context)
        except jinja2.UndefinedError as exc:
            raise WorkflowError(
                f"step {step_id!r}: {field}: {exc.message}", step_id=step_id, error_type="TemplateError"
            ) from None
        except jinja2.TemplateError as exc:
            raise WorkflowError(
                f"step {step_id!r}: {field}: template error: {exc}",
                step_id=step_id,
                error_type="TemplateError",
            ) from None
        except (ArithmeticError, TypeError, ValueError, LookupError, MemoryError, RecursionError) as exc:
            # what an expression itself raises (1/0, the sandbox's range limit, a huge number): the
            # step fails with it, rather than the run being left pending with a database's complaint
            raise WorkflowError(
                f"step {step_id!r}: {field}: {type(exc).__name__}: {str(exc)[:300]}",
                step_id=step_id,
                error_type="TemplateError",
            ) from None
    if isinstance(value, Mapping):
        return {k: render(x, context, step_id=step_id, field=f"{field}.{k}") for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [render(x, context, step_id=step_id, field=f"{field}[{i}]") for i, x in enumerate(value)]
    return value


def truthy(value: Any) -> bool:
    """How a condition's rendered value reads: text "false", "no", "0" and "" are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "none", "null")
    return bool(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for x in value.values():
            yield from _strings(x)
    elif isinstance(value, list | tuple):
        for x in value:
            yield from _strings(x)


def step_references(value: Any) -> tuple[set[str], list[str]]:
    """The step ids a config's templates read (`steps.x…` or `steps['x']…`), and any syntax errors."""
    found: set[str] = set()
    errors: list[str] = []
    for text in _strings(value):
        if "{{" not in text and "{%" not in text:
            continue
        try:
            tree = _env().parse(text)
        except jinja2.TemplateSyntaxError as exc:
            errors.append(f"template syntax error in {text[:60]!r}: {exc.message}")
            continue
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            base = getattr(node, "node", None)
            if not (isinstance(base, nodes.Name) and base.name == "steps"):
                continue
            if isinstance(node, nodes.Getattr):
                found.add(node.attr)
            elif isinstance(node, nodes.Getitem):
                arg = node.arg
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                    found.add(arg.value)
    return found, errors
