"""How auto-approval rules match an approval item: paths, commands, risk levels, plain values, regexes.

Everything here is pure and conservative: when a value cannot be understood exactly, it does not match,
and the item falls through to a human.

Paths (`path_pattern`) are matched segment by segment against the normalised, symlink-resolved path:

>>> path_matches("/srv/app/**", "/srv/app/src/../README.md")
True
>>> path_matches("/srv/app/*", "/srv/app/src/main.py")      # `*` never crosses `/`
False
>>> path_matches("/srv/app/**", "/srv/app/../etc/passwd")   # `..` cannot escape
False

Commands (`command_pattern`) are matched against the argument vector the shell would build, and any
command that uses the shell's own features (`;`, `&&`, `|`, redirections, `$(…)`, backticks, globbing,
newlines) is never matched, whatever the pattern:

>>> command_matches("git status", "git status")
True
>>> command_matches("git*", "git; rm -rf /")
False
>>> command_matches("git log **", "git log -c core.pager=sh")   # options must be spelled out
False
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.enums import RiskLevel

__all__ = [
    "CompiledConditions",
    "command_matches",
    "compile_conditions",
    "normalise_path",
    "path_matches",
    "split_command",
]

# Keys that name a path or a command in a tool's input, in the order they are looked up.
PATH_KEYS = ("path", "file_path", "filename", "file", "target")
COMMAND_KEYS = ("command", "cmd", "argv")
MAX_REGEX_LEN = 500
MAX_SUBJECT_LEN = 10_000


# --- paths ------------------------------------------------------------------------------------------


@checked
def normalise_path(path: object, *, cwd: object = None, resolve: bool = True) -> str | None:
    """The absolute, normalised (and, with `resolve`, symlink-free) form of `path`, or None.

    A relative path is joined to `cwd` when that is absolute; a relative path with no usable `cwd`
    stays relative, normalised, and is None if it climbs out (`../x`).
    """
    if not isinstance(path, str) or not path or "\x00" in path:
        return None
    if not path.startswith("/"):
        if isinstance(cwd, str) and cwd.startswith("/") and "\x00" not in cwd:
            path = f"{cwd}/{path}"
        else:
            rel = posixpath.normpath(path)
            return None if rel == ".." or rel.startswith("../") else rel
    path = "/" + path.lstrip("/")
    # realpath resolves `..` after following symlinks, which is the order the kernel uses.
    return os.path.realpath(path) if resolve else posixpath.normpath(path)


@dataclass(frozen=True)
class _PathPattern:
    absolute: bool
    literal_prefix: str  # the segments before the first wildcard
    rest: tuple[str, ...]  # the remaining segments, wildcards and all


def _has_magic(segment: str) -> bool:
    return any(c in segment for c in "*?[")


@lru_cache(maxsize=1024)
def _parse_path_pattern(pattern: str) -> _PathPattern:
    if not isinstance(pattern, str) or not pattern.strip() or "\x00" in pattern:
        raise InvalidInputError("must be a non-empty path pattern", field="path_pattern")
    absolute = pattern.startswith("/")
    segments = [s for s in pattern.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise InvalidInputError(f"{pattern!r}: '..' is not allowed in a path pattern", field="path_pattern")
    if not segments:
        raise InvalidInputError(f"{pattern!r} names no path", field="path_pattern")
    first_magic = next((i for i, s in enumerate(segments) if _has_magic(s)), len(segments))
    prefix = "/".join(segments[:first_magic])
    return _PathPattern(absolute, ("/" + prefix) if absolute else prefix, tuple(segments[first_magic:]))


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            while i + 1 < len(segment) and segment[i + 1] == "*":
                i += 1  # `**` inside a segment is just `*`: crossing `/` must be explicit
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = segment[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                body = body.replace("\\", "\\\\")
                out.append(f"(?!/)[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def _rest_regex(rest: tuple[str, ...]) -> re.Pattern[str]:
    """A regex for the part of the path below the literal prefix (which is compared separately)."""
    seg = "[^/]+"
    parts: list[str] = []
    for i, s in enumerate(rest):
        last = i == len(rest) - 1
        if s == "**":
            # In the middle `**` is zero or more whole segments; at the end, one or more (the contents
            # of a directory, not the directory itself).
            parts.append(f"(?:/{seg})+" if last else f"(?:/{seg})*")
        else:
            parts.append("/" + _segment_regex(s))
    return re.compile("".join(parts))


@checked
def path_matches(pattern: str, path: object, *, cwd: object = None) -> bool:
    """Whether `path` (resolved against `cwd`, normalised, symlinks followed) matches `pattern`."""
    pat = _parse_path_pattern(pattern)
    resolved = normalise_path(path, cwd=cwd)
    if resolved is None or resolved.startswith("/") != pat.absolute:
        return False
    prefix = pat.literal_prefix
    if pat.absolute:
        prefix = os.path.realpath(prefix) if prefix != "/" else "/"
    if not pat.rest:
        return resolved == prefix
    if prefix in ("/", ""):
        below = resolved if resolved.startswith("/") else "/" + resolved
    elif resolved.startswith(prefix + "/"):
        below = resolved[len(prefix) :]
    else:
        return False
    return _rest_regex(pat.rest).fullmatch(below) is not None


# --- commands ---------------------------------------------------------------------------------------

# Outside quotes, these make the shell do something other than run one program with literal arguments.
_SHELL_SPECIAL = frozenset(";&|<>()`$\n\r{}*?[]!#~")


@checked
def split_command(command: object) -> list[str] | None:
    """The argument vector `sh -c command` would run, or None if the shell would do more than that.

    A list is taken as an argument vector already (nothing is re-parsed). For a string: quotes and
    backslashes are honoured; operators, redirections, substitutions, expansions, globs, comments
    and newlines outside single quotes make it None.
    """
    if isinstance(command, list | tuple):
        if command and all(isinstance(a, str) and "\x00" not in a for a in command):
            return list(command)
        return None
    if not isinstance(command, str) or "\x00" in command or len(command) > MAX_SUBJECT_LEN:
        return None
    argv: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(command)
    while i < n:
        c = command[i]
        if c in " \t":
            if in_word:
                argv.append("".join(word))
                word, in_word = [], False
        elif c == "\\":
            if i + 1 >= n or command[i + 1] in "\n\r":
                return None
            word.append(command[i + 1])
            in_word = True
            i += 1
        elif c == "'":
            end = command.find("'", i + 1)
            if end == -1:
                return None
            word.append(command[i + 1 : end])
            in_word = True
            i = end
        elif c == '"':
            i += 1
            while i < n and command[i] != '"':
                d = command[i]
                if d in "$`":
                    return None  # expansion happens inside double quotes
                if d == "\\" and i + 1 < n and command[i + 1] in '$`"\\':
                    i += 1
                    d = command[i]
                elif d == "\\" and i + 1 < n and command[i + 1] in "\n\r":
                    return None
                word.append(d)
                i += 1
            if i >= n:
                return None
            in_word = True
        elif c in _SHELL_SPECIAL:
            return None
        else:
            word.append(c)
            in_word = True
        i += 1
    if in_word:
        argv.append("".join(word))
    return argv or None


def _token_is_wild(token: str) -> bool:
    return any(c in token for c in "*?[")


def _arg_matches(token: str, arg: str) -> bool:
    if not _token_is_wild(token):
        return token == arg
    # A wildcard never admits an option it does not spell (`git log *` must not admit `--output=…`),
    # nor an argument that climbs out of a directory.
    if arg.startswith("-") and not token.startswith("-"):
        return False
    if ".." in arg.split("/"):
        return False
    return fnmatch.fnmatchcase(arg, token)


@lru_cache(maxsize=1024)
def _pattern_tokens(pattern: str) -> tuple[str, ...]:
    try:
        tokens = tuple(shlex.split(pattern))
    except ValueError as exc:
        raise InvalidInputError(f"{pattern!r}: {exc}", field="command_pattern") from None
    if not tokens:
        raise InvalidInputError("must name a command", field="command_pattern")
    if tokens[0] == "**":
        raise InvalidInputError(f"{pattern!r}: the program name must be spelled", field="command_pattern")
    return tokens


def _argv_matches(tokens: Sequence[str], argv: Sequence[str]) -> bool:
    if not tokens:
        return not argv
    head, rest = tokens[0], tokens[1:]
    if head == "**":
        # zero or more further arguments, none of them an option
        for k in range(len(argv) + 1):
            if k and argv[k - 1].startswith("-"):
                return False
            if k and ".." in argv[k - 1].split("/"):
                return False
            if _argv_matches(rest, argv[k:]):
                return True
        return False
    return bool(argv) and _arg_matches(head, argv[0]) and _argv_matches(rest, argv[1:])


@checked
def command_matches(pattern: str, command: object) -> bool:
    """Whether `command` (a string or an argument vector) matches `pattern`.

    The pattern is split like a command line; each word matches one argument, with `*`, `?` and `[…]`
    as in file names. `**` as a word stands for any number of further non-option arguments. Options
    (`-x`, `--long`) are only admitted by words that spell them (`--format=*` is fine).
    """
    argv = split_command(command)
    if argv is None:
        return False
    return _argv_matches(_pattern_tokens(pattern), argv)


# --- conditions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledConditions:
    """A rule's `conditions`, checked once when the rule is saved and then applied to items."""

    path_patterns: tuple[str, ...] = ()
    command_patterns: tuple[str, ...] = ()
    risk_levels: frozenset[str] | None = None
    values: tuple[tuple[str, Any], ...] = ()  # (key, expected): list → membership, str → regex, else ==

    def matches(self, payload: Mapping[str, Any], *, risk_level: str | None) -> bool:
        if self.risk_levels is not None and risk_level not in self.risk_levels:
            return False
        if self.path_patterns:
            cwd = _lookup(payload, ("cwd", "working_dir"))
            path = _lookup(payload, PATH_KEYS)
            if not any(path_matches(p, path, cwd=cwd) for p in self.path_patterns):
                return False
        if self.command_patterns:
            command = _lookup(payload, COMMAND_KEYS)
            if not any(command_matches(p, command) for p in self.command_patterns):
                return False
        return all(_value_matches(expected, _lookup(payload, (key,))) for key, expected in self.values)


