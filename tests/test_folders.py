"""Folders (issue 15, part 5): a conversation in at most one folder, by name; the folders
with their counts; the list and search within one (FTS5 on SQLite, tsvector on PostgreSQL:
every store test runs on both), pinned on top within it; and the sidebar's "Move to
folder" and folder filter under AppTest, names shown as plain text."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from lib import export
from lib.conversation import Folder, Message
from lib.conversations import FOLDER_LENGTH, ConversationStore
from lib.errors import NotFoundError
from lib.history.importer import Importer
from lib.ui import conversation_list
from tests import history_samples as samples

CHAT = "app_pages/chat.py"


def chats(store: ConversationStore, *titles: str) -> dict[str, str]:
    """One conversation per title, oldest first, each saying 'heron' and its title."""
    ids = {}
    for title in titles:
        conv = store.create(model="m", title=title)
        store.add_message(conv.id, Message("user", f"Where do herons nest? ({title})"))
        ids[title] = conv.id
        time.sleep(0.01)  # distinct updated_at on a coarse clock
    return ids


def test_a_conversation_is_in_one_folder_and_folders_count_theirs(store) -> None:
    ids = chats(store, "a", "b", "c", "d")
    store.set_folder(ids["a"], "Birds")
    store.set_folder(ids["b"], "  Birds ")  # the same name, spaces aside
    store.set_folder(ids["c"], "art")
    assert store.folders() == [Folder("art", 1), Folder("Birds", 2)]  # by name, any case
    store.set_folder(ids["a"], "art")  # a move: out of Birds
    assert store.folders() == [Folder("art", 2), Folder("Birds", 1)]
    assert store.get(ids["a"]).folder == "art" and store.get(ids["d"]).folder is None
    store.set_folder(ids["b"], None)  # the last one out: the folder is gone
    store.set_folder(ids["c"], "   ")  # blank is no folder
    assert store.folders() == [Folder("art", 1)]
    assert store.get(ids["c"]).folder is None


def test_a_move_keeps_the_date_and_long_names_are_cut(store) -> None:
    ids = chats(store, "a")
    before = store.get(ids["a"]).updated_at
    store.set_folder(ids["a"], "x" * 100)
    moved = store.get(ids["a"])
    assert moved.folder == "x" * FOLDER_LENGTH and moved.updated_at == before


def test_the_list_within_a_folder_keeps_pinned_on_top(store) -> None:
    ids = chats(store, "old", "middle", "new", "elsewhere")
    for title in ("old", "middle", "new"):
        store.set_folder(ids[title], "Birds")
    store.set_pinned(ids["old"], True)
    assert [c.title for c in store.list(folder="Birds")] == ["old", "new", "middle"]
    assert [c.title for c in store.list()] == ["old", "elsewhere", "new", "middle"]
    assert store.list(folder="Nowhere") == []


def test_search_within_a_folder(store) -> None:
    ids = chats(store, "in", "out", "heron title")
    store.set_folder(ids["in"], "Birds")
    store.set_folder(ids["heron title"], "Birds")
    assert {h.title for h in store.search("herons")} == {"in", "out", "heron title"}
    assert {h.title for h in store.search("herons", folder="Birds")} == {"in", "heron title"}
    assert [h.title for h in store.search("out", folder="Birds")] == []
    assert [h.title for h in store.search("heron title", folder="Birds")] == ["heron title"]
    assert store.search("herons", folder="Nowhere") == []


def test_folders_are_the_workspaces_own(backend) -> None:
    alice, bob = ConversationStore(backend, "alice"), ConversationStore(backend, "bob")
    ids = chats(alice, "a")
    alice.set_folder(ids["a"], "Secret plans")
    assert bob.folders() == [] and bob.list(folder="Secret plans") == []
    with pytest.raises(NotFoundError):
        bob.set_folder(ids["a"], "Mine now")
    assert alice.get(ids["a"]).folder == "Secret plans"


# The sidebar


@pytest.fixture
def page(app: Callable[..., AppTest]) -> AppTest:
    return app(CHAT)


def titles(at: AppTest) -> list[str]:
    return [b.label for b in at.sidebar.button if b.key and b.key.startswith("conv_")]


def folder_filter(at: AppTest):  # noqa: ANN201 - AppTest's Selectbox
    return at.sidebar.selectbox(key="parley.w.folder.chat")


def move(at: AppTest, cid: str, *, existing: str | None = None, typed: str = "") -> None:
    at.sidebar.menu_button(key=f"menu_{cid}").click(conversation_list.MOVE).run()
    if existing is not None:
        next(s for s in at.selectbox if s.label == "Folder").set_value(existing)
    if typed:
        next(t for t in at.text_input if t.label == "Or a new folder").input(typed)
    next(b for b in at.button if b.label == "Move").click().run()
    assert not at.exception


def test_move_to_folder_then_filter_and_search_within_it(page, store) -> None:
    ids = chats(store, "Heron notes", "Kingfisher", "Shopping")
    page.run()
    assert not [s for s in page.sidebar.selectbox if s.key == "parley.w.folder.chat"]  # none yet
    move(page, ids["Heron notes"], typed="**Birds** <img src=x>")
    name = "**Birds** <img src=x>"
    assert store.get(ids["Heron notes"]).folder == name
    move(page, ids["Kingfisher"], existing=name)
    assert store.get(ids["Kingfisher"]).folder == name
    # A selectbox's options are plain text (never Markdown): the name as typed, inert.
    assert folder_filter(page).options == ["All conversations", f"{name} (2)"]

    folder_filter(page).set_value(name).run()
    assert titles(page) == ["Kingfisher", "Heron notes"]
    page.sidebar.menu_button(key=f"menu_{ids['Heron notes']}").click(conversation_list.PIN).run()
    assert titles(page) == ["Heron notes", "Kingfisher"]  # pinned on top, in the folder too
    search = page.sidebar.text_input(key="parley.w.search.chat")
    search.input("herons").run()
    hits = [b.label for b in page.sidebar.button if b.key and b.key.startswith("hit_")]
    assert sorted(hits) == ["Heron notes", "Kingfisher"]  # not Shopping, outside it
    search.input("").run()

    move(page, ids["Kingfisher"], existing=conversation_list.NO_FOLDER)
    assert store.get(ids["Kingfisher"]).folder is None
    assert titles(page) == ["Heron notes"]
    folder_filter(page).set_value(None).run()
    assert titles(page) == ["Heron notes", "Shopping", "Kingfisher"]


def test_a_filter_on_a_folder_that_emptied_falls_back_to_all(page, store) -> None:
    ids = chats(store, "Only one")
    store.set_folder(ids["Only one"], "Temporary")
    page.run()
    folder_filter(page).set_value("Temporary").run()
    assert titles(page) == ["Only one"]
    other = chats(store, "Another")
    store.set_folder(other["Another"], "Kept")
    store.set_folder(ids["Only one"], None)  # in another tab, say
    page.run()
    assert not page.exception
    assert folder_filter(page).value is None and titles(page) == ["Another", "Only one"]


# Export and import


def test_folder_and_pin_survive_a_json_export_and_import(backend, tmp_path) -> None:
    alice, bob = ConversationStore(backend, "alice"), ConversationStore(backend, "bob")
    ids = chats(alice, "Filed and pinned", "Filed", "Loose")
    alice.set_folder(ids["Filed and pinned"], "Birds")
    alice.set_folder(ids["Filed"], "Birds")
    alice.set_pinned(ids["Filed and pinned"], True)
    for title, cid in ids.items():
        conv = alice.get(cid)
        data = json.loads(export.to_json(conv, alice.all_messages(cid)))
        assert (data["folder"], data["pinned"]) == (conv.folder, conv.pinned)
        (tmp_path / f"{cid}.json").write_text(json.dumps(data), encoding="utf-8")
        assert len(Importer(bob).run(tmp_path / f"{cid}.json").imported) == 1, title

    def kept(store: ConversationStore) -> list:
        return [(c.title, c.folder, c.pinned) for c in store.list()]

    assert kept(bob) == kept(alice)  # in the same order: times kept to the millisecond
    times = [c.updated_at for c in alice.list()]
    assert [c.updated_at for c in bob.list()] == pytest.approx(times, abs=1e-3)
    assert bob.folders() == [Folder("Birds", 2)]


def test_open_webui_pins_come_in_and_its_folder_ids_do_not(store, tmp_path) -> None:
    item = samples.openwebui_export()
    item[0]["folder_id"] = "9f1c2d3e-opaque"  # an id; the export holds no folder names
    path = tmp_path / "openwebui.json"
    path.write_text(json.dumps(item), encoding="utf-8")
    (cid,) = Importer(store).run(path).imported
    conv = store.get(cid)
    assert conv.pinned and conv.folder is None and store.folders() == []
