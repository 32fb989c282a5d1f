"""Files attached to a chat message: checked on the way in, stored with the conversation,
and sent to the model with the message they belong to.

Three kinds, decided when a file is attached (`lib.chat.with_documents` reads documents):

- "image": PNG, JPEG, WebP or GIF, sent as an OpenAI image part (a `data:` URL) to models
  that take images. The file is kept as uploaded; one larger than MAX_SIDE on a side is
  also kept scaled down, and that copy is what is sent: OpenAI itself shrinks an image to
  fit 2048 x 2048 before reading it, so more pixels only cost upload (a 4032 x 3024 phone
  photo is ~3.5 MB of JPEG, 4.7 MB as base64, on every turn). A model known not to take
  images (`ChatContext.accepts_images` says False) is refused the message up front; an
  image earlier in the history then goes as a line of text saying it was not sent.
- "text": a PDF or text file short enough to send whole (`with_documents.INLINE_TOKENS`):
  its extracted text is stored here and goes into the message under its file name.
- "document": a longer one, indexed in the workspace's document library; its passages are
  retrieved per turn and cited like on the Documents page, and the message says only
  that it is attached.

Rows live in the `attachments` table (migration 0009 on both backends), bound to the
workspace like every store; files go through the blob store under generated keys,
`<workspace dir>/attachments/<conversation id>/<attachment id>.<ext>`: the user's file
name is only ever shown, never part of a key, and a row names only files in its own
conversation's folder. Deleting messages deletes the files no remaining row names
(`ConversationStore._delete_with_files`, used by Reset, delete-from and conversation
delete); deleting a conversation also deletes its folder. The message itself lists its
attachments' ids in `meta["attachments"]`, so a conversation without any costs no query
to draw or send.
Each row belongs to one message and is deleted with it; an edited question gets copies of
the original's rows over the same files (`save_version`), never the original's own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from PIL import Image, UnidentifiedImageError

from lib.conversation import Message
from lib.conversations import ConversationStore
from lib.errors import InvalidInputError, NotFoundError
from lib.images import FORMATS, MAX_IMAGE_PIXELS
from lib.store.base import WorkspaceStore

log = logging.getLogger(__name__)
KINDS = ("image", "text", "document")
IMAGE_SUFFIXES = ("png", "jpg", "jpeg", "webp", "gif")
MAX_SIDE = 2048  # pixels: what OpenAI reads of an image at most (see the docstring)
THUMB_EDGE = 320  # pixels: a thumbnail in the transcript
MAX_FILES = 10  # per message
# OpenAI's count for an image at "auto"/high detail: fit in 2048 x 2048, shortest side to
# 768, then 170 tokens per 512-pixel tile plus 85 (a 1024 x 1024 image: 4 tiles, 765).
IMAGE_BASE_TOKENS, IMAGE_TILE_TOKENS = 85, 170


@dataclass(frozen=True)
class Attachment:
    id: str
    workspace: str
    conversation_id: str
    message_id: int | None
    kind: str  # image | text | document
    name: str  # as uploaded: shown (escaped), never a path
    mime: str
    size: int
    sha256: str
    blob: str  # the file as uploaded
    thumb: str | None = None  # an image's thumbnail
    sent: str | None = None  # a large image scaled down, as sent; None: the original
    width: int | None = None
    height: int | None = None
    text: str | None = None  # a "text" attachment's extracted text, sent whole
    tokens: int = 0  # what it adds to the message (cl100k; an image's OpenAI count)
    document_id: str | None = None  # a "document" attachment's library document
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row: Any) -> Attachment:
        data = dict(row)
        data["meta"] = json.loads(data["meta"] or "{}")
        return cls(**data)

    @property
    def extension(self) -> str:
        return self.blob.rsplit(".", 1)[-1]


_COLUMNS = [f.name for f in fields(Attachment)]


@dataclass
class NewAttachment:
    """A file checked and ready to be saved with its message."""

    kind: str
    name: str
    mime: str
    extension: str  # of the stored file: from what the content is, not the name
    data: bytes
    thumb: bytes | None = None
    sent: bytes | None = None
    width: int | None = None
    height: int | None = None
    text: str | None = None
    tokens: int = 0
    document_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def is_image_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES if "." in name else False


def image_tokens(width: int, height: int) -> int:
    """What OpenAI counts for an image of this size (see IMAGE_BASE_TOKENS)."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * math.ceil(w / 512) * math.ceil(h / 512)


