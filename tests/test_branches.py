"""Branches: a conversation is a tree of messages, one path of it shown and sent.

The store's tree (paths, siblings, switching, deleting a subtree), the chat turns that make
branches (regenerate any reply, edit any user message, n > 1 choices) and what the model is
sent, search and export over branches, and the upgrade of a database from before branches;
every store test on SQLite and PostgreSQL (the `backend` fixture).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from lib import chat, errors, export
from lib.client import build_client
from lib.conversations import ChatParams, ConversationStore, Message
from lib.pricing import PriceTable
from lib.settings import resolve_settings
from lib.store import postgres_schema
from lib.store import sqlite_schema as db
from lib.store.backend import open_backend
from tests import postgres as pg_server
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT


@pytest.fixture
def ctx(openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path) -> chat.ChatContext:
    settings = resolve_settings(
        {}, {}, {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test"}
    )
    settings = dataclasses.replace(settings, provider="openai", timeout=WAIT)
    return chat.ChatContext(store, build_client(settings), PriceTable.load(data_dir))


def contents(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def sent_history(server: FakeOpenAI) -> list[str]:
    """What the model was sent last, without the system prompt."""
    request = server.requests_to("/chat/completions")[-1].json
    return [m["content"] for m in request["messages"] if m["role"] != "system"]


def add(store: ConversationStore, cid: str, *texts: str, **where) -> list[Message]:  # noqa: ANN003
    """Messages alternating user/assistant (by position), the first placed by `where`."""
    added = []
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        added.append(store.add_message(cid, Message(role, text), **(where if i == 0 else {})))
    return added


# The store's tree


def test_messages_chain_into_one_path_by_default(store: ConversationStore) -> None:
    conv = store.create(model="m")
    q1, a1, q2 = add(store, conv.id, "q1", "a1", "q2")
    assert (q1.parent_id, a1.parent_id, q2.parent_id) == (None, q1.id, a1.id)
    assert store.get(conv.id).leaf_id == q2.id
    assert contents(store.path(conv.id)) == ["q1", "a1", "q2"]
    assert store.siblings(conv.id, store.path(conv.id)) == {}  # one version of each
    assert store.path_length(conv.id) == 3


def test_a_branch_is_shown_alone_and_switching_shows_the_newest_message_under_it(
    store: ConversationStore,
) -> None:
    conv = store.create(model="m")
    q1, a1, q2, a2 = add(store, conv.id, "q1", "a1", "q2", "a2")
    # A second version of q2, answered: the path now goes through it.
    q2b, a2b = add(store, conv.id, "q2 again", "a2 again", parent=a1.id)
    assert contents(store.path(conv.id)) == ["q1", "a1", "q2 again", "a2 again"]
    versions = store.siblings(conv.id, store.path(conv.id))
    assert set(versions) == {q2b.id}
    assert versions[q2b.id].ids == (q2.id, q2b.id) and versions[q2b.id].index == 1
    assert versions[q2b.id].step(-1) == q2.id and versions[q2b.id].step(1) is None

    # Back to the first version: the path runs down to its newest message, a2.
    assert store.show_branch(conv.id, q2.id) == a2.id
    assert contents(store.path(conv.id)) == ["q1", "a1", "q2", "a2"]
    # What the model would be sent for a reply after a2b, whatever is shown.
    assert contents(store.recent_messages(conv.id, 10, end=a2b.id))[-2:] == ["q2 again", "a2 again"]
    assert store.path_length(conv.id, end=q1.id) == 1


def test_first_messages_can_have_versions_too(store: ConversationStore) -> None:
    conv = store.create(model="m")
    first, _ = add(store, conv.id, "hello", "hi")
    again = store.add_message(conv.id, Message("user", "hello there"), parent=None)
    assert contents(store.path(conv.id)) == ["hello there"]
    versions = store.siblings(conv.id, store.path(conv.id))[again.id]
    assert versions.ids == (first.id, again.id)


def test_an_alternative_added_off_the_path_leaves_the_path_alone(store: ConversationStore) -> None:
    conv = store.create(model="m")
    q, a = add(store, conv.id, "q", "a")
    other = store.add_message(conv.id, Message("assistant", "b"), parent=q.id, current=False)
    assert contents(store.path(conv.id)) == ["q", "a"]
    assert store.siblings(conv.id, [a])[a.id].ids == (a.id, other.id)


def test_deleting_a_message_takes_its_subtree_and_the_path_ends_at_its_parent(
    store: ConversationStore,
) -> None:
    conv = store.create(model="m")
    q1, a1, q2, a2 = add(store, conv.id, "q1", "a1", "q2", "a2")
    q2b, a2b = add(store, conv.id, "q2b", "a2b", parent=a1.id)
    add(store, conv.id, "q3")  # on the shown branch, after a2b
    assert store.delete_messages_from(conv.id, q2b.id) == 3  # q2b, a2b, q3
    assert contents(store.all_messages(conv.id)) == ["q1", "a1", "q2", "a2"]
    assert store.get(conv.id).leaf_id == a1.id  # the path ran through q2b
    store.show_branch(conv.id, q2.id)
    assert store.delete_messages_from(conv.id, a2.id) == 1
    assert store.get(conv.id).leaf_id == q2.id
    assert contents(store.path(conv.id)) == ["q1", "a1", "q2"]
    # Deleting off the path leaves the path's end where it was.
    store.add_message(conv.id, Message("assistant", "a2c"), parent=q2.id, current=False)
    assert store.delete_messages_from(conv.id, store.all_messages(conv.id)[-1].id) == 1
    assert store.get(conv.id).leaf_id == q2.id
    assert store.clear_messages(conv.id) == 3 and store.get(conv.id).leaf_id is None
    assert store.path(conv.id) == []


def test_the_tree_never_reaches_another_conversation_or_workspace(
    store: ConversationStore,
) -> None:
    mine = store.create(model="m")
    theirs = ConversationStore(store.backend, "u_other")
    foreign = theirs.create(model="m")
    [their_message] = add(theirs, foreign.id, "secret")
    with pytest.raises(errors.NotFoundError):
        store.add_message(mine.id, Message("user", "x"), parent=their_message.id)
    with pytest.raises(errors.NotFoundError):
        store.show_branch(foreign.id, their_message.id)
    with pytest.raises(errors.NotFoundError):
        store.set_leaf(mine.id, their_message.id)
    with pytest.raises(errors.NotFoundError):
        store.recent_messages(foreign.id, 5)
    with pytest.raises(errors.NotFoundError):
        store.get_message(mine.id, their_message.id)
    assert theirs.get(foreign.id).leaf_id == their_message.id
    assert contents(theirs.path(foreign.id)) == ["secret"]


# Turns that make branches, and what the model is sent


def test_regenerating_an_earlier_reply_branches_and_sends_the_path_to_it(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = ctx.store.create(model="gpt-4o").id
    for q in ("one", "two", "three"):
        list(chat.send(ctx, cid, q))
    first_reply = ctx.store.path(cid)[1]
    openai_server.script("one, again")
    reply = chat.regenerate(ctx, cid, first_reply.id)
    assert "".join(reply) == "one, again"
    assert sent_history(openai_server) == ["one"]  # not what followed the old reply
    assert contents(ctx.store.path(cid)) == ["one", "one, again"]
    versions = ctx.store.siblings(cid, ctx.store.path(cid))[reply.message.id]
    assert versions.ids == (first_reply.id, reply.message.id)

    # Going on from the new branch sends it, never the old one's later turns.
    list(chat.send(ctx, cid, "four"))
    assert sent_history(openai_server) == ["one", "one, again", "four"]
    # Back to the old version: its later turns come back, and are what is sent.
    chat.switch(ctx.store, cid, first_reply.id)
    assert contents(ctx.store.path(cid)) == [
        "one", "Echo: one", "two", "Echo: two", "three", "Echo: three",
    ]  # fmt: skip
    list(chat.send(ctx, cid, "five"))
    assert sent_history(openai_server) == [
        "one", "Echo: one", "two", "Echo: two", "three", "Echo: three", "five",
    ]  # fmt: skip


def test_editing_an_earlier_question_keeps_the_old_one_as_a_version(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = ctx.store.create(model="gpt-4o").id
    list(chat.send(ctx, cid, "capital of Frnace?"))
    list(chat.send(ctx, cid, "and Spain?"))
    typo = ctx.store.path(cid)[0]
    list(chat.edit(ctx, cid, typo.id, "capital of France?"))
    assert sent_history(openai_server) == ["capital of France?"]
    path = ctx.store.path(cid)
    assert contents(path) == ["capital of France?", "Echo: capital of France?"]
    assert ctx.store.siblings(cid, path)[path[0].id].ids == (typo.id, path[0].id)
    assert len(ctx.store.all_messages(cid)) == 6  # nothing was deleted
    with pytest.raises(errors.InvalidInputError, match="Only your own"):
        chat.edit(ctx, cid, path[1].id, "not mine")
    with pytest.raises(errors.InvalidInputError, match="empty"):
        chat.branch_edit(ctx.store, cid, path[0].id, "   ")


def test_n_choices_are_siblings_and_the_one_shown_is_the_one_sent(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = ctx.store.create(model="gpt-4o", params=ChatParams(n=3)).id
    openai_server.script(["Alpha", "Beta", "Gamma"])
    reply = chat.send(ctx, cid, "name a letter")
    assert "".join(reply) == "Alpha"
    path = ctx.store.path(cid)
    assert contents(path) == ["name a letter", "Alpha"]
    versions = ctx.store.siblings(cid, path)[reply.message.id]
    assert len(versions) == 3 and versions.index == 0
    # The request's usage and cost are the first choice's; the others carry none.
    assert reply.message.cost is not None
    assert all(m.cost is None for m in reply.alternatives)
    chat.switch(ctx.store, cid, versions.step(1))
    assert contents(ctx.store.path(cid))[-1] == "Beta"
    openai_server.script(["ok"] * 3)
    list(chat.send(ctx, cid, "why?"))
    assert sent_history(openai_server) == ["name a letter", "Beta", "why?"]


def test_retrying_a_failed_reply_replaces_it_and_an_unanswered_question_is_answered(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = ctx.store.create(model="gpt-4o").id
    openai_server.misbehave("empty")
    with pytest.raises(errors.BadReply):
        list(chat.send(ctx, cid, "hello?"))
    assert [m.status for m in ctx.store.path(cid)] == ["ok", "failed"]
    assert "".join(chat.regenerate(ctx, cid)) == "Echo: hello?"
    assert contents(ctx.store.all_messages(cid)) == ["hello?", "Echo: hello?"]
    with pytest.raises(errors.InvalidInputError, match="no message to answer"):
        chat.regenerate(ctx, ctx.store.create(model="m").id)


# Search and export


def test_search_finds_a_message_on_a_branch_not_shown(store: ConversationStore) -> None:
    conv = store.create(model="m")
    q, _ = add(store, conv.id, "tell me about herons", "Herons wade.")
    hidden = store.add_message(conv.id, Message("assistant", "Egrets are herons too."), parent=q.id)
    store.show_branch(conv.id, q.id)  # newest under q: the egret reply...
    store.set_leaf(conv.id, store.path(conv.id)[0].id)  # ...then back to q alone
    [hit] = store.search("egrets")
    assert hit.conversation_id == conv.id and hit.message_id == hidden.id
    assert "**Egrets**" in hit.snippet


def test_json_export_keeps_the_tree_and_markdown_the_path_shown(store: ConversationStore) -> None:
    conv = store.create(model="m", title="Birds")
    q, a = add(store, conv.id, "q", "first answer")
    b = store.add_message(conv.id, Message("assistant", "second answer"), parent=q.id)
    conv = store.get(conv.id)
    data = json.loads(export.to_json(conv, store.all_messages(conv.id)))
    assert data["parley_export"] == 2 and data["leaf_id"] == b.id
    assert [(m["id"], m["parent_id"], m["content"]) for m in data["messages"]] == [
        (q.id, None, "q"),
        (a.id, q.id, "first answer"),
        (b.id, q.id, "second answer"),
    ]
    markdown = export.to_markdown(conv, store.path(conv.id))
    assert "second answer" in markdown and "first answer" not in markdown


# Upgrading a database from before branches


LEGACY_META = {"finish_reason": "stop", "alternatives": ["take 1", "take 2", "take 3"], "chosen": 1}


def test_sqlite_upgrade_makes_each_conversation_one_path(tmp_path: Path) -> None:
    path = tmp_path / "old" / "parley.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path, isolation_level=None)
    before = [m for m in db.MIGRATIONS if m.name < "0010"]
    db.migrate(conn, before)
    conn.execute(
        "INSERT INTO conversations (id, workspace, kind, title, model, system_prompt, params, "
        "created_at, updated_at) VALUES ('c1', 'local', 'chat', 'Old', 'm', '', '{}', 1, 1)"
    )
    for i, (role, text, meta) in enumerate(
        [("user", "q1", {}), ("assistant", "take 2", LEGACY_META), ("user", "q2", {})]
    ):
        conn.execute(
            "INSERT INTO messages (conversation_id, role, content, meta, created_at) "
            "VALUES ('c1', ?, ?, ?, ?)",
            (role, text, json.dumps(meta), 10.0 + i),
        )
    conn.close()
    check_upgraded(ConversationStore(open_backend(path.parent), "local"))
    assert db.migrate(db.connect(path)) == []  # safe to run twice


def test_postgresql_upgrade_makes_each_conversation_one_path(
    postgres: pg_server.TestPostgres, data_dir: Path
) -> None:
    url = postgres.empty_database()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            pg_server.migrate_before(conn, "0010")
            conn.execute(
                "INSERT INTO conversations (id, workspace, kind, title, model, system_prompt, "
                "params, created_at, updated_at) "
                "VALUES ('c1', 'local', 'chat', 'Old', 'm', '', '{}', 1, 1)"
            )
            for i, (role, text, meta) in enumerate(
                [("user", "q1", {}), ("assistant", "take 2", LEGACY_META), ("user", "q2", {})]
            ):
                conn.execute(
                    "INSERT INTO messages (conversation_id, role, content, meta, created_at) "
                    "VALUES ('c1', %s, %s, %s, %s)",
                    (role, text, json.dumps(meta), 10.0 + i),
                )
            assert "0010_branches" in postgres_schema.migrate(conn)
            assert postgres_schema.migrate(conn) == []  # safe to run twice
        check_upgraded(ConversationStore(open_backend(data_dir, url), "local"))
    finally:
        postgres.drop(url)


def check_upgraded(store: ConversationStore) -> None:
    """One path in id order ending at the newest message; the old alternatives are the
    reply's sibling versions, in their old order around the chosen one."""
    path = store.path("c1")
    assert contents(path) == ["q1", "take 2", "q2"]
    assert [m.parent_id for m in path] == [None, path[0].id, path[1].id]
    assert store.get("c1").leaf_id == path[-1].id
    versions = store.siblings("c1", path)[path[1].id]
    assert [store.get_message("c1", i).content for i in versions.ids] == [
        "take 1", "take 2", "take 3",
    ]  # fmt: skip
    assert versions.index == 1
    assert "alternatives" not in path[1].meta and path[1].meta["finish_reason"] == "stop"


