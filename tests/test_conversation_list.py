"""The conversation list: sections by date on an injected clock, pinned conversations on
top (the store, on both backends), and the sidebar's list under AppTest: its sections,
Show more past 50, and the per-item menu (pin, rename, delete)."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from streamlit.testing.v1 import AppTest

from lib import conversation_groups as groups
from lib.conversation import Conversation
from lib.conversations import ConversationStore
from lib.store import sqlite_schema as db
from lib.store.backend import open_backend
from lib.ui import chat_header, conversation_list

CHAT = "app_pages/chat.py"
MONTH = re.compile(r"[A-Z][a-z]+ \d{4}")
ZONE = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 31, 9, 30, tzinfo=ZONE)  # the day after the clocks went forward


def at_local(days_ago: int, hour: int = 12, minute: int = 0) -> float:
    """Epoch seconds of hour:minute in ZONE, `days_ago` calendar days before NOW."""
    day = NOW.date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE).timestamp()


def conv(title: str, updated_at: float, pinned: bool = False) -> Conversation:
    return Conversation(title, "local", title, "m", updated_at=updated_at, pinned=pinned)


SECTIONS = [
    ("a minute ago", at_local(0, 9, 29), groups.TODAY),
    ("just after midnight", at_local(0, 0, 1), groups.TODAY),
    ("just before midnight", at_local(1, 23, 59), groups.YESTERDAY),
    ("two days", at_local(2), groups.WEEK),
    ("seven days", at_local(7), groups.WEEK),
    ("eight days", at_local(8), groups.MONTH),
    ("thirty days", at_local(30), groups.MONTH),
    ("thirty-one days", at_local(31), "February 2026"),
    ("last year", datetime(2025, 12, 31, 23, 0, tzinfo=ZONE).timestamp(), "December 2025"),
    ("a clock ahead", at_local(-1), groups.TODAY),
]


@pytest.mark.parametrize(("when", "updated_at", "section"), SECTIONS, ids=[s[0] for s in SECTIONS])
def test_each_conversation_falls_in_its_section(when: str, updated_at: float, section: str) -> None:
    assert [s.title for s in groups.group([conv(when, updated_at)], NOW)] == [section]


def test_sections_are_in_order_pinned_first_and_each_once() -> None:
    listed = [  # as the store lists them: pinned first, then newest first
        conv("old pinned", at_local(90), pinned=True),
        conv("this morning", at_local(0, 8)),
        conv("earlier today", at_local(0, 7)),
        conv("yesterday", at_local(1)),
        conv("in January", at_local(60)),
        conv("also January", at_local(61)),
    ]
    sections = groups.group(listed, NOW)
    assert [(s.title, [c.title for c in s.conversations]) for s in sections] == [
        (groups.PINNED, ["old pinned"]),
        (groups.TODAY, ["this morning", "earlier today"]),
        (groups.YESTERDAY, ["yesterday"]),
        ("January 2026", ["in January", "also January"]),
    ]


def test_today_is_the_users_today_not_the_servers() -> None:
    # Last used at 23:30 in Auckland, 11:30 UTC; looked at an hour later, 12:30 UTC. In
    # Auckland that is after midnight (Yesterday); in London it is still the same day.
    late = conv("late", datetime(2026, 6, 1, 11, 30, tzinfo=ZoneInfo("UTC")).timestamp())
    later = datetime(2026, 6, 1, 12, 30, tzinfo=ZoneInfo("UTC"))
    in_auckland = later.astimezone(ZoneInfo("Pacific/Auckland"))
    in_london = later.astimezone(ZoneInfo("Europe/London"))
    assert groups.group([late], in_auckland)[0].title == groups.YESTERDAY
    assert groups.group([late], in_london)[0].title == groups.TODAY


@pytest.mark.parametrize("name", [None, "", "Mars/Olympus_Mons", "../../etc/passwd"])
def test_an_unknown_time_zone_means_the_servers(name: str | None) -> None:
    assert groups.zone(name) is None


def test_pinned_conversations_come_first_and_pinning_keeps_the_date(
    store: ConversationStore,
) -> None:
    old = store.create(model="m", title="old")
    time.sleep(0.01)  # distinct updated_at on a coarse clock
    new = store.create(model="m", title="new")
    assert [c.title for c in store.list()] == ["new", "old"]
    before = store.get(old.id).updated_at
    store.set_pinned(old.id, True)
    assert [(c.title, c.pinned) for c in store.list()] == [("old", True), ("new", False)]
    assert store.get(old.id).pinned and store.get(old.id).updated_at == before
    store.set_pinned(old.id, False)
    assert [c.title for c in store.list()] == ["new", "old"]
    assert not store.get(new.id).pinned


def sidebar_titles(at: AppTest) -> list[str]:
    return [b.label for b in at.sidebar.button if b.key and "conv_" in b.key]


def sections(at: AppTest) -> list[str]:
    named = {groups.PINNED, groups.TODAY, groups.YESTERDAY, groups.WEEK, groups.MONTH}
    return [c.value for c in at.sidebar.caption if c.value in named or MONTH.fullmatch(c.value)]


@pytest.fixture
def page(app: Callable[..., AppTest]) -> AppTest:
    return app(CHAT)


def test_more_than_fifty_are_reachable_with_show_more(
    page: AppTest, store: ConversationStore
) -> None:
    for i in range(conversation_list.PAGE + 7):
        store.create(model="m", title=f"Chat number {i:02}")
    page.run()
    assert len(sidebar_titles(page)) == conversation_list.PAGE
    assert "Chat number 00" not in sidebar_titles(page)  # the oldest
    page.sidebar.button(key="more_chat").click().run()
    assert len(sidebar_titles(page)) == conversation_list.PAGE + 7
    assert "Chat number 00" in sidebar_titles(page)
    assert not [b for b in page.sidebar.button if b.key and b.key.startswith("more_")]


def drawer_choices(at: AppTest) -> tuple[str, ...]:
    """The key prefixes the sidebar's drawer script closes the drawer for, as sent to it."""
    (drawer,) = [e for e in at.sidebar.get("bidi_component") if e.key == "parley-drawer"]
    return tuple(json.loads(drawer.proto.json)["choices"])


