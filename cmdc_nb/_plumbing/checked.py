"""`@checked`: a public function's arguments are held to its type hints before its body runs.

The hints are read once, on the first call (the module is whole by then, so names defined below the
function resolve), and turned into one plain test per parameter; a call then costs a few `isinstance`
checks. What the hints promise is what a caller gets held to:

- `str` is text: a `str`, valid Unicode (no lone surrogate: no database stores one) and free of NUL
  (PostgreSQL refuses it). Bytes are not text.
- `bool` is `True` or `False`; `int` is a whole number that is not a bool and fits 64 bits; `float`
  takes ints and floats but never a bool, NaN or an infinity; `Decimal` must be finite; a
  `datetime` must be timezone-aware.
- `Sequence[X]` is a list or tuple (never a string, which would be split into characters) of X;
  `Mapping[K, V]` is a mapping with K keys; `Literal[...]` one of its values; a class an instance.
  What a mapping or a list of `Any` holds, at any depth, must be storable as JSON: no NaN or
  infinity, no bad text, text keys only.
- A protocol is checked by shape: the value has each attribute and method it declares.
- `Any`, `object` and names only the type checker sees are not checked.

The message names the field and the expected kind, and never holds the value: a secret given in the
wrong place must not be echoed. Range and format checks (lengths, emails, …) stay with each service.
"""

from __future__ import annotations

import builtins
import collections.abc as cabc
import datetime as dt
import functools
import inspect
import math
import os
import sys
import types
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from typing import Any, ParamSpec, TypeVar, cast

from cmdc_nb._plumbing import validate as v
from cmdc_nb.errors import InvalidInputError

__all__ = ["checked"]

P = ParamSpec("P")
R = TypeVar("R")


class _Mismatch(str):
    """A value of another kind altogether (as opposed to the right kind with a bad value)."""


class _Inside(str):
    """A problem with the value under `key` of a mapping: the key names the field, as a condition's
    or a setting's name does."""

    key: str


MISMATCH = _Mismatch("mismatch")
# A test returns None when the value fits, else why not (MISMATCH when it is another kind entirely).
Test = Callable[[Any], str | None]


