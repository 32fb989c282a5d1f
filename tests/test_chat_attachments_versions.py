"""An edited question's attachments, on both backends: the edit owns rows of its own (the
same stored files), so deleting either version, a failed reply after it or the whole
conversation never takes a file from a message that still shows it."""

from __future__ import annotations

import io

import openai
import pytest
from PIL import Image

from lib import chat
from lib.chat import with_documents
from lib.chat.attachments import Attachment
from lib.conversations import ConversationStore, Message
from lib.errors import ProviderError
from lib.store.backend import Backend
from lib.store.base import workspace_dir_name
from tests.fake_openai import FakeOpenAI

WS = "alice"
NOTES = b"Heron notes\n\nThe grey heron nests in colonies by the river, in tall trees."


def png(color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def ctx(backend: Backend, openai_server: FakeOpenAI) -> chat.ChatContext:
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")
    return chat.ChatContext(ConversationStore(backend, WS), client)


def read(*files: tuple[str, bytes]) -> list:
    return with_documents.read_files(list(files), limit_bytes=1_048_576, docs=None)


def files_of(ctx: chat.ChatContext, message: Message) -> list[Attachment]:
    return ctx.attachments.of([message]).get(message.id, [])


def shown(ctx: chat.ChatContext, message: Message) -> list[tuple[str, bytes]]:
    """What the message shows: each file's name and bytes, read from storage."""
    return [(a.name, ctx.attachments.read(a)) for a in files_of(ctx, message)]


def asked_and_edited(ctx: chat.ChatContext) -> tuple[str, Message, Message]:
    """A question with an image and a short text file, answered, then edited."""
    cid = ctx.store.create(model="gpt-5-mini").id
    list(chat.send(ctx, cid, "What is this?", read(("swatch.png", png()), ("notes.md", NOTES))))
    original = ctx.store.path(cid)[0]
    edited = chat.branch_edit(ctx.store, cid, original.id, "What colour is this?")
    return cid, original, edited


def test_an_edit_owns_copies_of_the_rows_over_the_same_files(ctx: chat.ChatContext) -> None:
    _, original, edited = asked_and_edited(ctx)
    before, after = files_of(ctx, original), files_of(ctx, edited)
    assert [a.name for a in after] == ["swatch.png", "notes.md"]  # in the order attached
    assert {a.id for a in before}.isdisjoint(a.id for a in after)
    assert {a.message_id for a in after} == {edited.id}
    assert [a.blob for a in after] == [a.blob for a in before]  # no second copy of a file
    assert [a.thumb for a in after] == [a.thumb for a in before]
    assert [a.text for a in after] == [a.text for a in before]
    assert shown(ctx, edited) == shown(ctx, original)


@pytest.mark.parametrize("deleted", ["original", "edited"])
def test_deleting_one_version_leaves_the_other_its_files(
    ctx: chat.ChatContext, deleted: str
) -> None:
    cid, original, edited = asked_and_edited(ctx)
    files = shown(ctx, original)
    gone, kept = (original, edited) if deleted == "original" else (edited, original)
    assert ctx.store.delete_messages_from(cid, gone.id) >= 1
    assert shown(ctx, ctx.store.get_message(cid, kept.id)) == files
    assert files_of(ctx, gone) == []  # its own rows went with it
    # An edit of the one kept has them too, and is sent with them.
    again = chat.branch_edit(ctx.store, cid, kept.id, "")
    assert shown(ctx, again) == files


def test_a_failed_reply_cleared_by_retry_leaves_both_versions_their_files(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid, original, edited = asked_and_edited(ctx)
    openai_server.fail(500)
    with pytest.raises(ProviderError):
        list(chat.Reply(ctx, ctx.store.get(cid), after=edited.id))
    failed = ctx.store.path(cid)[-1]
    assert failed.role == "assistant" and chat.needs_retry(failed)
    assert chat.rewind(ctx.store, cid) == edited.id  # the failed reply is deleted
    assert ctx.store.path(cid)[-1].id == edited.id
    assert shown(ctx, edited) == shown(ctx, original) and len(shown(ctx, edited)) == 2


def test_deleting_the_conversation_removes_every_version_and_file(
    ctx: chat.ChatContext, backend: Backend
) -> None:
    cid, original, edited = asked_and_edited(ctx)
    ids = [a.id for a in files_of(ctx, original) + files_of(ctx, edited)]
    other = ctx.store.create(model="gpt-5-mini").id
    list(chat.send(ctx, other, "And this?", read(("b.png", png("blue")))))
    ctx.store.delete(cid)
    assert ctx.attachments.get_many(ids) == {}
    folder = f"{workspace_dir_name(WS)}/attachments/"
    left = list(backend.blobs.keys(folder))
    assert left and all(k.startswith(f"{folder}{other}/") for k in left)  # the other's stay
    (kept,) = ctx.store.all_messages(other)[:1]
    assert [name for name, _ in shown(ctx, kept)] == ["b.png"]
