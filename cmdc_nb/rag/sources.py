"""Where documents come from: a local folder or repository (include / exclude globs, `.gitignore`
honoured), in-memory texts, or a pandas DataFrame.

A source yields `SourceDocument`s with a stable URI (the relative path, or the id you give), the text,
and its sha256. Ingestion compares those hashes with the stored ones, so unchanged documents cost a
read and a hash, nothing more.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.rag.chunking import language_of

__all__ = [
    "DataFrameSource",
    "FolderSource",
    "Source",
    "SourceDocument",
    "TextsSource",
    "source_from_config",
]

DEFAULT_EXCLUDE = (
    ".git/",
    "node_modules/",
    "__pycache__/",
    ".venv/",
    "venv/",
    "*.min.js",
    "*.lock",
    ".DS_Store",
)
_SNIFF = 8192


@dataclass(frozen=True)
class SourceDocument:
    uri: str
    text: str
    content_hash: str
    title: str | None = None
    source_type: str = "file"
    language: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    encoding: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # A vector computed elsewhere (a float32 numpy array): the document is then stored as one chunk
    # with this vector instead of being chunked and embedded.
    embedding: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class SkippedDocument:
    uri: str
    reason: str


class Source(Protocol):
    """Anything that lists documents. `complete` says the listing is the whole source, so documents
    stored earlier and not listed now were deleted."""

    complete: bool

    def documents(self) -> Iterator[SourceDocument | SkippedDocument]: ...

    def count(self) -> int | None: ...


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FolderSource:
    """Files under `root` matching `include` (gitignore-style patterns; default everything) and not
    `exclude`, skipping what `.gitignore` files ignore (at any depth), binary files and files larger
    than `max_file_bytes`."""

    complete = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        gitignore: bool = True,
        max_file_bytes: int = 1_000_000,
        follow_symlinks: bool = False,
    ) -> None:
        import pathspec

        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise InvalidInputError(f"{str(root)!r} is not a directory", field="root")
        for name, pats in (("include", include), ("exclude", exclude)):
            if isinstance(pats, str) or not all(isinstance(p, str) for p in pats):
                raise InvalidInputError("must be a list of glob patterns", field=name)
        self.include = pathspec.GitIgnoreSpec.from_lines(include) if include else None
        self.exclude = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_EXCLUDE, *exclude])
        self.gitignore = gitignore
        self.max_file_bytes = max_file_bytes
        self.follow_symlinks = follow_symlinks
        self._listing: list[str] | None = None

    def __repr__(self) -> str:
        return f"<FolderSource {self.root}>"

    def _paths(self) -> list[str]:
        import pathspec

        if self._listing is not None:
            return self._listing
        out: list[str] = []
        ignores: list[tuple[str, Any]] = []  # (directory prefix, spec) from .gitignore files
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=self.follow_symlinks):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            if self.gitignore and ".gitignore" in filenames:
                try:
                    lines = (
                        (Path(dirpath) / ".gitignore")
                        .read_text(encoding="utf-8", errors="replace")
                        .splitlines()
                    )
                    ignores.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(lines)))
                except OSError:
                    pass

            def ignored(rel: str, is_dir: bool) -> bool:
                probe = rel + "/" if is_dir else rel
                if self.exclude.match_file(probe):
                    return True
                for prefix, spec in ignores:
                    if probe.startswith(prefix) and spec.match_file(probe[len(prefix) :]):
                        return True
                return False

            dirnames[:] = sorted(d for d in dirnames if not ignored(rel_dir + d, True))
            for name in sorted(filenames):
                rel = rel_dir + name
                if ignored(rel, False):
                    continue
                if self.include is not None and not self.include.match_file(rel):
                    continue
                out.append(rel)
        self._listing = out
        return out

    def count(self) -> int:
        return len(self._paths())

    def documents(self) -> Iterator[SourceDocument | SkippedDocument]:
        for rel in self._paths():
            path = self.root / rel
            try:
                if path.is_symlink() and not self.follow_symlinks:
                    yield SkippedDocument(rel, "symbolic link")
                    continue
                size = path.stat().st_size
                if size > self.max_file_bytes:
                    yield SkippedDocument(rel, f"larger than {self.max_file_bytes} bytes")
                    continue
                data = path.read_bytes()
            except OSError as exc:
                yield SkippedDocument(rel, f"unreadable: {exc.strerror or exc}")
                continue
            if b"\x00" in data[:_SNIFF]:
                yield SkippedDocument(rel, "binary")
                continue
            try:
                text, enc = data.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                text, enc = data.decode("latin-1"), "latin-1"
            yield SourceDocument(
                uri=rel,
                text=text,
                content_hash=sha256(data),
                title=path.name,
                source_type="file",
                language=language_of(rel),
                size_bytes=len(data),
                encoding=enc,
            )


class TextsSource:
    """In-memory texts: strings (URIs `text:0`, `text:1`, …) or mappings with `text` and optionally
    `uri` (or `id`), `title`, `language` and `metadata`."""

    complete = True

    def __init__(self, texts: Iterable[str | Mapping[str, Any]]) -> None:
        self.items: list[SourceDocument] = []
        seen: set[str] = set()
        for i, item in enumerate(texts):
            if isinstance(item, str):
                uri, text, title, lang, meta = f"text:{i}", item, None, None, {}
            elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
                uri = str(item.get("uri") or item.get("id") or f"text:{i}")
                text, title, lang = item["text"], item.get("title"), item.get("language")
                meta = dict(item.get("metadata") or {})
            else:
                raise InvalidInputError(
                    f"item {i}: give a string or a mapping with a 'text' string", field="texts"
                )
            if uri in seen:
                raise InvalidInputError(f"two texts have the uri {uri!r}", field="texts")
            seen.add(uri)
            self.items.append(
                SourceDocument(
                    uri,
                    text,
                    sha256(text.encode("utf-8")),
                    title,
                    "text",
                    lang,
                    "text/plain",
                    len(text.encode("utf-8")),
                    "utf-8",
                    meta,
                )
            )

    def count(self) -> int:
        return len(self.items)

    def documents(self) -> Iterator[SourceDocument | SkippedDocument]:
        yield from self.items


class DataFrameSource(TextsSource):
    """One document per row of a pandas DataFrame: text from `text_column`, URI from `id_column` (else
    `row:<index>`), the other listed `metadata_columns` as metadata (filterable in search).

    With `embedding_column`, each row already has its vector (a list or 1-D array of numbers): the row
    is stored as one chunk with that vector, neither chunked nor embedded again. Its content hash covers
    the vector too, so a re-ingest rewrites a row whose vector changed."""

    def __init__(
        self,
        frame: Any,
        *,
        text_column: str = "text",
        id_column: str | None = None,
        title_column: str | None = None,
        metadata_columns: Sequence[str] = (),
        embedding_column: str | None = None,
    ) -> None:
        for col in [text_column, id_column, title_column, embedding_column, *metadata_columns]:
            if col is not None and col not in frame.columns:
                raise InvalidInputError(f"the DataFrame has no column {col!r}", field="frame")
        items: list[dict[str, Any]] = []
        for idx, row in frame.iterrows():
            text = row[text_column]
            if not isinstance(text, str):
                text = "" if text is None else str(text)
            items.append(
                {
                    "uri": str(row[id_column]) if id_column else f"row:{idx}",
                    "text": text,
                    "title": str(row[title_column]) if title_column else None,
                    "metadata": {c: _plain(row[c]) for c in metadata_columns},
                }
            )
        super().__init__(items)
        if embedding_column is not None:
            vectors = [_row_vector(x, i) for i, x in enumerate(frame[embedding_column])]
            self.items = [_with_vector(d, vec) for d, vec in zip(self.items, vectors, strict=True)]


def _row_vector(value: Any, row: int) -> Any:
    """A row's vector as float32, or an InvalidInputError naming the column's field and the row."""
    import numpy as np

    try:
        vec = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"row {row}: not a list of numbers", field="embedding_column") from None
    too_big = vec.ndim == 1 and bool(np.any(np.abs(vec) > np.finfo(np.float32).max))
    if vec.ndim != 1 or vec.size == 0 or not np.all(np.isfinite(vec)) or not np.any(vec) or too_big:
        raise InvalidInputError(
            f"row {row}: an embedding must be a non-empty 1-D vector of finite float32 numbers, not all zeros",
            field="embedding_column",
        )
    return vec.astype(np.float32)


def _with_vector(doc: SourceDocument, vec: Any) -> SourceDocument:
    from dataclasses import replace

    digest = sha256(doc.text.encode("utf-8") + b"\0" + vec.astype("<f4").tobytes())
    return replace(doc, content_hash=digest, embedding=vec)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars → Python values (JSON-able metadata)
    return item() if callable(item) else value


def source_from_config(source_type: str, config: Mapping[str, Any]) -> Source:
    """The source an index's stored `source_config` describes (folder sources only; texts and
    DataFrames are passed to `ingest` each time)."""
    if source_type in ("local_repo", "files"):
        path = config.get("path") or config.get("root")
        if not path:
            raise InvalidInputError(
                "a local_repo / files index needs source_config.path", field="source_config"
            )
        return FolderSource(
            path,
            include=config.get("include", ()),
            exclude=config.get("exclude", ()),
            gitignore=config.get("gitignore", True),
            max_file_bytes=int(config.get("max_file_bytes", 1_000_000)),
        )
    if source_type in ("texts", "dataframe"):
        raise InvalidInputError(
            f"a {source_type} index is fed by ingest(index, texts=...) or ingest(index, frame=...)",
            field="source",
        )
    raise InvalidInputError(
        f"{source_type!r} sources need the network, which this build does not reach; clone or download it "
        "and index the folder (source_type='local_repo')",
        field="source_type",
    )