# The Chat page (AppTest)


def bubbles(at) -> list[tuple[str, str]]:  # noqa: ANN001 - an AppTest
    return [(m.name, m.markdown[0].value) for m in at.chat_message]


def test_page_edits_an_earlier_question_regenerates_an_earlier_reply_and_switches(
    app,
    openai_server: FakeOpenAI,
    store: ConversationStore,  # noqa: ANN001 - a factory
) -> None:
    at = app()
    at.run()
    for text in ("first", "second"):
        at.chat_input[0].set_value(text).run()
    cid = store.list()[0].id
    q1, a1, _, _ = store.path(cid)
    assert all(at.button(key=f"parley.w.regen.{m.id}") for m in (a1,))

    # Edit the first question: a new version, answered; the old one a "‹" away.
    at.button(key=f"parley.w.edit.open.{q1.id}").click().run()
    at.text_area(key=f"parley.w.edit.{q1.id}").set_value("first, edited")
    at.button(key=f"parley.w.edit.send.{q1.id}").click().run()
    assert not at.exception, at.exception
    assert bubbles(at) == [("user", "first, edited"), ("assistant", "Echo: first, edited")]
    assert sent_history(openai_server) == ["first, edited"]
    edited = store.path(cid)[0]
    assert "2/2" in [c.value for c in at.caption]
    assert at.button(key=f"parley.w.version.{edited.id}.1").disabled

    # Back to the first version: its whole branch returns, and is what is sent next.
    at.button(key=f"parley.w.version.{edited.id}.-1").click().run()
    assert [text for _, text in bubbles(at)] == ["first", "Echo: first", "second", "Echo: second"]
    at.chat_input[0].set_value("third").run()
    assert sent_history(openai_server) == [
        "first",
        "Echo: first",
        "second",
        "Echo: second",
        "third",
    ]

    # Regenerate the first reply: a new version of it, answered from "first" alone.
    openai_server.script("first, again")
    at.button(key=f"parley.w.regen.{a1.id}").click().run()
    assert not at.exception, at.exception
    assert bubbles(at) == [("user", "first"), ("assistant", "first, again")]
    assert sent_history(openai_server) == ["first"]
    again = store.path(cid)[1]
    assert store.siblings(cid, store.path(cid))[again.id].ids == (a1.id, again.id)


