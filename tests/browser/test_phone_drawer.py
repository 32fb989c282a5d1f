"""The sidebar's conversation list at phone size (390 x 844): choosing a conversation in
the drawer closes it and shows the conversation; the item menus, search and the rest of
the drawer leave it open; at desktop width the sidebar stays where it is. The Documents
page's top row starts a new document chat without the drawer."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from lib.conversations import ConversationStore, Message
from lib.documents import rag
from lib.store.backend import open_backend
from tests.browser.conftest import ARTIFACTS, StreamlitServer, new_context, rerun, wait_for_idle
from tests.browser.session import bubbles, sidebar

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
# A title that would be bold, italic and HTML as Markdown: the row shows it as typed.
TITLE = "Herons **by** the _river_ <b>x</b>"


def seeded(app: StreamlitServer, kind: str) -> tuple[str, str]:
    """Two conversations of `kind`; the ids of the older (TITLE) and the newer."""
    store = ConversationStore(open_backend(app.data_dir), "local")
    ids = []
    for title, text in ((TITLE, "Where do herons nest?"), ("Cranes", "When do cranes dance?")):
        conv = store.create(model="gpt-5-mini", title=title, kind=kind)
        store.add_message(conv.id, Message("user", text))
        store.add_message(conv.id, Message("assistant", f"An answer about {title.split()[0]}."))
        ids.append(conv.id)
    return ids[0], ids[1]


def drawer_open(page: Page) -> Locator:
    return sidebar(page).and_(page.locator('[data-collapsed="false"]'))


def open_drawer(page: Page) -> None:
    expect(sidebar(page)).to_have_attribute("data-collapsed", "true")  # closed on a phone
    page.get_by_test_id("stExpandSidebarButton").tap()
    expect(sidebar(page)).to_have_attribute("data-collapsed", "false")


def row(page: Page, cid: str) -> Locator:
    return sidebar(page).locator(f".st-key-conv_{cid}").get_by_role("button")


@pytest.mark.parametrize(("path", "kind"), [("", "chat"), ("/documents", rag.KIND)])
def test_on_a_phone_choosing_a_conversation_closes_the_drawer(
    streamlit_app: Callable[..., StreamlitServer], browser: Browser, path: str, kind: str
) -> None:
    app = streamlit_app()
    herons, cranes = seeded(app, kind)
    context = new_context(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(f"{app.url}{path}")
        wait_for_idle(page)
        open_drawer(page)
        # The item menu and the search box are not choices: the drawer stays open.
        sidebar(page).locator(f".st-key-menu_{herons}").get_by_role("button").tap()
        expect(page.get_by_role("menuitem", name=re.compile("Rename"))).to_be_visible()
        page.keyboard.press("Escape")
        expect(sidebar(page)).to_have_attribute("data-collapsed", "false")
        expect(row(page, herons)).to_have_text(TITLE)  # as typed: nothing bold or italic
        assert row(page, herons).locator("strong, em, b").count() == 0

        with rerun(page):
            row(page, herons).tap()
        expect(sidebar(page)).to_have_attribute("data-collapsed", "true")
        expect(page).to_have_url(re.compile(rf"[?&]c={herons}"))
        expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
        expect(bubbles(page).first).to_contain_text("Where do herons nest?")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"phone-drawer-{kind}.png", full_page=True)

        # Again, for the other conversation: the drawer opens and closes on each choice.
        open_drawer(page)
        with rerun(page):
            row(page, cranes).tap()
        expect(sidebar(page)).to_have_attribute("data-collapsed", "true")
        expect(page.get_by_role("heading", level=1)).to_have_text("Cranes")
        expect(bubbles(page).first).to_contain_text("When do cranes dance?")
    finally:
        context.close()


def test_on_a_phone_the_documents_page_starts_a_new_chat_from_its_top_row(
    streamlit_app: Callable[..., StreamlitServer], browser: Browser
) -> None:
    app = streamlit_app()
    herons, _ = seeded(app, rag.KIND)
    context = new_context(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(f"{app.url}/documents?c={herons}")
        wait_for_idle(page)
        expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
        # On the page with the drawer closed: the Chat page's row, New at its end, one line
        # at the top, above the title. (A page with a chat box opens scrolled to its end.)
        expect(sidebar(page)).to_have_attribute("data-collapsed", "true")
        new = page.locator(".st-key-parley-top-bar").get_by_role("button").last
        new.scroll_into_view_if_needed()
        expect(new).to_be_in_viewport()
        expect(page.get_by_role("heading", level=1)).to_be_in_viewport()
        top = page.locator(".st-key-parley-top-bar").bounding_box()
        title = page.get_by_role("heading", level=1).bounding_box()
        assert top and title and top["y"] < title["y"] and top["height"] < 60, (top, title)
        with rerun(page):
            new.tap()
        expect(page.get_by_role("heading", level=1)).to_have_text("Documents")
        expect(page).not_to_have_url(re.compile(r"[?&]c="))
        expect(bubbles(page)).to_have_count(0)
        expect(sidebar(page)).to_have_attribute("data-collapsed", "true")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "phone-documents-new.png", full_page=True)
    finally:
        context.close()


def test_at_desktop_width_the_sidebar_stays_open_on_a_choice(
    streamlit_app: Callable[..., StreamlitServer], open_page: Callable[[str], Page]
) -> None:
    app = streamlit_app()
    herons, _ = seeded(app, "chat")
    page = open_page(app.url)
    expect(sidebar(page)).to_have_attribute("data-collapsed", "false")
    with rerun(page):
        row(page, herons).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(sidebar(page)).to_have_attribute("data-collapsed", "false")
    expect(row(page, herons)).to_be_visible()