def test_on_a_phone_the_drawer_closes_on_a_choice_and_on_nothing_else(
    page: AppTest, store: ConversationStore
) -> None:
    """The script closes the drawer on a tap on a widget whose key starts with a prefix it
    was given: the sidebar's choices (rows, New, search hits) have one, its other widgets
    (the item menus, Show more) none. The browser
    test (tests/browser/test_phone_drawer.py) taps them at 390 x 844."""
    for i in range(conversation_list.PAGE):
        store.create(model="m", title=f"Chat number {i:02}")
    time.sleep(0.01)
    herons = store.create(model="m", title="Herons").id  # the newest
    page.run()
    page.sidebar.button(key=f"conv_{herons}").click().run()  # opened, as a tap would
    prefixes = drawer_choices(page)
    keys = [w.key for w in (*page.sidebar.button, *page.sidebar.get("menu_button")) if w.key]
    assert f"menu_{herons}" in keys and "more_chat" in keys
    chosen = {k for k in keys if k.startswith(prefixes)}
    assert chosen == {"new_chat", f"conv_{herons}"} | {
        f"conv_{c.id}" for c in store.list(limit=conversation_list.PAGE) if c.id != herons
    }
    page.sidebar.text_input(key="parley.w.search.chat").input("Herons").run()
    keys = [b.key for b in page.sidebar.button if b.key]
    assert {k for k in keys if k.startswith(prefixes)} == {"new_chat", f"hit_{herons}"}


def menu(at: AppTest, cid: str):  # noqa: ANN201 - AppTest's MenuButton
    return at.sidebar.menu_button(key=f"menu_{cid}")