_MISSING = object()


def _lookup(payload: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """The first of `keys` found in the payload itself or in its tool `input`."""
    nested = payload.get("input")
    for key in keys:
        if key in payload:
            return payload[key]
        if isinstance(nested, Mapping) and key in nested:
            return nested[key]
    return _MISSING


def _value_matches(expected: Any, actual: Any) -> bool:
    if actual is _MISSING:
        return False
    if isinstance(expected, list):
        return any(_value_matches(e, actual) for e in expected)
    if isinstance(expected, str):
        if not isinstance(actual, str | int | float) or isinstance(actual, bool):
            return False
        subject = str(actual)
        return len(subject) <= MAX_SUBJECT_LEN and _regex(expected).fullmatch(subject) is not None
    return bool(expected == actual) and type(expected) is type(actual)


@lru_cache(maxsize=1024)
def _regex(expected: str) -> re.Pattern[str]:
    return re.compile(expected)


def _as_list(value: Any, field: str) -> list[Any]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise InvalidInputError("must not be empty", field=field)
    return list(items)


@checked
def compile_conditions(conditions: Mapping[str, Any] | None) -> CompiledConditions:
    """Check a rule's conditions and compile them. Errors name the offending key.

    `path_pattern` and `command_pattern` take one pattern or a list (any may match); `risk_level` one
    level or a list; any other key compares the payload's value (or its tool input's): a list means
    "one of", a string is an anchored regular expression, anything else must be equal.
    """
    if conditions is None:
        return CompiledConditions()
    if not isinstance(conditions, Mapping):
        raise InvalidInputError("must be a mapping of condition names to values", field="conditions")
    paths: list[str] = []
    commands: list[str] = []
    risks: frozenset[str] | None = None
    values: list[tuple[str, Any]] = []
    for raw_key, expected in conditions.items():
        key = str(raw_key)
        field = f"conditions.{key}"
        if key == "path_pattern":
            for p in _as_list(expected, field):
                _parse_path_pattern(p)
                paths.append(p)
        elif key == "command_pattern":
            for p in _as_list(expected, field):
                if not isinstance(p, str):
                    raise InvalidInputError("must be a command pattern string", field=field)
                _pattern_tokens(p)
                commands.append(p)
        elif key == "risk_level":
            levels = _as_list(expected, field)
            valid = {r.value for r in RiskLevel}
            bad = [lv for lv in levels if lv not in valid]
            if bad:
                raise InvalidInputError(f"{bad[0]!r} is not one of: {', '.join(valid)}", field=field)
            risks = frozenset(levels)
        else:
            for e in expected if isinstance(expected, list) else [expected]:
                if isinstance(e, str):
                    if len(e) > MAX_REGEX_LEN:
                        raise InvalidInputError(f"regex longer than {MAX_REGEX_LEN}", field=field)
                    try:
                        _regex(e)
                    except re.error as exc:
                        raise InvalidInputError(
                            f"not a valid regular expression: {exc}", field=field
                        ) from None
            values.append((key, expected))
    return CompiledConditions(tuple(paths), tuple(commands), risks, tuple(values))
