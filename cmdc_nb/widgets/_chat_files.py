"""Files and images in the chat: an Attach button (the browser's file picker), files dropped on the
chat, chips under the input box for what goes with the next prompt, and thumbnails in the prompt's
bubble.

What a file is, and whether the chosen model takes it, is decided by `providers.attachments`: a
refused file is explained in a sentence where the chips are, and a model that cannot see the images
waiting to be sent is named there before Send is pressed (switching the model clears the sentence).
The files go with the next Send (`send(text, files=…)` in code), are stored as artifacts of the
session, and stay in the prompt's bubble as thumbnails (PDFs and text files as labelled chips).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.providers.attachments import MAX_FILE_BYTES, MAX_FILES, Attachment, attach, refusal
from cmdc_nb.widgets._render import escape

__all__ = ["ACCEPT", "ChatFiles", "files_html"]

# what the file picker offers (the bytes decide in the end: a renamed file is still refused)
ACCEPT = "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/*,.md,.csv,.json,.py,.txt"
_BADGE = {"pdf": "PDF", "text": "TXT"}


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB" if n >= 1024 else f"{n} B"


def files_html(files: Sequence[Mapping[str, Any]]) -> str:
    """The files of a prompt as its bubble shows them: an image as its thumbnail, another file as a
    labelled chip; each names the file and its size (the name also as the picture's alt text)."""
    if not files:
        return ""
    out = []
    for f in files:
        raw = f.get("size")
        name, size = escape(str(f.get("name") or "file")), _size(raw if isinstance(raw, int) else 0)
        thumb = f.get("thumbnail")
        if isinstance(thumb, str) and thumb.startswith(("data:image/jpeg;base64,", "data:image/png;base64,")):
            picture = f'<img class="cmdc-thumb" src="{escape(thumb)}" alt="{name}">'
        else:
            picture = f'<span class="cmdc-file-badge">{_BADGE.get(str(f.get("kind")), "FILE")}</span>'
        out.append(
            f'<figure class="cmdc-file" title="{name} · {size}">{picture}<figcaption>{name}</figcaption></figure>'
        )
    return f'<div class="cmdc-files">{"".join(out)}</div>'


FILES_CSS = """<style>
.cmdc-files { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }
.cmdc-file { margin: 0; display: flex; flex-direction: column; align-items: center; max-width: 96px; }
.cmdc-file figcaption { font-size: 11px; max-width: 96px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.cmdc-thumb { max-width: 96px; max-height: 72px; border-radius: 4px; border: 1px solid var(--jp-border-color1, #999); }
.cmdc-file-badge { display: inline-block; padding: 14px 10px; border-radius: 4px; font-weight: 600; font-size: 12px;
  background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color0, #111); border: 1px solid var(--jp-border-color1, #999); }
.cmdc-pending { flex-wrap: wrap; align-items: center; gap: 4px; }
.cmdc-files-note div { color: var(--jp-ui-font-color1, #1f2328); font-size: 12px; border-left: 3px solid var(--jp-warn-color0, #e65100); padding-left: 6px; margin: 2px 0; }
.cmdc-chatwidget.cmdc-drop .cmdc-scroll { outline: 2px dashed var(--jp-brand-color1, #1976d2); outline-offset: -4px; }
</style>"""


class ChatFiles:
    """The files of a ChatWidget (a mixin: the methods assume a `ChatWidget`)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    pending_files: list[Attachment]

    def _files_parts(self) -> tuple[w.FileUpload, w.HBox, w.HTML]:
        """The Attach button, the chips of the files waiting for Send, and the sentence about them."""
        self.pending_files = []
        self.attach_button = w.FileUpload(
            accept=ACCEPT,
            multiple=True,
            description="Attach",
            icon="paperclip",
            layout=w.Layout(width="124px"),
        )
        self.attach_button.add_class("cmdc-attach")
        self.attach_button.observe(self._uploaded, names="value")
        self.files_box = w.HBox([], layout=w.Layout(display="none"))
        self.files_box.add_class("cmdc-pending")
        self.files_note = w.HTML()
        self.files_note.add_class("cmdc-files-note")
        self.follow.on_dropped(
            lambda names, blobs, big: self._safely("attaching", lambda: self._dropped(names, blobs, big))
        )
        return self.attach_button, self.files_box, self.files_note

    def attach(self, *files: Any) -> list[Attachment]:
        """Add files (paths, bytes or `attach(...)` results) to what goes with the next Send. A file
        that cannot go is refused with a sentence; the others are kept."""
        added: list[Attachment] = []
        for f in files:
            if isinstance(f, list | tuple):
                raise InvalidInputError("pass each file as its own argument: attach(a, b)", field="files")
            added.append(attach(f))
        if len(self.pending_files) + len(added) > MAX_FILES:
            raise InvalidInputError(f"at most {MAX_FILES} files go with one prompt", field="files")
        self.pending_files = [*self.pending_files, *added]
        self._show_pending()
        return added

    def remove_file(self, name: str) -> None:
        """Take a waiting file back (the newest of that name)."""
        for i in range(len(self.pending_files) - 1, -1, -1):
            if self.pending_files[i].name == name:
                del self.pending_files[i]
                self._show_pending()
                return
        raise InvalidInputError(f"no file named {name!r} is waiting to be sent", field="name")

    def _sent_files(self) -> None:
        self.pending_files = []
        self._show_pending()

    def _uploaded(self, change: Mapping[str, Any]) -> None:
        picked = change["new"]
        if not picked:
            return
        self._safely(
            "attaching", lambda: self._add_uploads([(f["name"], bytes(f["content"])) for f in picked])
        )
        self.attach_button.value = ()  # the same file can be picked again

    def _dropped(self, names: Sequence[str], blobs: Sequence[bytes], too_big: Sequence[str] = ()) -> None:
        limit = MAX_FILE_BYTES // 2**20
        self._add_uploads(
            list(zip(names, blobs, strict=True)),
            [f"{n} is over {limit} MB, the most a model takes" for n in too_big],
        )

    def _add_uploads(self, uploads: Sequence[tuple[str, bytes]], refused: Sequence[str] = ()) -> None:
        refused = list(refused)
        for name, data in uploads:
            try:
                self.attach(attach(data, name=name))
            except InvalidInputError as exc:
                refused.append(str(exc).removeprefix("files: "))
        self._show_pending(refused)

    def _show_pending(self, refused: Sequence[str] = ()) -> None:
        chips: list[w.Widget] = []
        for f in self.pending_files:
            remove = w.Button(
                description="×", tooltip=f"remove {f.name}", layout=w.Layout(width="auto", min_width="32px")
            )
            remove.on_click(
                lambda _b, n=f.name: self._safely("removing the file", lambda: self.remove_file(n))
            )
            chips.append(
                w.HBox([w.HTML(files_html([f.meta()])), remove], layout=w.Layout(align_items="center"))
            )
        self.files_box.children = chips
        self.files_box.layout.display = "flex" if chips else "none"
        said = [*refused]
        cannot = refusal(self.agent.model, self.pending_files) if self.pending_files else None
        if cannot:
            said.append(cannot)
        self.files_note.value = "".join(f"<div>{escape(s)}</div>" for s in said)
        self._snapshot_changed()
