"""Files and images attached to a prompt: read, recognised by their bytes, and put in litellm's
multimodal message format.

>>> from cmdc_nb.providers.attachments import attach
>>> a = attach(b"x,y\\n1,2\\n", name="points.csv")
>>> a.kind, a.media_type
('text', 'text/csv')
>>> a.part()["type"]
'text'

What a file is comes from its bytes, not its name: PNG, JPEG, GIF and WebP images (decoded once, so
a truncated or hostile image is refused here, not by the provider), PDF documents, and UTF-8 text.
A name that says another kind (an HTML page called `chart.png`, a PDF called `notes.txt`) is refused
with a sentence, as is SVG (a picture that can carry script). An image goes to the model as an
`image_url` part with a data URL, a PDF as a `file` part, a text file as a text part naming the file.

Stored prompts keep a reference (`{"type": "attachment", "sha256": …}`) where the request had the
bytes (`stored_content`); `expand_content` puts them back, so the exact request stays reconstructible
while a 5 MB screenshot is stored once, as an artifact of the session.
"""

from __future__ import annotations

import base64
import hashlib
import io
import mimetypes
import os
import re
import stat
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from cmdc_nb.errors import InvalidInputError

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_TEXT_BYTES",
    "Attachment",
    "attach",
    "attachments",
    "expand_content",
    "files_in",
    "kinds_taken",
    "message_content",
    "refusal",
    "stored_content",
    "stored_message",
    "without_data",
]

Kind = Literal["image", "pdf", "text"]
MAX_FILES = 16
MAX_FILE_BYTES = 20 * 1024 * 1024  # OpenAI's and Anthropic's per-image limits are 20 MB and less
MAX_TEXT_BYTES = 1024 * 1024  # a text file becomes prompt text: a megabyte is already ≈250k tokens
THUMB_PX = 160
MAX_IMAGE_PIXELS = 30_000_000  # far above any model's input (they downscale); decoding stays ≈100 MB
# a text file keeps its own type only when it is one of these (an HTML page is stored as plain text)
_SAFE_TEXT = frozenset({"text/plain", "text/markdown", "text/csv", "application/json", "text/x-python"})
_SVG = re.compile(r"(<\?xml[^>]*>|<!--.*?-->|<!doctype[^>]*>|\s)*<svg\b", re.S | re.I)
_IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
_TEXT_TYPES = {
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
    ".py": "text/x-python",
}


def _sniff(data: bytes) -> tuple[Kind, str] | None:
    """The kind and media type the bytes themselves say, or None when they are none we send."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image", "image/webp"
    if data.startswith(b"%PDF-"):
        # a real PDF ends with its trailer's %%EOF (give or take a few bytes of line ends)
        return ("pdf", "application/pdf") if b"%%EOF" in data[-1024:] else None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if (
        "\x00" in text
        or sum(1 for c in text[:65536] if unicodedata.category(c) == "Cc" and c not in "\t\n\r\f") > 8
    ):
        return None  # binary that happens to decode
    if _SVG.match(text.lstrip("\ufeff")[:4096]):  # comments and a doctype before it hide nothing
        return "text", "image/svg+xml"
    return "text", "text/plain"


def _named_kind(name: str) -> tuple[Kind | None, str | None]:
    """What the file's name says it is (None: the name says nothing we know)."""
    suffix = Path(name).suffix.lower()
    guessed = _TEXT_TYPES.get(suffix) or mimetypes.guess_type(name, strict=False)[0]
    if guessed is None:
        return None, None
    if guessed == "image/svg+xml":
        return "image", guessed
    if guessed.startswith("image/"):
        return "image", guessed
    if guessed == "application/pdf":
        return "pdf", guessed
    if guessed.startswith("text/") or guessed in ("application/json", "application/xml", "application/x-sh"):
        return "text", guessed
    return None, guessed


def _clean_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidInputError(f"a file's name must be text, got {type(name).__name__}", field="name")
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return base[:200] or "file"


