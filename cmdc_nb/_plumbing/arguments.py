"""A tool call's arguments checked against the tool's JSON schema (jsonschema), said as sentences a person
reads: "count must be a whole number". One checker for every place arguments are edited before a call
runs: the widgets' forms, the approval services and the kernel's `approve(args=…)`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cmdc_nb.errors import InvalidInputError

__all__ = ["check_args", "ensure_args", "sentence"]

_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def sentence(name: str, problem: str) -> str:
    """`problem` (from `check_args`) said of the argument `name`: 'count must be a whole number, …'."""
    if not name:
        return problem
    return f"{name}{problem}" if problem.startswith("[") else f"{name} {problem}"


def _where(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _problem(err: Any, echo: bool) -> str:
    """What a jsonschema error says, as the end of a sentence about the argument (with the value given,
    when `echo`)."""
    where = _where(list(err.absolute_path)[1:])
    lead = f"{where} " if where else ""
    expected = err.validator_value
    got = f", not {json.dumps(err.instance, default=str)[:60]}" if echo else ""
    branches = err.context or []
    if err.validator in ("anyOf", "oneOf") and branches and all(b.validator == "type" for b in branches):
        expected = [b.validator_value for b in branches]  # an optional number: "a whole number or null"
        return f"{lead}must be {' or '.join(_TYPE_WORDS.get(str(n), str(n)) for n in expected)}{got}"
    match err.validator:
        case "type":
            names = [str(n) for n in (expected if isinstance(expected, list) else [expected])]
            return f"{lead}must be {' or '.join(_TYPE_WORDS.get(n, n) for n in names)}{got}"
        case "enum":
            return f"{lead}must be one of {', '.join(json.dumps(x) for x in expected)}{got}"
        case "const":
            return f"{lead}must be {json.dumps(expected)}"
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}
            return f"{lead}must be {bound.get(err.validator, 'less than')} {expected}{got}"
        case "minLength" | "maxLength":
            return f"{lead}must have {'at least' if err.validator == 'minLength' else 'at most'} {expected} characters"
    return f"{lead}is not allowed" + (f": {err.message}" if echo else "")


def check_args(args: Any, schema: Mapping[str, Any] | None, *, echo: bool = True) -> dict[str, str]:
    """What is wrong with `args` under the tool's parameters `schema`: argument name → the end of one
    sentence (`sentence(name, problem)` says it whole); "" for the call as a whole. Empty: all is well. With
    `echo=False` no sentence repeats a value given (an error raised to a caller may be logged, and an
    argument may be a secret).

    >>> check_args({"count": "many"}, {"type": "object", "properties": {"count": {"type": "integer"}}})
    {'count': 'must be a whole number, not "many"'}
    """
    if not isinstance(args, Mapping):
        return {"": 'The arguments must be one JSON object, such as {"name": "value"}.'}
    if not schema:
        return {}
    import jsonschema

    try:
        checker = jsonschema.validators.validator_for(schema)
        checker.check_schema(schema)
    except jsonschema.SchemaError:
        return {}  # a tool's malformed schema cannot judge its arguments (the tool still checks them)
    problems: dict[str, str] = {}
    for err in sorted(checker(schema).iter_errors(dict(args)), key=jsonschema.exceptions.relevance):
        if err.validator == "required" and not err.absolute_path:
            for name in err.validator_value:
                if name not in args:
                    problems.setdefault(name, "is required")
        elif err.validator == "additionalProperties" and not err.absolute_path:
            known = schema.get("properties") or {}
            for name in args:
                if name not in known:
                    problems.setdefault(name, "is not an argument of this tool")
        elif err.absolute_path:
            plain = err.validator in ("anyOf", "oneOf") and all(
                b.validator == "type" for b in err.context or []
            )
            deepest = err if plain else jsonschema.exceptions.best_match([err]) or err
            problems.setdefault(str(err.absolute_path[0]), _problem(deepest, echo))
        else:
            problems.setdefault("", "The arguments are not allowed" + (f": {err.message}." if echo else "."))
    return problems


def ensure_args(args: Any, schema: Mapping[str, Any] | None, *, field: str = "input") -> None:
    """Raise InvalidInputError when `args` do not pass the tool's parameters `schema`: the first problem,
    as a sentence naming the argument, without the value given."""
    for name, problem in check_args(args, schema, echo=False).items():
        refused = InvalidInputError(sentence(name, problem) if name else problem)
        refused.field = f"{field}.{name}" if name else field  # the sentence names the argument already
        raise refused
