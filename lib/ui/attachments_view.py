"""The chat box's attachments: what it accepts, reading and sending what was attached
(with a progress bar while a long document is indexed), and attachments in the transcript.

File names are user text: shown through `lib.markup.escape`, never as Markdown that could
load anything. Images are shown as thumbnails from bytes read out of the blob store, so
the browser never sees a key. Answers citing attached documents get the Documents page's
sources panel and spelled-out citations (`lib.ui.documents_chat`, which the page passes
in: it builds on `lib.ui.chat_view`, which builds on this module).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from lib import chat
from lib.chat.attachments import (
    IMAGE_SUFFIXES,
    MAX_FILES,
    Attachment,
    AttachmentStore,
    NewAttachment,
    is_image_name,
)
from lib.chat.with_documents import answer_for, link, read_files
from lib.conversations import ConversationStore, Message
from lib.documents import rag
from lib.documents.library import DocumentLibrary
from lib.errors import InvalidInputError, NotFoundError
from lib.markup import escape
from lib.settings import Settings
from lib.ui import clients, documents_view

TYPES = [*IMAGE_SUFFIXES, *documents_view.TYPES]  # what the chat box's file picker offers
THUMB_WIDTH = 160  # pixels a thumbnail takes in a bubble


def documents(ctx: chat.ChatContext, current: Settings) -> rag.DocContext:
    """The session's document library, searched with embeddings where the server has them."""
    library = documents_view.library(current)
    missing = clients.capabilities(current, ctx.client).missing("embeddings")
    embedder = None if missing else documents_view.embedder(current, ctx.client, library)
    return rag.DocContext(ctx, library, embedder)


def read(ctx: chat.ChatContext, current: Settings, uploads: Sequence) -> list[NewAttachment]:
    """The chat box's files checked and read (`lib.chat.with_documents.read_files`); the
    first refusal raises, naming the file."""
    if not uploads:
        return []
    if len(uploads) > MAX_FILES:
        raise InvalidInputError(f"Attach at most {MAX_FILES} files to one message.")
    named = [(f.name, f.getvalue()) for f in uploads]
    docs = documents(ctx, current) if any(not is_image_name(n) for n, _ in named) else None
    bar = st.progress(0.0, text="Reading the attached files…") if docs else None

    def tick(_stage: str, _done: int, _total: int, message: str, fraction: float) -> None:
        if bar is not None:
            bar.progress(min(fraction, 1.0), text=escape(message))

    try:
        limit = documents_view.upload_limit_mb() * 1_048_576
        return read_files(named, limit_bytes=limit, docs=docs, ocr=current.ocr, progress=tick)
    finally:
        if bar is not None:
            bar.empty()


def send(
    ctx: chat.ChatContext,
    current: Settings,
    conversation_id: str,
    text: str,
    files: Sequence[NewAttachment],
) -> chat.Reply:
    """Send the message with its files; the reply cites attached documents if any."""
    reply = chat.send(ctx, conversation_id, text, files)
    if any(f.kind == "document" for f in files):
        link(documents(ctx, current), conversation_id, files)
    return answer(ctx, current, reply)


def answer(ctx: chat.ChatContext, current: Settings, reply: chat.Reply) -> chat.Reply:
    """`reply`, or the answer from the conversation's attached documents when it has any
    (asked of the library first, so a chat without documents probes nothing)."""
    if not documents_view.library(current).conversation_documents(reply.conv.id):
        return reply
    return answer_for(documents(ctx, current), reply)


def draw_new(files: Sequence[NewAttachment]) -> None:
    """The files of a message just sent, in its bubble."""
    for f in files:
        if f.kind == "image" and f.thumb:
            st.image(f.thumb, width=THUMB_WIDTH)
        st.caption(_label(f.kind, f.name, len(f.data), f.width, f.height))


def in_transcript(
    current: Settings, store: ConversationStore, sources: Callable[[DocumentLibrary, Message], None]
) -> Callable[[Message], None]:
    """What a bubble shows besides its text: a user message's attachments; an answer's
    `sources` (the Documents page's panel) when it cites attached documents."""
    files = AttachmentStore(store.backend, store.workspace)

    def extra(message: Message) -> None:
        if message.meta.get("attachments"):
            for att in files.of([message]).get(message.id, []):
                _draw(files, att)
        if message.meta.get("citations") is not None:
            sources(documents_view.library(current), message)

    return extra


def _draw(files: AttachmentStore, att: Attachment) -> None:
    if att.kind == "image":
        try:
            st.image(files.read(att, "thumb"), width=THUMB_WIDTH)
        except NotFoundError:
            st.caption(":material/broken_image: This image is no longer stored.")
    st.caption(_label(att.kind, att.name, att.size, att.width, att.height))


def _label(kind: str, name: str, size: int, width: int | None, height: int | None) -> str:
    shown = f"{size / 1024:.0f} KB" if size < 1_048_576 else f"{size / 1_048_576:.1f} MB"
    if kind == "image":
        return f":material/image: {escape(name)} · {width} × {height} · {shown}"
    how = "sent in full" if kind == "text" else "in your library: passages searched each turn"
    return f":material/description: {escape(name)} · {shown} · {how}"