def test_page_a_refused_edit_keeps_the_form_and_the_text(
    app,
    store: ConversationStore,  # noqa: ANN001 - a factory
) -> None:
    at = app()
    at.run()
    at.chat_input[0].set_value("hello").run()
    [q, _] = store.path(store.list()[0].id)
    at.button(key=f"parley.w.edit.open.{q.id}").click().run()
    at.text_area(key=f"parley.w.edit.{q.id}").set_value("   ")
    at.button(key=f"parley.w.edit.send.{q.id}").click().run()
    assert any("empty" in e.value for e in at.error)
    assert at.text_area(key=f"parley.w.edit.{q.id}")  # still open
    assert len(store.all_messages(store.list()[0].id)) == 2  # nothing saved


def test_message_times_read_like_a_chat_app() -> None:
    from datetime import UTC, datetime

    from lib.ui.message_actions import when

    now = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    assert when(datetime(2026, 12, 2, 9, 5, tzinfo=UTC).timestamp(), UTC, now) == "09:05"
    assert when(datetime(2026, 3, 1, 9, 5, tzinfo=UTC).timestamp(), UTC, now) == "1 Mar, 09:05"
    assert when(datetime(2025, 3, 1, 9, 5, tzinfo=UTC).timestamp(), UTC, now) == "1 Mar 2025"


