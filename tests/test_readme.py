"""The README's Python snippets, run as a newcomer would: in order, as cells of one IPython kernel, offline,
against a fresh workspace — and then all again in the same kernel and workspace, as a notebook is re-run.
Both runs must succeed, and every line the README annotates with a value (`tu.status  # 'approved'`)
must show that value.

A snippet whose first line starts with `# Sketch` is not run (it says why on that line)."""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbclient
import nbformat
from waiting import CEILING_S

README = Path(__file__).resolve().parent.parent / "README.md"
SKETCH = "# Sketch"
SEEN = "__readme_seen__"
# A comment showing a value starts like a repr: a string, a <Repr …>, a list, a dict or a number.
_VALUE_COMMENT = re.compile(r"#\s*(?P<shown>['\"<\[{\d].*)$")


@dataclass(frozen=True)
class Claim:
    """A README line `expression  # value`: the expression's repr must match the value (… = anything)."""

    line: int  # in README.md
    expression: str
    shown: str

    def matches(self, rendered: str) -> bool:
        # "…" elides, with the spaces around it: `<ApiCredential … key_hint='…wxyz' …>` fits a real repr.
        pattern = ".*?".join(re.escape(part) for part in re.split(r"\s*…\s*", self.shown))
        return re.fullmatch(pattern, rendered, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class Snippet:
    line: int  # of the opening fence in README.md
    source: str


def python_snippets(text: str) -> list[Snippet]:
    """The ```python blocks of a Markdown text, in order."""
    found: list[Snippet] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            found.append(Snippet(start, "\n".join(body)))
        i += 1
    return found


def _shown(comment_line: str) -> str | None:
    """The value a comment shows, without the prose after it (`'approved' — by the rule` → `'approved'`)."""
    match = _VALUE_COMMENT.search(comment_line)
    if match is None:
        return None
    return match["shown"].split(" — ")[0].strip()


def instrument(snippet: Snippet) -> tuple[str, list[Claim]]:
    """The snippet as a cell, each annotated expression statement also recorded with its line, and the
    claims it makes. The statement still runs once, as written (an `await` stays an await)."""
    tree = ast.parse(snippet.source)  # IPython cells may await at top level; ast parses that too
    lines = snippet.source.splitlines()
    claims: list[Claim] = []
    replaced: dict[int, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.Expr) or node.lineno != node.end_lineno:
            continue
        text = lines[node.lineno - 1]
        code = ast.get_source_segment(snippet.source, node.value)
        shown = _shown(text[node.end_col_offset or 0 :])
        if code is None or shown is None:
            continue
        claim = Claim(snippet.line + node.lineno, code, shown)
        claims.append(claim)
        indent = text[: len(text) - len(text.lstrip())]
        replaced[node.lineno - 1] = f"{indent}{SEEN}.append(({claim.line}, ({code})))"
    cell = "\n".join(replaced.get(n, line) for n, line in enumerate(lines))
    return cell, claims


def _fake_repository(root: Path) -> None:
    """What the README's index reads as `.`: a small repository with the file its search finds."""
    (root / "billing").mkdir(parents=True)
    (root / "billing" / "retry.py").write_text(
        '"""Retry failed payments: three attempts, an hour apart."""\n'
        "def retry_failed_payments(payments):\n"
        "    return [p for p in payments if p.failed]\n",
        encoding="utf-8",
    )
    (root / "README.md").write_text("# shop\n\nA small shop: orders, billing, shipping.\n", encoding="utf-8")


def test_the_readme_snippets_run_twice_in_one_kernel_and_workspace(tmp_path: Path) -> None:
    snippets = python_snippets(README.read_text(encoding="utf-8"))
    runnable = [s for s in snippets if not s.source.lstrip().startswith(SKETCH)]
    assert len(snippets) >= 6 and len(runnable) == len(snippets)  # every snippet runs today
    cells: list[str] = []
    claims: list[Claim] = []
    for snippet in runnable:
        cell, said = instrument(snippet)
        cells.append(cell)
        claims.extend(said)
    assert len(claims) >= 6  # the values the README shows are checked, not only that it runs
    repo = tmp_path / "repo"
    _fake_repository(repo)
    home = tmp_path / "home"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    check = (
        f"print([(line, repr(value), repr(getattr(value, 'value', None))) for line, value in {SEEN}])\n"
        f"{SEEN}.clear()"
    )
    run = [nbformat.v4.new_code_cell(f"{SEEN} = []"), *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.cells = [*run, nbformat.v4.new_code_cell(check), *run[1:], nbformat.v4.new_code_cell(check)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMDC_NB_", "XDG_"))}
    env.update(CMDC_NB_HOME=str(home), CMDC_NB_OFFLINE="1")
    client = nbclient.NotebookClient(
        nb, timeout=CEILING_S, kernel_name="python3", resources={"metadata": {"path": str(repo)}}
    )
    client.execute(env=env)  # a cell that raises fails here, naming the cell and the error

    errors = [o for c in nb.cells for o in c.outputs if o.get("output_type") == "error"]
    assert errors == []
    assert (home / "cmdc_nb.db").is_file()  # the README's connect() used the workspace given, not ~
    for check_cell in (nb.cells[len(run)], nb.cells[-1]):
        # one print, but the kernel may send it as several stream messages (its text, then the newline)
        printed = "".join(o["text"] for o in check_cell.outputs if o.get("name") == "stdout")
        seen = ast.literal_eval(printed)
        assert [line for line, _, _ in seen] == [c.line for c in claims]
        for claim, (_, rendered, value) in zip(claims, seen, strict=True):
            assert claim.matches(rendered) or claim.matches(value), (claim, rendered)
