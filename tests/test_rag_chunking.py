"""Chunking and sources: token budgets, overlaps, offsets and lines, code units; folders with globs
and .gitignore, texts and DataFrames."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.rag import DataFrameSource, FolderSource, TextsSource, chunk_text
from cmdc_nb.rag.chunking import Tokenizer, language_of

TOK = Tokenizer()
PROSE = "\n\n".join(
    f"Paragraph {p}. "
    + " ".join(f"Sentence {p}.{s} talks about topic {p * s} in some detail." for s in range(12))
    for p in range(10)
)
PYTHON = '''"""A module."""
import os

CONSTANT = 3


def small(a):
    return a + 1


@decorator
def decorated(b):
    """Docs."""
    return b * 2


class Parser:
    """Parses things."""

    def parse(self, text):
        return text.split()

    def tokens(self, text):
        return len(text)
'''


@pytest.mark.parametrize("strategy", ["fixed", "recursive", "code_aware"])
def test_every_chunk_fits_the_budget_and_points_at_its_own_text(strategy: str) -> None:
    chunks = chunk_text(PROSE, strategy=strategy, max_tokens=64, overlap_tokens=8)
    assert len(chunks) > 5
    lines = PROSE.split("\n")
    for i, c in enumerate(chunks):
        assert c.index == i
        assert 1 <= c.tokens <= 64 and c.tokens == TOK.count(c.text)
        assert PROSE[c.start : c.end] == c.text
        assert c.text.splitlines()[0] in lines[c.start_line - 1]
        assert c.text.splitlines()[-1] in lines[c.end_line - 1]
    # nothing is lost: every word of the text is in some chunk
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(PROSE) if not ch.isspace())


def test_fixed_windows_overlap_by_the_overlap() -> None:
    chunks = chunk_text(PROSE, strategy="fixed", max_tokens=50, overlap_tokens=10)
    # 50-token windows (a token less when an edge space is trimmed), each 10 tokens into the last
    assert all(49 <= c.tokens <= 50 for c in chunks[:-1])
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end
        assert 9 <= TOK.count(PROSE[b.start : a.end]) <= 11


def test_recursive_chunks_end_at_natural_breaks_and_carry_overlap() -> None:
    chunks = chunk_text(PROSE, strategy="recursive", max_tokens=120, overlap_tokens=20)
    assert all(c.text.endswith((".", "detail.")) for c in chunks)
    assert any(a.end > b.start for a, b in itertools.pairwise(chunks))  # overlap carried


def test_code_aware_python_chunks_follow_functions_classes_and_methods() -> None:
    chunks = chunk_text(PYTHON, strategy="code_aware", max_tokens=24, overlap_tokens=0, language="python")
    by_symbol = {s: c for c in chunks if c.context for s in c.context["symbols"]}
    assert list(by_symbol) == ["small", "decorated", "Parser", "Parser.parse", "Parser.tokens"]
    assert by_symbol["decorated"].text.startswith("@decorator")  # decorators belong to their function
    assert by_symbol["Parser.tokens"].text.strip().startswith("def tokens")
    assert by_symbol["Parser.parse"].context["kind"] in ("method", "mixed")
    assert by_symbol["small"].start_line <= 7 <= by_symbol["small"].end_line  # def small is line 7
    # with room, small neighbours are packed into one chunk that names them all
    packed = chunk_text(PYTHON, strategy="code_aware", max_tokens=200, overlap_tokens=0, language="python")
    assert len(packed) == 1 and packed[0].context["symbols"] == list(by_symbol)


def test_code_aware_other_languages_split_at_declarations() -> None:
    js = "import x from 'y';\n\nexport function load(a) {\n  return a;\n}\n\nclass Store {\n  get() {}\n}\n\nconst save = async (b) => b;\n"
    symbols = [
        s
        for c in chunk_text(js, strategy="code_aware", max_tokens=16, overlap_tokens=0, language="javascript")
        if c.context
        for s in c.context["symbols"]
    ]
    assert symbols == ["load", "Store", "save"]
    md = "# Title\n\nIntro text about the project and why it exists.\n\n## Install\n\npip install it, then check the version it prints.\n\n## Use\n\nimport it and call the main function with a path.\n"
    md_chunks = chunk_text(md, strategy="code_aware", max_tokens=16, overlap_tokens=0, language="markdown")
    assert [s for c in md_chunks for s in c.context["symbols"]] == ["Title", "Install", "Use"]
    assert all(c.text.startswith("#") for c in md_chunks)  # chunks begin at headings
    broken = "def oops(:\n    pass\n"  # not Python grammar: falls back to the declaration pattern
    assert chunk_text(broken, strategy="code_aware", language="python")[0].text == broken.strip()


def test_bad_chunk_settings_are_refused_with_the_field() -> None:
    with pytest.raises(InvalidInputError, match="chunk_strategy"):
        chunk_text("x", strategy="semantic")
    with pytest.raises(InvalidInputError, match="max_tokens"):
        chunk_text("x", max_tokens=4)
    with pytest.raises(InvalidInputError, match="overlap_tokens"):
        chunk_text("x", max_tokens=64, overlap_tokens=40)
    assert chunk_text("   \n\n ") == []
    assert language_of("a/b/c.PY") == "python" and language_of("Makefile") == "makefile"


def test_a_folder_source_honours_globs_gitignore_and_skips_binaries(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "a.py").write_text("print('a')\n")
    (tmp_path / "src" / "pkg" / "b.txt").write_text("notes\n")
    (tmp_path / "src" / "pkg" / "secret.env").write_text("KEY=1\n")
    (tmp_path / "src" / ".gitignore").write_text("*.env\nbuild/\n")
    (tmp_path / "src" / "build").mkdir()
    (tmp_path / "src" / "build" / "out.py").write_text("x = 1\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "dep.js").write_text("module.exports = 1\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x00\x00binary")
    (tmp_path / "big.md").write_text("x" * 5000)
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    src = FolderSource(tmp_path, exclude=["*.txt.bak"], max_file_bytes=4000)
    docs = {d.uri: d for d in src.documents()}
    assert set(docs) == {
        ".gitignore" if False else "src/.gitignore",
        "src/pkg/a.py",
        "src/pkg/b.txt",
        "logo.png",
        "big.md",
        "latin.txt",
    }
    assert getattr(docs["logo.png"], "reason", None) == "binary"
    assert getattr(docs["big.md"], "reason", "").startswith("larger than")
    assert docs["latin.txt"].text == "café" and docs["latin.txt"].encoding == "latin-1"
    assert docs["src/pkg/a.py"].language == "python" and len(docs["src/pkg/a.py"].content_hash) == 64
    only_py = FolderSource(tmp_path, include=["*.py"])
    assert [d.uri for d in only_py.documents()] == ["src/pkg/a.py"]
    everything = FolderSource(tmp_path, include=["*.py"], gitignore=False)
    assert [d.uri for d in everything.documents()] == ["src/build/out.py", "src/pkg/a.py"]
    with pytest.raises(InvalidInputError, match="not a directory"):
        FolderSource(tmp_path / "missing")


def test_texts_and_dataframes_are_sources_with_stable_uris() -> None:
    texts = TextsSource(["alpha", {"uri": "doc-b", "text": "beta", "metadata": {"lang": "el"}}])
    assert [(d.uri, d.text, dict(d.metadata)) for d in texts.documents()] == [
        ("text:0", "alpha", {}),
        ("doc-b", "beta", {"lang": "el"}),
    ]
    with pytest.raises(InvalidInputError, match="two texts have the uri 'x'"):
        TextsSource([{"uri": "x", "text": "1"}, {"uri": "x", "text": "2"}])
    with pytest.raises(InvalidInputError, match="item 0"):
        TextsSource([42])  # type: ignore[list-item]
    frame = pd.DataFrame({"id": [7, 8], "body": ["first row", "second row"], "team": ["core", "docs"]})
    src = DataFrameSource(frame, text_column="body", id_column="id", metadata_columns=["team"])
    assert [(d.uri, d.text, d.metadata["team"]) for d in src.documents()] == [
        ("7", "first row", "core"),
        ("8", "second row", "docs"),
    ]
    with pytest.raises(InvalidInputError, match="no column 'nope'"):
        DataFrameSource(frame, text_column="nope")