@dataclass(frozen=True, eq=False)
class Attachment:
    """One file for a prompt: its name, media type, kind and bytes (never shown in a repr)."""

    name: str
    media_type: str
    kind: Kind
    data: bytes = field(repr=False)
    width: int | None = None
    height: int | None = None
    _checked: bool = field(default=False, repr=False, compare=False)  # made by `attach` (else checked again)

    def __repr__(self) -> str:
        size = f"{self.size / 1024:.1f} kB" if self.size >= 1024 else f"{self.size} B"
        shape = f" {self.width}×{self.height}" if self.width else ""
        return f"<Attachment {self.name!r} {self.media_type}{shape} {size}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attachment) and (self.sha256, self.name) == (other.sha256, other.name)

    def __hash__(self) -> int:
        return hash((self.sha256, self.name))

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def thumbnail(self) -> str | None:
        """A small picture of an image (at most 160 px a side) as a data URL, for a chat to show; None
        for other files. Made from the decoded pixels, so it carries nothing of the file but them."""
        if self.kind != "image":
            return None
        from PIL import Image

        with Image.open(io.BytesIO(self.data)) as im:
            im.draft("RGB", (THUMB_PX, THUMB_PX))  # a JPEG decodes at a fraction of its size: fast
            im.thumbnail((THUMB_PX, THUMB_PX))
            alpha = im.mode in ("RGBA", "LA", "P", "PA")
            small = im.convert("RGBA" if alpha else "RGB")
        out = io.BytesIO()
        small.save(out, format="PNG" if alpha else "JPEG", quality=80)
        kind = "png" if alpha else "jpeg"
        return f"data:image/{kind};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"

    def meta(self) -> dict[str, Any]:
        """What is said of it in events, stored messages and frames: everything but the bytes (an
        image's small thumbnail included, so a chat shows it without reading the file)."""
        out: dict[str, Any] = {
            "name": self.name,
            "media_type": self.media_type,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.width:
            out["width"], out["height"] = self.width, self.height
            out["thumbnail"] = self.thumbnail
        return out

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def text(self) -> str:
        return self.data.decode("utf-8").lstrip("\ufeff")

    def part(self) -> dict[str, Any]:
        """The file as one part of a litellm message's content."""
        if self.kind == "text":
            quoted = self.name.replace('"', "'")
            body = self.text().replace(_CLOSE, _CLOSE_QUOTED)
            return {"type": "text", "text": f'<file name="{quoted}">\n{body}\n</file>'}
        url = self.data_url()
        _remember(url, self)
        if self.kind == "image":
            return {"type": "image_url", "image_url": {"url": url}}
        return {"type": "file", "file": {"file_data": url, "filename": self.name}}


def _image_facts(data: bytes, media_type: str, name: str) -> tuple[int, int]:
    """Decode the image once: a truncated, corrupt or enormous image is refused here."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InvalidInputError(
                    f"{name} is {w}×{h} pixels; at most {MAX_IMAGE_PIXELS:,} pixels are sent", field="files"
                )
            im.load()
    except InvalidInputError:
        raise
    except Exception as exc:  # PIL raises many kinds for a bad file; what matters is that it is bad
        raise InvalidInputError(
            f"{name} is not a readable image ({type(exc).__name__}): it may be truncated or damaged",
            field="files",
        ) from None
    if _IMAGE_FORMATS.get(fmt or "") != media_type:
        raise InvalidInputError(f"{name} does not decode as {media_type}", field="files")
    return w, h


def attach(
    source: Attachment | str | os.PathLike[str] | bytes,
    *,
    name: str | None = None,
    media_type: str | None = None,
) -> Attachment:
    """A file for a prompt, from a path or from bytes (`name` then names it). `media_type`, when given,
    must agree with what the bytes are."""
    if isinstance(source, Attachment):
        if source._checked and name is None and media_type is None:
            return source
        # one made by hand is what its bytes say, or refused, like any other file
        return _recognise(source.data, _clean_name(name or source.name), media_type)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > MAX_FILE_BYTES:
            raise InvalidInputError(_too_big(_clean_name(name or "the file"), len(data)), field="files")
        label = _clean_name(name if name is not None else "file")
    elif isinstance(source, str | os.PathLike):
        data, label = _read(Path(source))
        if name is not None:
            label = _clean_name(name)
    else:
        raise InvalidInputError(
            f"a file is a path, bytes or an Attachment, got {type(source).__name__}", field="files"
        )
    return _recognise(data, label, media_type)


def _too_big(name: str, size: int) -> str:
    return (
        f"{name} is {size / 2**20:.1f} MB; a file sent to a model may be at most {MAX_FILE_BYTES // 2**20} MB"
    )


def _read(path: Path) -> tuple[bytes, str]:
    label = _clean_name(path.name)
    try:
        # Opened without waiting (a FIFO would block the kernel), then checked on the open file itself:
        # what is read is what was checked, whatever the path points to by then.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise InvalidInputError(f"{label} is a folder; attach the files in it", field="files")
            if not stat.S_ISREG(mode):
                raise InvalidInputError(f"{label} is not a regular file (a device or a pipe)", field="files")
            data = os.read(fd, MAX_FILE_BYTES + 1)  # bounded: the file may grow after any check of its size
            while len(data) <= MAX_FILE_BYTES and (more := os.read(fd, MAX_FILE_BYTES + 1 - len(data))):
                data += more
        finally:
            os.close(fd)
    except InvalidInputError:
        raise
    except FileNotFoundError:
        raise InvalidInputError(f"no file at {label!r}", field="files") from None
    except OSError as exc:
        raise InvalidInputError(f"{label} cannot be read ({exc.strerror})", field="files") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInputError(_too_big(label, len(data)), field="files")
    return data, label


def _recognise(data: bytes, name: str, media_type: str | None) -> Attachment:
    if not data:
        raise InvalidInputError(f"{name} is empty", field="files")
    sniffed = _sniff(data)
    if sniffed is None:
        raise InvalidInputError(
            f"{name} is neither an image (PNG, JPEG, GIF, WebP), a PDF nor UTF-8 text", field="files"
        )
    kind, actual = sniffed
    if actual == "image/svg+xml":
        raise InvalidInputError(
            f"{name} is an SVG drawing, which can carry script; export it as PNG to attach it", field="files"
        )
    named_kind, named_type = _named_kind(name)
    if named_kind is not None and named_kind != kind:
        raise InvalidInputError(
            f"{name} is named as {named_type} but its bytes are {_said(kind)}: rename it or attach the right file",
            field="files",
        )
    if media_type is not None:
        if not isinstance(media_type, str):
            raise InvalidInputError("media_type must be text such as 'image/png'", field="media_type")
        wanted = media_type.split(";")[0].strip().lower()
        if _sniff_kind_of(wanted) != kind or (kind != "text" and wanted != actual):
            raise InvalidInputError(f"{name} is {_said(kind)} ({actual}), not {wanted}", field="media_type")
    if kind == "text":
        if len(data) > MAX_TEXT_BYTES:
            raise InvalidInputError(
                f"{name} is {len(data) / 2**20:.1f} MB of text; at most {MAX_TEXT_BYTES // 2**20} MB "
                "of text goes into a prompt (index it for search instead)",
                field="files",
            )
        own = named_type if named_kind == "text" and named_type in _SAFE_TEXT else None
        return Attachment(name, own or "text/plain", kind, data, _checked=True)
    if kind == "image":
        w, h = _image_facts(data, actual, name)
        return Attachment(name, actual, kind, data, w, h, _checked=True)
    return Attachment(name, actual, kind, data, _checked=True)


def _sniff_kind_of(media_type: str) -> Kind | None:
    if media_type.startswith("image/"):
        return "image"
    if media_type == "application/pdf":
        return "pdf"
    if media_type.startswith("text/") or media_type in ("application/json", "application/xml"):
        return "text"
    return None


def _said(kind: Kind) -> str:
    return {"image": "an image", "pdf": "a PDF", "text": "text"}[kind]


def attachments(files: Any) -> tuple[Attachment, ...]:
    """`files` as attachments: a list (or tuple) of paths, bytes or Attachments. One path alone is a
    mistake worth naming, not a list of characters."""
    if files is None:
        return ()
    if isinstance(files, str | bytes | bytearray | os.PathLike | Attachment):
        raise InvalidInputError("files must be a list, such as files=['chart.png']", field="files")
    if not isinstance(files, Iterable) or isinstance(files, Mapping):
        raise InvalidInputError(f"files must be a list, got {type(files).__name__}", field="files")
    out: list[Attachment] = []
    for item in files:
        if len(out) == MAX_FILES:
            raise InvalidInputError(f"at most {MAX_FILES} files go with one prompt", field="files")
        out.append(attach(item))
    return tuple(out)


def message_content(text: str, files: Sequence[Attachment]) -> str | list[dict[str, Any]]:
    """A user message's content: the text alone, or the text then each file as a part."""
    if not files:
        return text
    return [{"type": "text", "text": text}, *(f.part() for f in files)]


# -- which models take which files ------------------------------------------------------------------


def kinds_taken(model: str) -> frozenset[str] | None:
    """The kinds of file `model` takes besides text, or None when nothing says (let the provider
    answer). Scripted models say so themselves; others as litellm's bundled model map says."""
    provider = model.split("/", 1)[0] if "/" in model else None
    if provider == "scripted":
        from cmdc_nb.providers.scripted import get_script

        try:
            return frozenset(get_script(model).accepts) | {"text"}
        except LookupError:
            return None
    if provider in ("replay", "offline"):
        return None  # a recording answers whatever was recorded
    from cmdc_nb.providers.catalog import input_kinds

    return input_kinds(model)


def refusal(model: str, files: Sequence[Attachment]) -> str | None:
    """The sentence to show when `model` cannot take some of `files` (None: it can, or nobody knows)."""
    taken = kinds_taken(model)
    if taken is None:
        return None
    left = [f for f in files if f.kind not in taken]
    if not left:
        return None
    what = sorted({"images" if f.kind == "image" else "PDFs" for f in left})
    names = ", ".join(f.name for f in left[:3]) + (" …" if len(left) > 3 else "")
    return (
        f"{model} cannot take {' or '.join(what)} ({names}): pick a model that can "
        "(one that sees images, such as gpt-4o), or send the prompt without them"
    )


# -- stored prompts keep references, not bytes -------------------------------------------------------

_seen: OrderedDict[int, tuple[str, Attachment]] = OrderedDict()  # id(data URL) -> (the URL, its file)


def _remember(url: str, a: Attachment) -> None:
    _seen[id(url)] = (url, a)  # the URL is kept alive here, so its id cannot be reused meanwhile
    while len(_seen) > 64:
        _seen.popitem(last=False)


def _ref(url: Any, stored: Collection[str]) -> dict[str, Any] | None:
    """The reference to a data URL's file when that file is stored (its SHA-256 in `stored`)."""
    if not isinstance(url, str) or not stored:
        return None
    hit = _seen.get(id(url))
    if hit is not None and hit[0] is url:
        digest, media_type = hit[1].sha256, hit[1].media_type
    else:
        head, _, body = url.partition(",")
        if not (head.startswith("data:") and head.endswith(";base64")):
            return None
        try:
            digest, media_type = hashlib.sha256(base64.b64decode(body, validate=True)).hexdigest(), head[5:-7]
        except ValueError:
            return None
    if digest not in stored:
        return None  # bytes no artifact holds (a seeded message, a plugin's): kept inline, never lost
    return {"type": "attachment", "sha256": digest, "media_type": media_type}


def stored_content(value: Any, stored: Collection[str] = frozenset()) -> Any:
    """A message's content as a stored prompt keeps it: each inline image or file whose bytes are
    stored (`stored`: their SHA-256s) a reference; anything else as it is."""
    if type(value) is not list:
        return value
    out: list[Any] = []
    for part in value:
        ref = None
        if isinstance(part, Mapping):
            inner = part.get(str(part.get("type")))
            if part.get("type") == "image_url" and isinstance(inner, Mapping):
                ref = _ref(inner.get("url"), stored)
            elif part.get("type") == "file" and isinstance(inner, Mapping):
                ref = _ref(inner.get("file_data"), stored)
                if ref is not None:
                    ref["filename"] = inner.get("filename")
        out.append(ref if ref is not None else part)
    return out


def stored_message(message: Mapping[str, Any], stored: Collection[str] = frozenset()) -> Mapping[str, Any]:
    c = message.get("content")
    return message if type(c) is not list or not stored else {**message, "content": stored_content(c, stored)}


def expand_content(value: Any, load: Callable[[str], bytes]) -> Any:
    """The content as it was sent: each reference's bytes, by SHA-256, from `load`."""
    if type(value) is not list:
        return value
    out: list[Any] = []
    for part in value:
        digest, media_type = (
            (part.get("sha256"), part.get("media_type")) if isinstance(part, Mapping) else (0, 0)
        )
        if (
            isinstance(part, Mapping)
            and part.get("type") == "attachment"
            and isinstance(digest, str)
            and isinstance(media_type, str)
        ):
            url = f"data:{media_type};base64,{base64.b64encode(load(digest)).decode('ascii')}"
            if media_type.startswith("image/"):
                out.append({"type": "image_url", "image_url": {"url": url}})
            else:
                out.append({"type": "file", "file": {"file_data": url, "filename": part.get("filename")}})
        else:
            out.append(part)
    return out


_FILE_TEXT = re.compile(r'<file name="([^"]*)">\n(.*)\n</file>', re.S)
_CLOSE, _CLOSE_QUOTED = "</file", "<\\/file"  # a file's own "</file" cannot end its frame early


def files_in(value: Any) -> tuple[str, list[Attachment]]:
    """A user message's text and its files, from its content (as `message_content` built it): what a
    chat shows. A file this process attached is found again; another is decoded from its part."""
    if type(value) is not list:
        return str(value or ""), []
    text, files = "", []
    for i, part in enumerate(value):
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" and i == 0:
            text = str(part.get("text") or "")
        elif kind == "text" and (m := _FILE_TEXT.fullmatch(str(part.get("text") or ""))):
            body = m.group(2).replace(_CLOSE_QUOTED, _CLOSE)
            files.append(Attachment(m.group(1), "text/plain", "text", body.encode("utf-8")))
        elif kind in ("image_url", "file"):
            inner = part.get(kind)
            if isinstance(inner, str):  # litellm also takes {"image_url": "<url>"}
                inner = {"url": inner}
            inner = inner if isinstance(inner, Mapping) else {}
            url = str(inner.get("url" if kind == "image_url" else "file_data") or "")
            found = _found(url, str(inner.get("filename") or ("image" if kind == "image_url" else "file")))
            if found is not None:
                files.append(found)
    return text, files


def _found(url: str, name: str) -> Attachment | None:
    hit = _seen.get(id(url))
    if hit is not None and hit[0] is url:
        return hit[1]
    body = url.partition(",")[2]
    try:
        return attach(base64.b64decode(body, validate=True), name=name)
    except (ValueError, InvalidInputError):
        return None  # a part this chat cannot show is still sent: only the picture of it is missing


def without_data(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Messages with each inline file a short stand-in: what an offline model counts as tokens (an
    image as 85, a low-detail image's price at OpenAI) instead of the characters of its base64."""
    out: list[Mapping[str, Any]] = []
    for m in messages:
        c: Any = m.get("content")
        if type(c) is list:
            m = {**m, "content": [{"type": "attachment", "_": "x" * 330} if _inline(p) else p for p in c]}
        out.append(m)
    return out


def _inline(part: Any) -> bool:
    return isinstance(part, Mapping) and part.get("type") in ("image_url", "file")