def test_opening_a_search_hit_shows_the_branch_holding_it(store: ConversationStore) -> None:
    conv = store.create(model="m")
    q, a = add(store, conv.id, "tell me about herons", "Herons wade.")
    hidden = store.add_message(conv.id, Message("assistant", "Egrets too."), parent=q.id)
    store.show_branch(conv.id, a.id)
    chat.reveal(store, conv.id, q.id)  # on the path already: the path stays
    assert contents(store.path(conv.id)) == ["tell me about herons", "Herons wade."]
    [hit] = store.search("egrets")
    chat.reveal(store, conv.id, hit.message_id)
    assert store.path(conv.id)[-1].id == hidden.id


def test_the_copy_script_never_puts_text_into_the_page() -> None:
    """The only script of Parley's own in the page (SECURITY.md): the text it is given goes
    to the clipboard, and nothing of it into markup."""
    from lib.ui import message_actions

    script = message_actions._COPY_JS
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert "clipboard.writeText(text)" in script and "area.value = text" in script
    assert "<" not in message_actions.ROW_CSS  # CSS alone, nothing that could be markup


def png_bytes(color: str = "red") -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(out, format="PNG")
    return out.getvalue()


def test_an_edited_question_keeps_the_originals_attachments_and_sends_them(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    from lib.chat.attachments import checked_image

    cid = ctx.store.create(model="gpt-5-mini").id
    image = png_bytes()
    list(chat.send(ctx, cid, "What colour?", [checked_image("swatch.png", image)]))
    original = ctx.store.path(cid)[0]
    list(chat.edit(ctx, cid, original.id, "Which colour is it?"))
    edited = ctx.store.path(cid)[0]
    assert edited.id != original.id and edited.content == "Which colour is it?"
    (att,) = ctx.attachments.of([edited])[edited.id]
    assert att.name == "swatch.png" and ctx.attachments.read(att) == image
    sent = openai_server.requests_to("/chat/completions")[-1].json["messages"][-1]["content"]
    assert sent[0] == {"type": "text", "text": "Which colour is it?"}
    assert sent[1]["type"] == "image_url"
    # The files alone are a message: an edit may leave no text, as a send may. Each version
    # has rows of its own over the same stored file (tests/test_chat_attachments_versions.py).
    alone = chat.branch_edit(ctx.store, cid, edited.id, "  ")
    (again,) = ctx.attachments.of([alone])[alone.id]
    assert alone.content == "" and (again.name, again.blob) == (att.name, att.blob)
    # The first version keeps its files too, one "‹" away.
    chat.switch(ctx.store, cid, original.id)
    (first,) = ctx.attachments.of([original])[original.id]
    assert (first.name, first.blob) == (att.name, att.blob)