def checked_image(name: str, data: bytes) -> NewAttachment:
    """An uploaded image, checked (format, pixel count, decodable), with its thumbnail and,
    when larger than MAX_SIDE, the scaled copy to send; else InvalidInputError."""
    if not data:
        raise InvalidInputError(f"{name} is empty (0 bytes).")
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidInputError(
                    f"{name} is {width} x {height} pixels; Parley opens images of at most "
                    f"{MAX_IMAGE_PIXELS / 1e6:.1f} million pixels.",
                    hint="Scale it down and attach it again.",
                )
            img.load()  # the pixels themselves: a truncated file fails here
            if fmt not in FORMATS:
                raise InvalidInputError(
                    f"{name} is a {fmt} image; models take PNG, JPEG, WebP or GIF images."
                )
            thumb = _encoded(img, THUMB_EDGE)
            sent = _encoded(img, MAX_SIDE) if max(width, height) > MAX_SIDE else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        # Only here: the documents stack (PDFium, pypdf) is not loaded for every chat.
        from lib.documents.extract import describe_content

        looks = describe_content(data)
        detail = f": it looks like {looks}" if looks else ""
        raise InvalidInputError(f"{name} is not an image that can be read{detail}.") from exc
    mime, extension = FORMATS[fmt]
    shown = (width, height) if sent is None else _fitted(width, height, MAX_SIDE)
    meta = {"scaled_from": [width, height]} if sent else {}
    return NewAttachment(
        "image", name, mime, extension, data, thumb, sent, width, height,
        tokens=image_tokens(*shown), meta=meta,
    )  # fmt: skip


