"""Tools: typed Python functions the model may call.

>>> @tool
... def add(a: int, b: int) -> int:
...     '''Add two integers.
...
...     Args:
...         a: the first addend
...         b: the second addend
...     '''
...     return a + b
>>> add.name, sorted(add.parameters["properties"])
('add', ['a', 'b'])

The JSON schema comes from the signature (through pydantic) and the docstring (Google `Args:` or Sphinx
`:param x:` lines). Arguments are validated and coerced before the function runs; bad ones come back to
the model as an error result it can correct. Sync functions run in a worker thread so the notebook's
event loop never blocks; a parameter annotated `ToolContext` receives the call's context.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints, overload

from cmdc_nb.errors import InvalidInputError

if TYPE_CHECKING:
    import pydantic

__all__ = ["Tool", "ToolContext", "ToolError", "ToolResult", "as_tool", "tool"]

APPROVAL_CLASSES = ("none", "low", "medium", "high", "critical")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class ToolError(Exception):
    """Raise from a tool to return an error result to the model (no traceback, just the message)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call produced. `content` goes back to the model; `is_error` marks a failure."""

    content: str
    is_error: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: Any) -> ToolResult:
        if isinstance(value, ToolResult):
            return value
        if value is None:
            return cls("")
        if isinstance(value, str):
            return cls(value)
        try:
            return cls(json.dumps(value, ensure_ascii=False, default=str))
        except (TypeError, ValueError):
            return cls(str(value))


@dataclass
class ToolContext:
    """Handed to tools that ask for it (a parameter annotated `ToolContext`) and to plugins."""

    agent_id: str
    session_id: str | None
    working_dir: str
    user_data: Mapping[str, Any]
    turn: int = 0
    call_id: str | None = None
    tool_name: str | None = None
    model: str = ""
    total_tokens: int = 0
    cost_usd: Any = None
    last_assistant_reply: str | None = None
    emit: Callable[[str, Any], None] = field(default=lambda name, payload: None, repr=False)
    ask_user: Callable[..., Awaitable[str]] | None = field(default=None, repr=False)
    sandbox: Any = field(default=None, repr=False)  # where file and command tools act (toolkit.Sandbox)
    agent: Any = field(default=None, repr=False)  # the kernel Agent (for tools such as task and compact)


@dataclass(frozen=True)
class Tool:
    """A tool the model may call. Build one with `@tool` (or `Tool.from_function`)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Any] = field(repr=False)
    context_param: str | None = None
    # a pydantic model class; typed loosely so `typing.get_type_hints(Tool)` resolves without pydantic
    # imported (it comes with the first tool made)
    model: type[Any] | None = field(default=None, repr=False)
    timeout_s: float | None = 120.0
    retries: int | None = None  # None: the agent's `tool_retries`
    approval_class: str = "none"  # anything above "none" waits for a human (or a rule) to approve
    interrupt_immune: bool = False
    side_effects: tuple[str, ...] = ()

    @property
    def requires_approval(self) -> bool:
        return self.approval_class != "none"

    def schema(self) -> dict[str, Any]:
        """The OpenAI / litellm tool definition."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def policy(self) -> dict[str, Any]:
        return {"approval_class": self.approval_class, "side_effects": list(self.side_effects)}

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments checked and coerced against the signature; ToolError says what is wrong."""
        if self.model is None:
            return dict(args)
        import pydantic  # imported already: it made `model`

        try:
            parsed = self.model.model_validate(dict(args))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    async def invoke(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate, run (sync functions in a thread), and wrap the return value."""
        kwargs = self.validate(args)
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        if inspect.iscoroutinefunction(self.fn):
            value = await self.fn(**kwargs)
        else:
            value = await asyncio.to_thread(self.fn, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        return ToolResult.of(value)

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = 120.0,
        retries: int | None = None,
        approval_class: str = "none",
        requires_approval: bool | None = None,
        interrupt_immune: bool = False,
        side_effects: tuple[str, ...] = (),
    ) -> Tool:
        tool_name = name or fn.__name__
        if not _NAME.match(tool_name):
            raise InvalidInputError(
                "letters, digits, _ and - only, starting with a letter or _ (at most 64)", field="name"
            )
        if requires_approval is not None:
            approval_class = "medium" if requires_approval and approval_class == "none" else approval_class
            approval_class = "none" if not requires_approval else approval_class
        if approval_class not in APPROVAL_CLASSES:
            raise InvalidInputError(
                f"{approval_class!r} is not one of: {', '.join(APPROVAL_CLASSES)}", field="approval_class"
            )
        if timeout_s is not None and (
            isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0
        ):
            raise InvalidInputError("must be a positive number of seconds, or None", field="timeout_s")
        summary, param_docs = _parse_doc(inspect.getdoc(fn) or "")
        model, context_param = _args_model(fn, tool_name, param_docs)
        params = model.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        params.setdefault("properties", {})
        return cls(
            name=tool_name,
            description=description or summary or tool_name,
            parameters=params,
            fn=fn,
            context_param=context_param,
            model=model,
            timeout_s=timeout_s,
            retries=retries,
            approval_class=approval_class,
            interrupt_immune=interrupt_immune,
            side_effects=tuple(side_effects),
        )


def _parse_doc(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (text before any section) and parameter descriptions (Google or Sphinx style)."""
    params: dict[str, str] = {}
    for m in re.finditer(r"^\s*:param\s+(?:\w+\s+)?(\w+):\s*(.+)$", doc, re.M):
        params[m.group(1)] = m.group(2).strip()
    section = re.search(r"^(?:Args|Arguments|Parameters):\s*$(.*?)(?=^\S|\Z)", doc, re.M | re.S)
    if section:
        current = None
        for line in section.group(1).splitlines():
            item = re.match(r"^\s+(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if item:
                current = item.group(1)
                params[current] = item.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    summary_lines = []
    for line in doc.splitlines():
        if re.match(
            r"^(Args|Arguments|Parameters|Returns|Raises|Example|Examples):\s*$", line
        ) or line.lstrip().startswith(":param"):
            break
        summary_lines.append(line)
    return "\n".join(summary_lines).strip(), params


def _args_model(
    fn: Callable[..., Any], name: str, docs: Mapping[str, str]
) -> tuple[type[pydantic.BaseModel], str | None]:
    import pydantic  # ≈20 ms, when the first tool is made: a process with none never imports it

    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    context_param = None
    for pname, p in inspect.signature(fn).parameters.items():
        annotation = hints.get(pname, p.annotation)
        if annotation is ToolContext:
            context_param = pname
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidInputError(
                f"a tool cannot take *{pname} or **{pname}: name each argument", field=name
            )
        annotation = Any if annotation is inspect.Parameter.empty else annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[pname] = (annotation, pydantic.Field(default, description=docs.get(pname)))
    model = pydantic.create_model(f"{name}_args", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    return model, context_param


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = 120.0,
    retries: int | None = None,
    approval_class: str = "none",
    requires_approval: bool | None = None,
    interrupt_immune: bool = False,
    side_effects: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None, /, **options: Any
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool of a typed function: `@tool` or `@tool(requires_approval=True, timeout_s=10)`."""
    if fn is not None:
        return Tool.from_function(fn, **options)
    return lambda f: Tool.from_function(f, **options)


def as_tool(value: Tool | Callable[..., Any]) -> Tool:
    """A Tool as is; a plain function made into one."""
    if isinstance(value, Tool):
        return value
    if callable(value):
        return Tool.from_function(value)
    raise InvalidInputError(f"expected a Tool or a function, got {type(value).__name__}", field="tools")
