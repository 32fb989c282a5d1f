"""An edited question's attachments, on both backends: the edit owns rows of its own (the
same stored files), so deleting either version, a failed reply after it or the whole
conversation never takes a file from a message that still shows it; and the files that no
remaining row names go with their messages (Reset, delete-from, conversation delete),
never another conversation's or another workspace's."""

from __future__ import annotations

import io
import logging

import openai
import pytest
from PIL import Image

from lib import chat
from lib.chat import with_documents
from lib.chat.attachments import Attachment, AttachmentStore
from lib.conversations import ConversationStore, Message
from lib.errors import NotFoundError, ProviderError
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


def stored(backend: Backend, workspace: str = WS, cid: str = "") -> set[str]:
    """The attachment files kept for the workspace (or one of its conversations)."""
    folder = f"{workspace_dir_name(workspace)}/attachments/" + (f"{cid}/" if cid else "")
    return set(backend.blobs.keys(folder))


def keys_of(atts: list[Attachment]) -> set[str]:
    return {k for a in atts for k in (a.blob, a.thumb, a.sent) if k}


def test_reset_deletes_every_file_of_the_conversation_only(
    ctx: chat.ChatContext, backend: Backend
) -> None:
    cid, _, _ = asked_and_edited(ctx)
    list(chat.send(ctx, cid, "And this?", read(("b.png", png("blue")))))
    other = ctx.store.create(model="gpt-5-mini").id
    list(chat.send(ctx, other, "Keep me", read(("c.png", png("green")))))
    kept = stored(backend, cid=other)
    assert len(stored(backend, cid=cid)) == 5  # two images (file, thumb) and notes.md
    assert ctx.store.clear_messages(cid) >= 5
    assert stored(backend, cid=cid) == set()
    assert stored(backend) == kept and len(kept) == 2
    assert ctx.store.all_messages(cid) == []


def test_deleting_from_a_message_deletes_only_the_files_after_it(
    ctx: chat.ChatContext, backend: Backend
) -> None:
    cid = ctx.store.create(model="gpt-5-mini").id
    list(chat.send(ctx, cid, "First", read(("a.png", png()))))
    list(chat.send(ctx, cid, "Second", read(("b.png", png("blue")), ("notes.md", NOTES))))
    first, _, second, _ = ctx.store.path(cid)
    assert ctx.store.delete_messages_from(cid, second.id) == 2
    assert stored(backend, cid=cid) == keys_of(files_of(ctx, first))
    assert [name for name, _ in shown(ctx, first)] == ["a.png"]


def test_a_shared_file_stays_until_no_version_names_it(
    ctx: chat.ChatContext, backend: Backend
) -> None:
    cid, original, edited = asked_and_edited(ctx)
    files = keys_of(files_of(ctx, edited))
    assert files == keys_of(files_of(ctx, original)) == stored(backend, cid=cid)
    ctx.store.delete_messages_from(cid, original.id)
    assert stored(backend, cid=cid) == files  # the edit still names every one
    ctx.store.delete_messages_from(cid, edited.id)
    assert stored(backend, cid=cid) == set()  # the last version went: so did its files


def test_another_workspaces_files_are_untouched(ctx: chat.ChatContext, backend: Backend) -> None:
    bob = chat.ChatContext(ConversationStore(backend, "bob"), ctx.client)
    bobs = bob.store.create(model="gpt-5-mini").id
    list(chat.send(bob, bobs, "Bob's", read(("bob.png", png("blue")))))
    theirs = stored(backend, "bob")
    cid, original, _ = asked_and_edited(ctx)
    mine = stored(backend, cid=cid)
    for attempt in (
        lambda: bob.store.clear_messages(cid),
        lambda: bob.store.delete_messages_from(cid, original.id),
        lambda: bob.store.delete(cid),
    ):
        with pytest.raises(NotFoundError):
            attempt()
    assert stored(backend, cid=cid) == mine
    ctx.store.clear_messages(cid)
    ctx.store.delete(cid)
    assert stored(backend) == set()
    assert stored(backend, "bob") == theirs and len(theirs) == 2
    assert [name for name, _ in shown(bob, bob.store.path(bobs)[0])] == ["bob.png"]


@pytest.mark.parametrize("delete", ["clear", "from", "conversation"])
def test_a_file_that_cannot_be_deleted_stays_and_the_rows_go(
    ctx: chat.ChatContext,
    backend: Backend,
    delete: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cid, original, edited = asked_and_edited(ctx)
    ids = [a.id for a in files_of(ctx, original) + files_of(ctx, edited)]
    files = stored(backend, cid=cid)

    def refuse(key: str) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(backend.blobs, "delete", refuse)
    with caplog.at_level(logging.WARNING, logger="lib.conversations"):
        if delete == "clear":
            assert ctx.store.clear_messages(cid) == 3
        elif delete == "from":
            for version in (original, edited):  # the second is the last to name the files
                assert ctx.store.delete_messages_from(cid, version.id) >= 1
        else:
            ctx.store.delete(cid)
    assert ctx.attachments.get_many(ids) == {}  # the rows are gone, committed
    assert stored(backend, cid=cid) == files  # the files are left, never a row without one
    assert "could not delete an attachment file" in caplog.text
    monkeypatch.undo()
    if delete != "conversation":
        ctx.store.delete(cid)  # the folder goes with the conversation, leftovers included
        assert stored(backend, cid=cid) == set()


def test_an_edit_saved_as_its_original_is_deleted_names_no_deleted_file(
    ctx: chat.ChatContext, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs: one deletes the question just after the other read its attachments to
    save an edit; the edit's copies would name files already deleted."""
    cid, _, _ = asked_and_edited(ctx)
    list(chat.send(ctx, cid, "Again", read(("late.png", png("blue")))))
    late = ctx.store.path(cid)[-2]
    read_rows = AttachmentStore.get_many

    def read_then_deleted(store: AttachmentStore, ids: list[str]) -> dict[str, Attachment]:
        found = read_rows(store, ids)
        ctx.store.delete_messages_from(cid, late.id)  # the other tab, in between
        return found

    monkeypatch.setattr(AttachmentStore, "get_many", read_then_deleted)
    edit = chat.branch_edit(ctx.store, cid, late.id, "Too late")
    monkeypatch.undo()
    assert edit.meta["attachments"] and files_of(ctx, edit) == []
    named = ctx.attachments.get_many(
        a for m in ctx.store.all_messages(cid) for a in m.meta.get("attachments") or []
    )
    assert len(named) == 4  # the first question's two versions, each with two files
    assert all(backend.blobs.exists(k) for k in keys_of(list(named.values())))