def _fitted(width: int, height: int, edge: int) -> tuple[int, int]:
    scale = min(1.0, edge / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encoded(img: Image.Image, edge: int) -> bytes:
    """`img` fitted in edge x edge, as JPEG (PNG when it has transparency)."""
    small = img.copy()
    small.thumbnail((edge, edge), reducing_gap=2.0)
    alpha = small.mode in ("RGBA", "LA", "PA") or "transparency" in small.info
    out = io.BytesIO()
    if alpha:
        small.convert("RGBA").save(out, format="PNG", optimize=True)
    else:
        small.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


class AttachmentStore(WorkspaceStore):
    """One workspace's attachments: rows in `attachments`, files in the blob store."""

    def save_message(
        self,
        conversation_id: str,
        message: Message,
        files: Sequence[NewAttachment],
        **placement: Any,
    ) -> Message:
        """Save `message` with `files`: the blobs first, then the message (where
        `placement` says, as `ConversationStore.add_message` takes it) and the rows in one
        transaction; on any failure the blobs written are removed again, so there is never
        a row without its file, nor a message missing an attachment."""
        now, written, rows = time.time(), [], []
        try:
            for new in files:
                att_id = uuid.uuid4().hex
                keys = {}
                for part, data, ext in (
                    ("blob", new.data, new.extension),
                    ("thumb", new.thumb, "thumb." + _ext(new.thumb)),
                    ("sent", new.sent, "sent." + _ext(new.sent)),
                ):
                    if data is None:
                        keys[part] = None
                        continue
                    key = self.blob_key("attachments", f"{conversation_id}/{att_id}.{ext}")
                    self.blobs.put(key, data)
                    written.append(key)
                    keys[part] = key
                rows.append(_row(self, att_id, conversation_id, new, keys, now))
            self._add_with_rows(conversation_id, message, rows, placement)
        except BaseException:
            for key in written:
                self._forget(key)
            raise
        return message

    def save_version(
        self, conversation_id: str, message: Message, original: Message, **placement: Any
    ) -> Message:
        """Save `message` (an edit of `original`) with `original`'s attachments as rows of
        its own: new ids, the same stored files. A row belongs to one message and goes with
        it (ON DELETE CASCADE), so a version sharing the original's rows lost its files
        when the original was deleted; copies keep each version's files whatever happens
        to the other. A file is deleted once no row of the conversation names it
        (`ConversationStore._delete_with_files`), so the copies keep it."""
        found = self.get_many(original.meta.get("attachments") or [])
        now = time.time()
        rows = [
            {**{c: getattr(att, c) for c in _COLUMNS}, "id": uuid.uuid4().hex,
             "meta": json.dumps(att.meta), "created_at": now, "_source": att.id}
            for i in original.meta.get("attachments") or [] if (att := found.get(i))
        ]  # fmt: skip
        self._add_with_rows(conversation_id, message, rows, placement)
        return message

    def _add_with_rows(
        self, conversation_id: str, message: Message, rows: list[dict], placement: dict
    ) -> None:
        """The message (listing `rows` in its meta) and its rows, in one transaction.

        A row copied from another (`_source`, by `save_version`) is written only if its
        source is still there once the message is added, which locks the conversation's row
        as deleting messages does first: copied before the delete reads, the copy keeps the
        file; after it, the copy is dropped, so no row is ever left naming a deleted file
        (the message's meta may then list an id with no row, which `of` skips)."""
        conversations = ConversationStore(self.backend, self.workspace)
        message.meta["attachments"] = [r["id"] for r in rows]
        try:
            with self._transaction() as conn:
                conversations.add_message(conversation_id, message, **placement)
                rows = self._sources_kept(conn, conversation_id, rows)
                for r in rows:
                    r["message_id"] = message.id
                conn.executemany(
                    f"INSERT INTO attachments ({', '.join(_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                    [[r[c] for c in _COLUMNS] for r in rows],
                )
        except BaseException:
            message.meta.pop("attachments", None)
            raise

    def _sources_kept(self, conn: Any, conversation_id: str, rows: list[dict]) -> list[dict]:
        """`rows` without the copies whose source row is gone (or not this conversation's)."""
        sources = [r["_source"] for r in rows if "_source" in r]
        if not sources:
            return rows
        there = {
            r[0]
            for r in conn.execute(
                f"SELECT id FROM attachments WHERE workspace = ? AND conversation_id = ? "
                f"AND id IN ({', '.join('?' * len(sources))})",
                [self.workspace, conversation_id, *sources],
            ).fetchall()
        }
        return [r for r in rows if "_source" not in r or r["_source"] in there]

    def get_many(self, ids: Iterable[str]) -> dict[str, Attachment]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM attachments "
                f"WHERE workspace = ? AND id IN ({marks})",
                [self.workspace, *ids],
            ).fetchall()
        return {r["id"]: Attachment.from_row(r) for r in rows}

    def of(self, messages: Iterable[Message]) -> dict[int, list[Attachment]]:
        """Each message's attachments, in the order attached (one query, none if no
        message has any)."""
        wanted = {m.id: m.meta.get("attachments") or [] for m in messages}
        found = self.get_many(i for ids in wanted.values() for i in ids)
        return {mid: [found[i] for i in ids if i in found] for mid, ids in wanted.items() if ids}

    def read(self, att: Attachment, part: str = "blob") -> bytes:
        """The file as uploaded ("blob"), its thumbnail ("thumb") or the copy sent
        ("sent"), falling back to the original; NotFoundError when it is gone."""
        key = getattr(att, part) or att.blob
        folder = self.blob_key("attachments", att.conversation_id) + "/"
        if att.workspace != self.workspace or not key.startswith(folder):
            raise NotFoundError("Attachment not found.")
        return self.blobs.get(key)

    def export_entries(self, messages: Iterable[Message], *, data: bool) -> dict[int, list[dict]]:
        """What an export says of each message's attachments; `data` adds the file as
        base64 (a file missing from storage is said to be missing)."""
        out: dict[int, list[dict]] = {}
        for mid, atts in self.of(messages).items():
            entries = []
            for att in atts:
                entry = {"name": att.name, "kind": att.kind, "mime": att.mime, "size": att.size,
                         "sha256": att.sha256}  # fmt: skip
                if att.width:
                    entry["width"], entry["height"] = att.width, att.height
                if att.document_id:
                    entry["document_id"] = att.document_id
                if data:
                    try:
                        entry["data_base64"] = base64.b64encode(self.read(att)).decode("ascii")
                    except NotFoundError:
                        entry["missing"] = True
                entries.append(entry)
            out[mid] = entries
        return out

    def for_prompt(
        self,
        messages: Sequence[Message],
        model: str,
        accepts_images: Callable[[str], bool | None],
        count: Callable[[str], int],
    ) -> PromptFiles:
        """The attachments of `messages` as one request sends them (`lib.prompt.prepare`).
        `accepts_images` is asked only if an image is among them: a chat without one never
        waits on a capability probe before its first token."""
        return PromptFiles(self, messages, model, accepts_images, count)

    def _forget(self, key: str) -> None:
        try:
            self.blobs.delete(key)
        except Exception as exc:  # noqa: BLE001 - cleaning up; the caller's error stands
            log.warning("could not remove an attachment blob: %s", exc)


