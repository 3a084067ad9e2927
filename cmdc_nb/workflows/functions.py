"""Python step functions: registered by name, or found by their import path (`module:qualname`), so a
worker process can find the function a spec names."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import InvalidInputError, WorkflowSpecError

__all__ = ["function_ref", "register_step_function", "resolve_function", "step_function"]

_functions: dict[str, Callable[..., Any]] = {}


@checked
@checked
def register_step_function(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """Make `fn` callable from specs as `function: <name>`. Usable as a decorator.

    Workers find a function again by this name or by its import path (`module:qualname`); register the
    ones defined where no other process can import them, and import that module in the worker too."""

    def add(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise InvalidInputError("must be callable", field="fn")
        _functions[name] = f
        return f

    return add(fn) if fn is not None else add


step_function = register_step_function


def _import_path(fn: Callable[..., Any]) -> str | None:
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        return None
    try:
        found = resolve_function(f"{module}:{qualname}")
    except InvalidInputError:
        return None
    return f"{module}:{qualname}" if found is fn or getattr(found, "__wrapped__", None) is fn else None


def function_ref(fn: Any, where: str) -> str:
    """The name a spec stores for a python step's function."""
    if isinstance(fn, str):
        return fn
    for name, f in _functions.items():
        if f is fn:
            return name
    path = _import_path(fn) if callable(fn) else None
    if path is None:
        raise WorkflowSpecError(
            [
                f"{where}: {getattr(fn, '__qualname__', fn)!r} cannot be found again by name; define it at "
                "module level or register it with cmdc_nb.workflows.register_step_function(name, fn)"
            ]
        )
    return path


def resolve_function(ref: str) -> Callable[..., Any]:
    """A registered name, or `module:qualname` / `module.function`."""
    if ref in _functions:
        return _functions[ref]
    module_name, sep, qualname = ref.partition(":")
    if not sep:
        module_name, _, qualname = ref.rpartition(".")
    if not module_name or not qualname:
        raise InvalidInputError(
            f"{ref!r} is neither a registered step function nor 'module:function'", field="function"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot find {ref!r}: {exc}", field="function") from None
    if not callable(obj):
        raise InvalidInputError(f"{ref!r} is not callable", field="function")
    return obj  # type: ignore[no-any-return]
