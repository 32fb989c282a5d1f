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
from tests.browser.session import bubbles, chat, conversation_id, sidebar

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
        # On the page with the drawer closed: the Chat page's row, New at its end, one line,
        # in view without scrolling up although a page with a chat box opens scrolled to its
        # end (sticky below Streamlit's header on a phone, so it may cover the title).
        expect(sidebar(page)).to_have_attribute("data-collapsed", "true")
        new = page.locator(".st-key-parley-top-bar").get_by_role("button").last
        expect(new).to_be_in_viewport()
        header = page.get_by_test_id("stHeader").bounding_box()
        top = page.locator(".st-key-parley-top-bar").bounding_box()
        assert header and top and top["height"] < 60, (header, top)
        assert top["y"] >= header["y"] + header["height"] - 1, (header, top)
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


# The main scroll area is at its end (where a page with a chat box opens) and was scrolled.
AT_END = """() => {
  const main = document.querySelector('.stMain');
  return main.scrollTop > 0 && main.scrollTop + main.clientHeight >= main.scrollHeight - 2;
}"""
# The element is inside the window, and a tap at its middle would land on it (or inside
# it), not on something drawn over it.
IN_VIEW_ON_TOP = """(el) => {
  const box = el.getBoundingClientRect();
  if (box.height === 0 || box.top < 0 || box.bottom > window.innerHeight) return false;
  return el.contains(document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2));
}"""


def in_view_on_top(page: Page, target: Locator) -> None:
    """Wait (the layout settles after a rerun) until `target` is in view and uncovered."""
    page.wait_for_function(IN_VIEW_ON_TOP, arg=target.element_handle())


def in_window(page: Page, target: Locator) -> bool:
    box, height = target.bounding_box(), page.viewport_size["height"]
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_on_a_phone_new_chat_stays_in_view_at_the_end_of_a_long_chat(
    streamlit_app: Callable[..., StreamlitServer],
    browser: Browser,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app()
    context = new_context(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(app.url)
        wait_for_idle(page)
        new = page.locator(".st-key-parley-top-bar").get_by_role("button").last  # New chat
        # Several turns against the fake server, each long enough to fill most of a screen.
        for turn in range(3):
            chat(page, f"Turn {turn}: " + "herons wade in the shallows at dawn " * 12)
        cid = conversation_id(page)
        page.wait_for_function(AT_END)
        in_view_on_top(page, new)
        # Opened afresh, the page scrolls to its end; the row is still at the top, below
        # Streamlit's header, and the last reply's actions are not under it.
        page.goto(f"{app.url}/?c={cid}")
        wait_for_idle(page)
        expect(bubbles(page)).to_have_count(6)
        page.wait_for_function(AT_END)
        in_view_on_top(page, new)
        header = page.get_by_test_id("stHeader").bounding_box()
        top = page.locator(".st-key-parley-top-bar").bounding_box()
        assert header and top and top["y"] >= header["y"] + header["height"] - 1, (header, top)
        assert page.get_by_role("heading", level=1).bounding_box()["y"] < 0  # scrolled away
        last = bubbles(page).last.get_by_role("button", name="Regenerate")
        in_view_on_top(page, last)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "phone-chat-sticky-top.png")
        with rerun(page):
            new.tap()
        expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
        expect(page).not_to_have_url(re.compile(r"[?&]c="))
        expect(bubbles(page)).to_have_count(0)
    finally:
        context.close()
    # At desktop width the row stays where it is, above the title, and scrolls away.
    page = open_page(f"{app.url}/?c={cid}")
    expect(bubbles(page)).to_have_count(6)
    page.wait_for_function(AT_END)
    desktop = page.locator(".st-key-parley-top-bar").get_by_role("button").last
    assert not in_window(page, desktop), desktop.bounding_box()


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
