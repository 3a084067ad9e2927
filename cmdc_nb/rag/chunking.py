"""Splitting documents into chunks of at most `max_tokens` tokens (counted by tiktoken's cl100k_base),
with `overlap_tokens` of context carried from one chunk into the next.

- `fixed`: token windows, each `overlap_tokens` into the previous one.
- `recursive`: split at paragraph breaks, then lines, sentences, words, and only then mid-word, and pack
  the pieces back into chunks — chunks end where the text has a natural break.
- `code_aware`: split at the units of the language first — Python functions and classes (by its
  grammar, with `ast`), top-level declarations in JavaScript/TypeScript, Go, Rust, Java, C-family, Ruby,
  PHP and shell, headings in Markdown and reStructuredText — and record the unit (`code_context`:
  `{"symbols": [...], "kind": ...}`); units larger than a chunk are split recursively; small neighbours
  are packed together.

Every chunk knows its character offsets and first and last line (1-based), so a search hit can cite
`path:12-40`.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import InvalidInputError

__all__ = [
    "LANGUAGES",
    "STRATEGIES",
    "Chunk",
    "Tokenizer",
    "chunk_text",
    "language_of",
]

STRATEGIES = ("fixed", "recursive", "code_aware")

LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".scala": "scala",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".sh": "shell",
    ".bash": "shell",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
    ".ex": "elixir",
    ".exs": "elixir",
    ".swift": "swift",
    ".r": "r",
    ".jl": "julia",
    ".lua": "lua",
}

# Lines that start a top-level unit, per language (a new chunk may start there).
_UNIT = {
    "javascript": r"^(export\s+(default\s+)?)?((async\s+)?function\*?\s+(?P<n1>[\w$]+)|class\s+(?P<n2>[\w$]+)|(const|let|var)\s+(?P<n3>[\w$]+)\s*=\s*(async\s+)?(\(|function|[\w$]+\s*=>))",
    "go": r"^(func\s+(\([^)]*\)\s*)?(?P<n1>\w+)|type\s+(?P<n2>\w+))",
    "rust": r"^(pub(\([^)]*\))?\s+)?(async\s+)?(fn\s+(?P<n1>\w+)|struct\s+(?P<n2>\w+)|enum\s+(?P<n3>\w+)|trait\s+(?P<n4>\w+)|impl\b[^{]*?(?P<n5>\w+)\s*(<[^{]*>)?\s*\{|mod\s+(?P<n6>\w+))",
    "java": r"^\s{0,4}(public|protected|private|static|final|abstract|\s)*\s*(class|interface|enum|record)\s+(?P<n1>\w+)|^\s{4}(public|protected|private|static|final|synchronized|\s)+[\w<>\[\], ]+\s+(?P<n2>\w+)\s*\(",
    "c": r"^(?!\s)(?!#)(?!typedef\b)[\w\s\*]+?\b(?P<n1>\w+)\s*\([^;]*$|^(struct|enum|union)\s+(?P<n2>\w+)\s*\{",
    "ruby": r"^\s{0,2}(def\s+(?P<n1>[\w.?!]+)|class\s+(?P<n2>\w+)|module\s+(?P<n3>\w+))",
    "php": r"^\s{0,4}((public|protected|private|static|abstract|final)\s+)*(function\s+(?P<n1>\w+)|class\s+(?P<n2>\w+))",
    "shell": r"^(function\s+)?(?P<n1>[\w-]+)\s*\(\)\s*\{",
    "markdown": r"^(?P<n1>#{1,6}\s+.+)$",
    "rst": r"^(?P<n1>[^\s].*)\n(=+|-+|~+|\^+)\s*$",
}
_UNIT["typescript"] = _UNIT["javascript"]
_UNIT["cpp"] = _UNIT["c"]
_UNIT["csharp"] = _UNIT["java"]
_UNIT["kotlin"] = (
    r"^\s{0,4}((public|private|internal|data|sealed|abstract|open|override|suspend)\s+)*(fun\s+(?P<n1>[\w.]+)|class\s+(?P<n2>\w+)|object\s+(?P<n3>\w+))"
)
_UNIT["scala"] = (
    r"^\s{0,2}((private|protected|override|final|case|implicit)\s+)*(def\s+(?P<n1>\w+)|class\s+(?P<n2>\w+)|object\s+(?P<n3>\w+)|trait\s+(?P<n4>\w+))"
)
_UNIT["swift"] = (
    r"^\s{0,4}((public|private|internal|open|static|final)\s+)*(func\s+(?P<n1>\w+)|class\s+(?P<n2>\w+)|struct\s+(?P<n3>\w+)|enum\s+(?P<n4>\w+))"
)
_UNIT["elixir"] = r"^\s{0,2}(defmodule\s+(?P<n1>[\w.]+)|defp?\s+(?P<n2>\w+[?!]?))"

_SEPARATORS = ("\n\n", "\n", ". ", "; ", ", ", " ")


def language_of(path: str) -> str | None:
    """The language of a file from its extension (None when unknown)."""
    name = PurePosixPath(path).name.lower()
    if name in ("makefile", "dockerfile"):
        return name
    return LANGUAGES.get(PurePosixPath(name).suffix)


class Tokenizer:
    """Counts tokens with tiktoken (`cl100k_base`, offline from litellm's bundled files); without it, one
    token per four characters."""

    def __init__(self, name: str = "cl100k_base") -> None:
        from cmdc_nb.providers.catalog import encoding

        self.name = name
        self._enc = encoding(name)

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self._enc is None:
            return max(1, (len(text) + 3) // 4)
        return len(self._enc.encode(text, disallowed_special=()))

    def token_starts(self, text: str) -> list[int]:
        """The character offset where each token starts."""
        if self._enc is None:
            return list(range(0, len(text), 4))
        tokens = self._enc.encode(text, disallowed_special=())
        _, offsets = self._enc.decode_with_offsets(tokens)
        return list(offsets)


@lru_cache(maxsize=4)
def default_tokenizer(name: str = "cl100k_base") -> Tokenizer:
    return Tokenizer(name)


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int
    start: int
    end: int
    start_line: int
    end_line: int
    tokens: int
    context: dict[str, Any] | None = field(default=None)


@dataclass
class _Span:
    start: int
    end: int
    tokens: int
    context: dict[str, Any] | None = None


@checked
def chunk_text(
    text: str,
    *,
    strategy: str = "recursive",
    max_tokens: int = 512,
    overlap_tokens: int = 50,
    language: str | None = None,
    tokenizer: Tokenizer | None = None,
) -> list[Chunk]:
    """Chunks of `text` (see the module docstring). Whitespace-only text has no chunks."""
    if strategy not in STRATEGIES:
        raise InvalidInputError(
            f"{strategy!r} is not one of: {', '.join(STRATEGIES)}", field="chunk_strategy"
        )
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 16 <= max_tokens <= 8192:
        raise InvalidInputError(f"must be an integer from 16 to 8192, got {max_tokens!r}", field="max_tokens")
    if (
        isinstance(overlap_tokens, bool)
        or not isinstance(overlap_tokens, int)
        or not 0 <= overlap_tokens < max_tokens // 2
    ):
        raise InvalidInputError(
            f"must be an integer from 0 to {max_tokens // 2 - 1} (under half of max_tokens), got {overlap_tokens!r}",
            field="overlap_tokens",
        )
    if not text.strip():
        return []
    tok = tokenizer or default_tokenizer()
    if strategy == "fixed":
        spans = _fixed(text, max_tokens, overlap_tokens, tok)
    else:
        units = _units(text, language, tok) if strategy == "code_aware" else [_Span(0, len(text), 0)]
        spans = []
        for unit in units:
            pieces = _split(text, unit.start, unit.end, max_tokens, tok, _SEPARATORS)
            for p in pieces:
                p.context = unit.context
            spans.extend(pieces)
        spans = _pack(text, spans, max_tokens, overlap_tokens, tok)
    lines = _newlines(text)
    out: list[Chunk] = []
    for sp in spans:
        # Leading and trailing blank lines carry no meaning; trim them so offsets point at the text.
        s, e = sp.start, sp.end
        while s < e and text[s] in "\r\n":
            s += 1
        while e > s and text[e - 1] in " \t\r\n":
            e -= 1
        if s >= e:
            continue
        body = text[s:e]
        out.append(
            Chunk(
                text=body,
                index=len(out),
                start=s,
                end=e,
                start_line=bisect.bisect_right(lines, s - 1) + 1,
                end_line=bisect.bisect_right(lines, e - 1) + 1,
                tokens=max(1, sp.tokens if (s, e) == (sp.start, sp.end) else tok.count(body)),
                context=sp.context,
            )
        )
    return out


def _fixed(text: str, max_tokens: int, overlap: int, tok: Tokenizer) -> list[_Span]:
    starts = tok.token_starts(text)
    n = len(starts)
    spans: list[_Span] = []
    step = max_tokens - overlap
    for a in range(0, n, step):
        b = min(a + max_tokens, n)
        end = starts[b] if b < n else len(text)
        spans.append(_Span(starts[a], end, b - a))
        if b >= n:
            break
    return spans


def _split(
    text: str, start: int, end: int, max_tokens: int, tok: Tokenizer, seps: Sequence[str]
) -> list[_Span]:
    """Spans covering text[start:end], each at most max_tokens, cut at the coarsest separator that works."""
    n = tok.count(text[start:end])
    if n <= max_tokens:
        return [_Span(start, end, n)]
    segment = text[start:end]
    for i, sep in enumerate(seps):
        if sep not in segment:
            continue
        out: list[_Span] = []
        pos = start
        for part in segment.split(sep):
            stop = min(pos + len(part) + len(sep), end)
            if stop > pos:
                out.extend(_split(text, pos, stop, max_tokens, tok, seps[i + 1 :]))
            pos = stop
        return out
    # No separator left (a minified line, a long token run): cut by tokens.
    return [_Span(start + sp.start, start + sp.end, sp.tokens) for sp in _fixed(segment, max_tokens, 0, tok)]


def _pack(text: str, spans: list[_Span], max_tokens: int, overlap: int, tok: Tokenizer) -> list[_Span]:
    """Greedily join neighbouring spans (of the same unit, when units differ only in context they are
    joined and their symbols listed) up to max_tokens, starting each chunk with up to `overlap` tokens
    of the previous one's tail."""
    out: list[_Span] = []
    current: list[_Span] = []
    total = 0

    def flush() -> None:
        nonlocal current, total
        if not current:
            return
        symbols: list[str] = []
        kinds: list[str] = []
        for sp in current:
            for s in (sp.context or {}).get("symbols", []):
                if s not in symbols:
                    symbols.append(s)
            kind = (sp.context or {}).get("kind")
            if kind and kind not in kinds:
                kinds.append(kind)
        context = {"symbols": symbols, "kind": kinds[0] if len(kinds) == 1 else "mixed"} if symbols else None
        out.append(
            _Span(
                current[0].start,
                current[-1].end,
                tok.count(text[current[0].start : current[-1].end]),
                context,
            )
        )
        tail: list[_Span] = []
        carried = 0
        if overlap:
            for sp in reversed(current):
                if carried + sp.tokens > overlap:
                    break
                tail.insert(0, sp)
                carried += sp.tokens
        if len(tail) == len(current):
            tail, carried = [], 0  # never repeat a whole chunk
        current, total = tail, carried

    for sp in spans:
        if current and total + sp.tokens > max_tokens:
            flush()
            if current and total + sp.tokens > max_tokens:
                current, total = [], 0
        current.append(sp)
        total += sp.tokens
    if current and (not out or current[-1].end > out[-1].end):
        flush()
    return out


def _units(text: str, language: str | None, tok: Tokenizer) -> list[_Span]:
    if language == "python":
        try:
            return _python_units(text)
        except (SyntaxError, ValueError):
            pass
    pattern = _UNIT.get(language or "")
    if pattern is None:
        return [_Span(0, len(text), 0)]
    return _regex_units(text, re.compile(pattern, re.MULTILINE), language or "")


def _newlines(text: str) -> list[int]:
    """Positions of every newline (str.find runs in C; a per-character loop was a hot spot)."""
    out: list[int] = []
    i = text.find("\n")
    while i != -1:
        out.append(i)
        i = text.find("\n", i + 1)
    return out


def _line_offsets(text: str) -> list[int]:
    return [0, *(i + 1 for i in _newlines(text))]


def _python_units(text: str) -> list[_Span]:
    tree = ast.parse(text)
    starts = _line_offsets(text)

    def at(line: int) -> int:
        return starts[line - 1] if line - 1 < len(starts) else len(text)

    units: list[_Span] = []
    pos = 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        begin = at(first)
        finish = at((node.end_lineno or node.lineno) + 1)
        if begin > pos:
            units.append(_Span(pos, begin, 0, None))
        methods = (
            [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
            if isinstance(node, ast.ClassDef)
            else []
        )
        if not methods:
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            units.append(_Span(begin, finish, 0, {"symbols": [node.name], "kind": kind}))
        else:
            # A class is its header (up to the first method), then one unit per method, named
            # Class.method; packing joins the small ones back together.
            starts_m = [at(min([m.lineno, *(d.lineno for d in m.decorator_list)])) for m in methods]
            units.append(_Span(begin, starts_m[0], 0, {"symbols": [node.name], "kind": "class"}))
            for i, m in enumerate(methods):
                stop = starts_m[i + 1] if i + 1 < len(methods) else finish
                units.append(
                    _Span(starts_m[i], stop, 0, {"symbols": [f"{node.name}.{m.name}"], "kind": "method"})
                )
        pos = finish
    if pos < len(text):
        units.append(_Span(pos, len(text), 0, None))
    return [u for u in units if text[u.start : u.end].strip()] or [_Span(0, len(text), 0)]


def _regex_units(text: str, pattern: re.Pattern[str], language: str) -> list[_Span]:
    marks: list[tuple[int, str]] = []
    for m in pattern.finditer(text):
        name = next((g for g in m.groupdict().values() if g), None)
        if name:
            marks.append((m.start(), name.strip().lstrip("#").strip()[:120]))
    if not marks:
        return [_Span(0, len(text), 0)]
    kind = "section" if language in ("markdown", "rst") else "declaration"
    units: list[_Span] = []
    if marks[0][0] > 0:
        units.append(_Span(0, marks[0][0], 0, None))
    for i, (start, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        units.append(_Span(start, end, 0, {"symbols": [name], "kind": kind}))
    return units
