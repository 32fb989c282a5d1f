"""Renaming and deleting folders (issue 15, part 5), on both backends: in the store (a
rename moves every conversation of the folder, a name already used is refused unless
merging, deleting a folder never deletes a conversation, another workspace's folders are
out of reach) and on the History page under AppTest (folders listed with their counts as
plain text, rename, delete after a confirmation, clear messages for bad input)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from lib.conversation import Folder
from lib.conversations import FOLDER_LENGTH, ConversationStore
from lib.errors import InvalidInputError, NotFoundError
from lib.markup import escape
from lib.store.backend import Backend
from tests.test_folders import chats

PAGE = "app_pages/history.py"


def filed(store: ConversationStore) -> dict[str, str]:
    """Two in Birds, one in art, one in no folder."""
    ids = chats(store, "heron", "kingfisher", "sketch", "loose")
    for title, folder in (("heron", "Birds"), ("kingfisher", "Birds"), ("sketch", "art")):
        store.set_folder(ids[title], folder)
    return ids


def folders_of(store: ConversationStore, ids: dict[str, str]) -> dict[str, str | None]:
    return {title: store.get(cid).folder for title, cid in ids.items()}


def test_a_rename_moves_the_whole_folder_and_keeps_dates(store) -> None:
    ids = filed(store)
    dates = {c.id: c.updated_at for c in store.list()}
    assert store.rename_folder("Birds", "  Water   birds ") == 2
    assert folders_of(store, ids) == {"heron": "Water birds", "kingfisher": "Water birds",
                                      "sketch": "art", "loose": None}  # fmt: skip
    assert store.folders() == [Folder("art", 1), Folder("Water birds", 2)]
    assert {c.id: c.updated_at for c in store.list()} == dates  # not a use
    assert store.rename_folder("art", "Art") == 1  # only its case: another name
    assert store.rename_folder("Art", "Art") == 1  # the same: nothing to do
    assert store.rename_folder("Art", "x" * 100) == 1
    assert store.get(ids["sketch"]).folder == "x" * FOLDER_LENGTH


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [
        ("Birds", "", InvalidInputError, "A folder needs a name"),
        ("Birds", "   \n", InvalidInputError, "A folder needs a name"),
        ("Birds", "art", InvalidInputError, "There is already a folder called “art” \\(1 conv"),
        ("Birds", " art ", InvalidInputError, "already a folder called “art”"),
        ("Fish", "Sea", NotFoundError, "There is no folder called “Fish”"),
    ],
    ids=["empty", "blank", "taken", "taken, spaces aside", "unknown"],
)
def test_a_bad_rename_says_why_and_changes_nothing(store, old, new, error, message) -> None:
    ids = filed(store)
    before = folders_of(store, ids)
    with pytest.raises(error, match=message):
        store.rename_folder(old, new)
    assert folders_of(store, ids) == before


def test_a_rename_onto_a_taken_name_merges_when_asked(store) -> None:
    ids = filed(store)
    assert store.rename_folder("art", "Birds", merge=True) == 3
    assert store.folders() == [Folder("Birds", 3)]
    assert folders_of(store, ids)["loose"] is None


def test_deleting_a_folder_keeps_its_conversations(store) -> None:
    ids = filed(store)
    assert store.delete_folder("Birds") == 2
    assert store.folders() == [Folder("art", 1)]
    assert folders_of(store, ids) == {"heron": None, "kingfisher": None, "sketch": "art",
                                      "loose": None}  # fmt: skip
    assert len(store.list()) == 4
    with pytest.raises(NotFoundError, match="no folder called “Birds”"):
        store.delete_folder("Birds")


def test_another_workspaces_folders_are_out_of_reach(backend: Backend) -> None:
    alice, bob = ConversationStore(backend, "alice"), ConversationStore(backend, "bob")
    ids = filed(alice)
    mine = chats(bob, "bob's")
    bob.set_folder(mine["bob's"], "art")
    with pytest.raises(NotFoundError):
        bob.rename_folder("Birds", "Mine now")
    with pytest.raises(NotFoundError):
        bob.delete_folder("Birds")
    assert bob.rename_folder("art", "Birds") == 1  # alice's Birds is not bob's: no clash
    assert bob.delete_folder("Birds") == 1
    assert folders_of(alice, ids)["heron"] == "Birds" and alice.get(ids["sketch"]).folder == "art"


# The History page


@pytest.fixture
def page(app: Callable[..., AppTest], backend: Backend) -> AppTest:
    return app(PAGE)


@pytest.fixture
def local(backend: Backend) -> ConversationStore:
    return ConversationStore(backend, "local")


def chosen(at: AppTest):  # noqa: ANN201 - AppTest's Selectbox
    return next(s for s in at.selectbox if s.label == "Folder to change")


def rename(at: AppTest, name: str, *, merge: bool = False) -> AppTest:
    next(t for t in at.text_input if t.label == "New name").input(name)
    if merge:
        next(c for c in at.checkbox if c.label.startswith("If another folder")).check()
    at.button(key="parley.w.folders.rename").click().run()
    assert not at.exception, at.exception
    return at


def listed(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("- ")]


def test_folders_are_listed_as_plain_text_and_renamed(page: AppTest, local) -> None:
    ids = filed(local)
    hostile = "[login](https://evil.example) **now**"
    local.set_folder(ids["loose"], hostile)
    page.run()
    assert not page.exception, page.exception
    first, *rest = listed(page)  # by name: "[" before letters
    assert rest == ["- art · 1 conversation", "- Birds · 2 conversations"]
    assert first == f"- {escape(hostile)} · 1 conversation"
    assert first.startswith("- \\[login\\](https:") and "\\*\\*now\\*\\*" in first
    assert chosen(page).options == [f"{hostile} (1)", "art (1)", "Birds (2)"]
    chosen(page).set_value("Birds").run()
    rename(page, "Water birds")
    assert page.success[0].value == "“Birds” is now “Water birds”: 2 conversations."
    assert folders_of(local, ids)["heron"] == "Water birds"
    assert chosen(page).value == "Water birds"  # the renamed one stays chosen
    assert next(t for t in page.text_input if t.label == "New name").value == ""


@pytest.mark.parametrize(
    ("name", "message"),
    [("  ", "A folder needs a name"), ("art", "There is already a folder called “art”")],
    ids=["blank", "taken"],
)
def test_a_bad_name_on_the_page_says_why(page: AppTest, local, name, message) -> None:
    ids = filed(local)
    page.run()
    chosen(page).set_value("Birds").run()
    rename(page, name)
    assert message in page.error[0].value
    assert folders_of(local, ids)["heron"] == "Birds"


def test_a_taken_name_merges_when_ticked(page: AppTest, local) -> None:
    ids = filed(local)
    page.run()
    chosen(page).set_value("Birds").run()
    rename(page, "art", merge=True)
    assert page.success[0].value == "“Birds” is now “art”: 3 conversations."
    assert local.folders() == [Folder("art", 3)] and folders_of(local, ids)["loose"] is None


def test_deleting_a_folder_asks_first_and_keeps_its_conversations(page: AppTest, local) -> None:
    ids = filed(local)
    page.run()
    chosen(page).set_value("Birds").run()
    page.button(key="parley.w.folders.delete").click().run()
    assert "Delete the folder “Birds”? Its 2 conversations stay, in no folder" in (
        page.warning[0].value
    )
    page.button(key="parley.w.folders.delete_cancel").click().run()
    assert not page.warning and local.folders() == [Folder("art", 1), Folder("Birds", 2)]
    page.button(key="parley.w.folders.delete").click().run()
    page.button(key="parley.w.folders.delete_confirm").click().run()
    assert not page.exception, page.exception
    assert page.success[0].value == (
        "Folder “Birds” deleted; its 2 conversations are in no folder now."
    )
    assert local.folders() == [Folder("art", 1)] and len(local.list()) == 4
    assert folders_of(local, ids)["heron"] is None
    assert listed(page) == ["- art · 1 conversation"]


def test_without_folders_the_page_says_how_to_make_one(page: AppTest, local) -> None:
    chats(local, "loose")
    page.run()
    assert not page.exception, page.exception
    assert any("No folders yet" in c.value for c in page.caption)
    assert not [s for s in page.selectbox if s.label == "Folder to change"]