def test_the_item_menu_pins_renames_and_deletes(page: AppTest, store: ConversationStore) -> None:
    older = store.create(model="m", title="Heron *nests*")
    time.sleep(0.01)
    store.create(model="m", title="Newer")
    page.run()
    assert sidebar_titles(page) == ["Newer", "Heron \\*nests\\*"]  # escaped: no Markdown
    assert sections(page) == [groups.TODAY]

    menu(page, older.id).click(conversation_list.PIN).run()
    assert not page.exception
    assert sidebar_titles(page) == ["Heron \\*nests\\*", "Newer"]
    assert sections(page) == [groups.PINNED, groups.TODAY]
    assert (
        menu(page, older.id).options[1] == conversation_list.ACTION_LABELS[conversation_list.UNPIN]
    )

    menu(page, older.id).click(conversation_list.RENAME).run()
    box = next(t for t in page.text_input if t.label == "Title")
    box.input("Herons, renamed")
    next(b for b in page.button if b.label == "Save").click().run()
    assert not page.exception
    assert store.get(older.id).title == "Herons, renamed"
    assert "Herons, renamed" in sidebar_titles(page)

    menu(page, older.id).click(conversation_list.DELETE).run()
    next(b for b in page.button if b.label == "Delete for good").click().run()
    assert not page.exception
    assert sidebar_titles(page) == ["Newer"]
    assert [c.title for c in store.list()] == ["Newer"]


def test_a_title_that_cannot_be_saved_keeps_the_dialog_and_says_why(
    page: AppTest, store: ConversationStore
) -> None:
    conv_ = store.create(model="m", title="Keep me")
    page.run()
    menu(page, conv_.id).click(conversation_list.RENAME).run()
    next(t for t in page.text_input if t.label == "Title").input("   ")
    next(b for b in page.button if b.label == "Save").click().run()
    assert [e.value for e in page.error] == ["A conversation needs a title."]
    assert store.get(conv_.id).title == "Keep me"


def top_model(at: AppTest):  # noqa: ANN201 - AppTest's Selectbox
    """The model picker at the top of the Chat page (in the main area, not the sidebar)."""
    (box,) = [s for s in at.main.selectbox if s.key and s.key.endswith(".model")]
    return box


def test_the_first_screen_offers_the_model_and_suggestions(page: AppTest) -> None:
    page.run()
    assert not page.exception
    assert top_model(page).value  # the model a new chat starts with, in view
    assert not [s for s in page.sidebar.selectbox if s.label == "Model"]  # one picker only
    starter = next(b for b in page.main.button if b.key == "parley.w.suggest.0")
    starter.click().run()
    assert page.chat_input[0].value == chat_header.SUGGESTIONS[starter.label]


def test_new_chat_keeps_the_model_and_system_prompt_last_used(
    page: AppTest, store: ConversationStore
) -> None:
    conv_ = store.create(model="gpt-5-mini", title="Earlier")
    page.query_params["c"] = conv_.id
    page.run()
    other = next(m for m in top_model(page).options if m != "gpt-5-mini")
    top_model(page).set_value(other).run()
    system = next(t for t in page.sidebar.text_area if t.label == "System prompt")
    system.input("Answer in French.").run()
    assert store.get(conv_.id).model == other
    page.button(key="parley.w.top.new").click().run()
    assert not page.exception
    assert page.title[0].value == "New chat" and "c" not in page.query_params
    assert top_model(page).value == other
    assert next(t for t in page.sidebar.text_area if t.label == "System prompt").value == (
        "Answer in French."
    )


def test_a_database_from_before_pinning_lists_its_conversations_unpinned(tmp_path: Path) -> None:
    path = tmp_path / "old" / "parley.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path, isolation_level=None)
    db.migrate(conn, [m for m in db.MIGRATIONS if m.name < "0013"])
    conn.execute(
        "INSERT INTO conversations (id, workspace, kind, title, model, system_prompt, params, "
        "created_at, updated_at) VALUES ('c1', 'local', 'chat', 'Old', 'm', '', '{}', 1, 1)"
    )
    conn.close()
    store = ConversationStore(open_backend(path.parent), "local")
    assert [(c.title, c.pinned) for c in store.list()] == [("Old", False)]
    store.set_pinned("c1", True)
    assert store.get("c1").pinned
    assert db.migrate(db.connect(path)) == []  # safe to run twice