def checked(fn: Callable[P, R]) -> Callable[P, R]:
    """Hold every call of `fn` to its parameters' type hints (see the module docstring)."""
    params = inspect.signature(fn).parameters
    positional = tuple(
        name for name, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    tests: dict[str, Test] = {}
    ready = False

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        nonlocal ready
        if not ready:
            tests.update(_tests_for(fn))
            ready = True
        for name, value in zip(positional, args, strict=False):
            test = tests.get(name)
            if test is not None and (problem := test(value)) is not None:
                _refuse(name, problem, value, fn)
        for name, value in kwargs.items():
            test = tests.get(name)
            if test is not None and (problem := test(value)) is not None:
                _refuse(name, problem, value, fn)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return await fn(*args, **kwargs)

        return cast(Callable[P, R], acall)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        check(args, kwargs)
        return fn(*args, **kwargs)

    return call


def _refuse(name: str, problem: str, value: Any, fn: Callable[..., Any]) -> typing.NoReturn:
    if isinstance(problem, _Mismatch):
        expected = _describe(_hints(fn)[name])
        problem = f"expected {expected}, got {type(value).__name__}"
    if isinstance(problem, _Inside):
        raise InvalidInputError(f"{problem} (in {name})", field=problem.key[:64])
    raise InvalidInputError(problem, field=name)


class _Unknown:
    """A name the running program cannot see (imported only for the type checker): not checked."""

    def __getattr__(self, name: str) -> _Unknown:
        return self

    def __getitem__(self, item: Any) -> _Unknown:
        return self

    def __or__(self, other: Any) -> _Unknown:
        return self

    __ror__ = __or__


class _Names(dict[str, Any]):
    """A module's names for reading its annotations; builtins next, then anything else is unknown."""

    def __missing__(self, key: str) -> Any:
        return getattr(builtins, key, _Unknown())


@functools.cache
def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    names = _Names(vars(typing))
    names.update(vars(sys.modules[fn.__module__]))  # the module's own names win over typing's
    out: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.annotation is p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = p.annotation
        if isinstance(hint, str):
            try:
                hint = eval(hint, {"__builtins__": __builtins__}, names)
            except Exception:  # an annotation only a type checker can read: leave it unchecked
                hint = Any
        out[name] = hint
    return out


def _tests_for(fn: Callable[..., Any]) -> dict[str, Test]:
    tests = {}
    for name, hint in _hints(fn).items():
        if name == "ws":
            test: Test | None = _workspace
        else:
            test = _test(hint)
        if test is not None:
            tests[name] = test
    return tests


def _workspace(value: Any) -> str | None:
    from cmdc_nb._plumbing.workspace import Workspace

    return None if value is None or isinstance(value, Workspace) else MISMATCH


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return MISMATCH
    return v.text_problem(value)


def _bytes(value: Any) -> str | None:
    return None if isinstance(value, bytes) else MISMATCH


def _moment(value: Any) -> str | None:
    if not isinstance(value, dt.datetime):
        return MISMATCH
    return None if value.tzinfo is not None else "must be timezone-aware (e.g. datetime.now(UTC))"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else MISMATCH


def _integer(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return MISMATCH
    return None if -v.MAX_INT - 1 <= value <= v.MAX_INT else "must fit in 64 bits"


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return MISMATCH
    return v.number_problem(value)


def _decimal(value: Any) -> str | None:
    if not isinstance(value, Decimal):
        return MISMATCH
    return None if value.is_finite() else "must be a finite number"


def _none(value: Any) -> str | None:
    return None if value is None else MISMATCH


_SCALARS: dict[Any, Test] = {
    str: _text,
    bytes: _bytes,
    bool: _flag,
    int: _integer,
    float: _number,
    Decimal: _decimal,
    dt.datetime: _moment,
    type(None): _none,
    None: _none,
}
_SEQUENCES = {list, tuple, cabc.Sequence, cabc.MutableSequence, cabc.Collection, set, frozenset}
_MAPPINGS = {dict, cabc.Mapping, cabc.MutableMapping}


def _test(hint: Any) -> Test | None:
    """A test for `hint`, or None when it checks nothing."""
    if hint is Any or hint is object or isinstance(hint, _Unknown | TypeVar):
        return None
    if (scalar := _SCALARS.get(hint)) is not None:
        return scalar
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [_test(a) for a in args]
        if any(o is None for o in options):
            return None
        return _any_of(cast(list[Test], options))
    if origin is typing.Literal:
        return _one_of(args)
    if origin in _SEQUENCES:
        item = _test(args[0]) if args and (origin is not tuple or args[-1] is Ellipsis) else None
        return _sequence(item or _storable)
    if origin in (cabc.Iterable, cabc.Iterator):
        return _iterable(_test(args[0]) if args else None)
    if origin in _MAPPINGS:
        key = _test(args[0]) if args else None
        return _mapping(key)
    if origin is cabc.Callable or hint is cabc.Callable:
        return _callable
    if origin is os.PathLike:
        return _instance(os.PathLike)
    if isinstance(hint, type):
        if getattr(hint, "_is_protocol", False):
            return _shaped(hint)
        if hint in _MAPPINGS:
            return _mapping(None)
        if hint in _SEQUENCES:
            return _sequence(None)
        return _instance(hint)
    return None


def _any_of(options: list[Test]) -> Test:
    def test(value: Any) -> str | None:
        why: str | None = MISMATCH
        for option in options:
            problem = option(value)
            if problem is None:
                return None
            if not isinstance(problem, _Mismatch):
                why = problem  # the right kind with a bad value: say what is wrong with it
        return why

    return test


def _one_of(allowed: tuple[Any, ...]) -> Test:
    shown = ", ".join(repr(a) for a in allowed)

    def test(value: Any) -> str | None:
        try:
            if value in allowed and type(value) in {type(a) for a in allowed}:
                return None
        except TypeError:
            pass
        return f"must be one of: {shown}"

    return test


def _sequence(item: Test | None) -> Test:
    def test(value: Any) -> str | None:
        if isinstance(value, str | bytes | bytearray | cabc.Mapping) or not isinstance(
            value, list | tuple | set | frozenset
        ):
            return MISMATCH
        if item is not None:
            for i, x in enumerate(value):
                if (problem := item(x)) is not None:
                    what = "of the wrong kind" if isinstance(problem, _Mismatch) else problem
                    return f"item {i} is {type(x).__name__} {what}".replace(" must", ": must")
        return None

    return test


def _iterable(item: Test | None) -> Test:
    every = _sequence(item or _storable)

    def test(value: Any) -> str | None:
        if isinstance(value, str | bytes | bytearray) or not isinstance(value, cabc.Iterable):
            return MISMATCH
        # a list or tuple is checked item by item; a lazy iterable is its consumer's to check
        return every(value) if isinstance(value, list | tuple) else None

    return test


def _mapping(key: Test | None) -> Test:
    def test(value: Any) -> str | None:
        if not isinstance(value, cabc.Mapping):
            return MISMATCH
        for k, x in value.items():
            if key is not None and key(k) is not None:
                return f"has a key of the wrong kind ({type(k).__name__})"
            if (problem := _storable(x)) is not None:
                inside = _Inside(problem)
                inside.key = k if isinstance(k, str) else repr(k)
                return inside
        return None

    return test


def _storable(value: Any, depth: int = 0) -> str | None:
    """What JSON columns cannot hold, anywhere inside `value`: NaN and infinities, text with NUL or a
    lone surrogate, non-text keys. (Other objects are the receiving function's to judge.)"""
    if isinstance(value, str):
        return v.text_problem(value)
    if isinstance(value, float):
        return None if value == value and value not in (math.inf, -math.inf) else "must be a finite number"
    if depth > 100:
        return "is nested too deeply"
    if isinstance(value, cabc.Mapping):
        for k, x in value.items():
            if not isinstance(k, str):
                return f"has a key of the wrong kind ({type(k).__name__})"
            if (problem := v.text_problem(k) or _storable(x, depth + 1)) is not None:
                return problem
    elif isinstance(value, list | tuple):
        for x in value:
            if (problem := _storable(x, depth + 1)) is not None:
                return problem
    return None


def _shaped(protocol: type) -> Test:
    """A structural type: the value has every attribute and method the protocol declares."""
    members = {
        name
        for base in protocol.__mro__
        if getattr(base, "_is_protocol", False) and base is not typing.Protocol
        for name in (*vars(base), *getattr(base, "__annotations__", {}))
        if not name.startswith("_")
    }

    def test(value: Any) -> str | None:
        missing = sorted(m for m in members if not hasattr(value, m))
        return None if not missing else MISMATCH

    return test


def _callable(value: Any) -> str | None:
    return None if callable(value) else MISMATCH


def _instance(cls: type) -> Test:
    def test(value: Any) -> str | None:
        return None if isinstance(value, cls) else MISMATCH

    return test


_NAMES: dict[Any, str] = {
    str: "text",
    bytes: "bytes",
    bool: "True or False",
    int: "a whole number",
    float: "a number",
    Decimal: "a Decimal",
    type(None): "None",
    None: "None",
    uuid.UUID: "a UUID",
    dt.datetime: "a datetime",
    dt.date: "a date",
    dt.timedelta: "a timedelta",
}


def _describe(hint: Any) -> str:
    if hint in _NAMES:
        return _NAMES[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        names = [_describe(a) for a in args if getattr(a, "__name__", "") != "Unset"]
        return " or ".join(dict.fromkeys(names))
    if origin in _SEQUENCES:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin in _MAPPINGS:
        return "a mapping"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return f"a {hint.__name__}"
    return getattr(hint, "__name__", None) or str(hint)
