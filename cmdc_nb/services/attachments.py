"""Files attached to a session's messages: each stored as an artifact of the session, named on the
message, and read back checksum-verified.

>>> from cmdc_nb.providers.attachments import attach
>>> m = create_message_with_files(session, content="What does this chart say?",
...                               files=[attach("chart.png")])          # doctest: +SKIP
>>> [f.name for f in message_files(m)]                                   # doctest: +SKIP
['chart.png']

The message and its artifacts are one transaction: a message never names a file that was not stored,
and a file is never stored for a message that was not. The message's `attachments` list says of each
file what a reader needs without its bytes (name, media type, kind, size, SHA-256, pixel size) and the
artifact that holds it. An agent's user message with files is written here (`Agent.prompt(text,
files=[…])`), and rebuilt from here when the agent is restored or resumed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import AccessDeniedError, InvalidInputError, NotFoundError, StorageError
from cmdc_nb.providers.attachments import MAX_FILES, Attachment, attach
from cmdc_nb.services import artifacts, sessions
from cmdc_nb.store.enums import ArtifactSourceType, ArtifactType
from cmdc_nb.store.models import Artifact, Message, Session

__all__ = ["create_message_with_files", "message_files", "read_attached"]

_TYPE = {"image": ArtifactType.IMAGE, "pdf": ArtifactType.DOCUMENT, "text": ArtifactType.FILE}


def _checked_files(files: Any) -> list[Attachment]:
    if isinstance(files, str | bytes | Attachment) or not isinstance(files, Sequence):
        raise InvalidInputError(
            "files must be a list of Attachments (see providers.attachments.attach)", field="files"
        )
    if len(files) > MAX_FILES:
        raise InvalidInputError(f"at most {MAX_FILES} files go with one message", field="files")
    out = []
    for f in files:
        if not isinstance(f, Attachment):
            raise InvalidInputError(
                f"each file must be an Attachment (attach(path) makes one), got {type(f).__name__}",
                field="files",
            )
        out.append(attach(f))  # one made by hand is checked as any file is: what is stored is sound
    return out


@checked
def create_message_with_files(
    session: Session | uuid.UUID | str,
    *,
    content: str,
    files: Sequence[Attachment],
    role: str = "user",
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> Message:
    """Append a message with `files` to the session, each file an artifact of the session (source
    `upload`, source id the message), all in one transaction."""
    checked_files = _checked_files(files)
    workspace = get_workspace(ws)
    ids = [uuid.uuid4() for _ in checked_files]
    listed = [{**f.meta(), "artifact_id": str(aid)} for f, aid in zip(checked_files, ids, strict=True)]
    with workspace.transaction() as tx:
        message = sessions.create_message(
            session, role=role, content=content, attachments=listed, metadata=metadata, ws=workspace
        )
        owner = tx.db.scalar(sa.select(Session.user_id).where(Session.id == message.session_id))
        for f, aid in zip(checked_files, ids, strict=True):
            artifacts.insert_artifact_in(
                tx,
                aid,
                {
                    "user_id": owner,
                    "session_id": message.session_id,
                    "name": f.name,
                    "artifact_type": _TYPE[f.kind],
                    "mime_type": f.media_type,
                    "original_filename": f.name,
                    "source_type": ArtifactSourceType.UPLOAD,
                    "source_id": message.id,
                    "tags": ["attachment"],
                    "meta": {
                        "message_id": str(message.id),
                        **({"width": f.width, "height": f.height} if f.width else {}),
                    },
                },
                f.data,
            )
    return message


@checked
def message_files(message: Message | uuid.UUID | str, *, ws: Workspace | None = None) -> list[Attachment]:
    """The files of a stored message, their bytes read from its artifacts and checksum verified."""
    workspace = get_workspace(ws)
    with workspace.read() as db:
        row = fetch(db, Message, message, "message")
        listed = list(row.attachments or [])
    out = []
    for entry in listed:
        if not isinstance(entry, Mapping) or "artifact_id" not in entry:
            continue  # an attachment a seed-era message lists without a stored file
        data = artifacts.read_artifact(entry["artifact_id"], ws=workspace)
        a = attach(data, name=str(entry.get("name") or "file"))
        if a.sha256 != entry.get("sha256"):
            raise StorageError(
                f"message {row.id}: file {a.name} does not match the checksum it was stored with"
            )
        out.append(a)
    return out


def _readable(db: Any, session_id: uuid.UUID) -> bool:
    try:
        access.check_session_id(db, session_id, "read")
    except AccessDeniedError:
        return False
    return True


@checked
def read_attached(session: Session | uuid.UUID | str, sha256: str, *, ws: Workspace | None = None) -> bytes:
    """The bytes of the file with this SHA-256 attached in the session or a session it was forked
    from (what a stored prompt's reference names)."""
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise InvalidInputError("a SHA-256 is 64 hexadecimal characters", field="sha256")
    workspace = get_workspace(ws)
    with workspace.read() as db:
        sid = fetch(db, Session, session, "session").id
        access.check_session_id(db, sid, "read")
        # a fork's copied messages name files stored with the session they were first sent in; a
        # session the caller may no longer read is left out (what it holds is not theirs to learn of)
        chain = [s.id for s in sessions.lineage(sid, ws=workspace) if _readable(db, s.id)]
        aid = db.scalar(
            sa.select(Artifact.id)
            .where(
                Artifact.session_id.in_(chain),
                Artifact.checksum == sha256.lower(),
                Artifact.source_type == ArtifactSourceType.UPLOAD,
            )
            .limit(1)
        )
    if aid is None:
        raise NotFoundError("attachment", sha256)
    return artifacts.read_artifact(aid, ws=workspace)