def _ext(data: bytes | None) -> str:
    return "png" if data and data.startswith(b"\x89PNG") else "jpg"


def _row(
    store: AttachmentStore, att_id: str, cid: str, new: NewAttachment, keys: dict, now: float
) -> dict[str, Any]:
    return {
        "id": att_id, "workspace": store.workspace, "conversation_id": cid, "message_id": None,
        "kind": new.kind, "name": new.name, "mime": new.mime, "size": len(new.data),
        "sha256": hashlib.sha256(new.data).hexdigest(), "blob": keys["blob"],
        "thumb": keys["thumb"], "sent": keys["sent"], "width": new.width, "height": new.height,
        "text": new.text, "tokens": new.tokens, "document_id": new.document_id,
        "meta": json.dumps(new.meta), "created_at": now,
    }  # fmt: skip


# Sending


def not_sent_note(att: Attachment, model: str) -> str:
    return f"[Image {att.name} was not sent: {model} does not accept images.]"


def file_block(att: Attachment) -> str:
    """A short document as it goes into the message: whole, under its name."""
    name = att.name.replace('"', "'").replace("<", "(").replace(">", ")")
    if att.kind == "text":
        return f'<file name="{name}">\n{(att.text or "").strip()}\n</file>'
    return (
        f'<file name="{name}">\n(A long document, in the user\'s library: passages from it '
        "come with the sources when they match the question.)\n</file>"
    )


class PromptFiles:
    """The attachments of the messages going into one request: their token counts and the
    content each message is sent with."""

    def __init__(
        self,
        store: AttachmentStore,
        messages: Sequence[Message],
        model: str,
        accepts_images: Callable[[str], bool | None],
        count: Callable[[str], int],
    ) -> None:
        self.store, self.model, self.count = store, model, count
        has_any = any(m.meta.get("attachments") for m in messages)
        self.attached = store.of(messages) if has_any else {}
        images = any(a.kind == "image" for atts in self.attached.values() for a in atts)
        self.accepts_images = accepts_images(model) if images else None

    def counted(self, message: Message) -> Message:
        """`message` with its attachments' tokens added to its count (a copy; the stored
        count stays the text's own)."""
        atts = self.attached.get(message.id)
        if not atts:
            return message
        extra = 0
        for att in atts:
            if att.kind == "image" and self.accepts_images is not False:
                extra += att.tokens
            elif att.kind == "image":
                extra += self.count(not_sent_note(att, self.model))
            else:
                extra += self.count(file_block(att))
        return replace(message, tokens=(message.tokens or 0) + extra)

    def content(self, message: Message) -> str | list[dict[str, Any]]:
        """The API content: the text with any documents after it; with images, a list of
        parts (text, then each image as a data: URL)."""
        atts = self.attached.get(message.id)
        if not atts:
            return message.content
        texts = [message.content] if message.content else []
        images = []
        for att in atts:
            if att.kind != "image":
                texts.append(file_block(att))
            elif self.accepts_images is False:
                texts.append(not_sent_note(att, self.model))
            else:
                images.append(att)
        text = "\n\n".join(texts)
        if not images:
            return text
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        for att in images:
            try:
                data = self.store.read(att, "sent")
            except NotFoundError:
                parts.append({"type": "text", "text": f"[Image {att.name} is missing.]"})
                continue
            mime = att.mime if att.sent is None else _mime_of(data)
            url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return parts


def _mime_of(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
