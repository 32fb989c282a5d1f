"""The Chat page's first screen in a real browser: the cursor is in the chat box on a new
chat and after choosing a conversation, stays where the user types otherwise, and is left
alone on a touch screen (a focused box would open the keyboard over half the page)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page

from lib.conversations import ConversationStore, Message
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, new_context, rerun, wait_for_idle
from tests.browser.session import bubbles, sidebar

pytestmark = pytest.mark.browser

IN_CHAT_BOX = """() => document.activeElement !== null
  && document.activeElement.matches('[data-testid="stChatInputTextArea"]')"""


def seed(app: StreamlitServer, *titles: str) -> list[str]:
    store = ConversationStore(open_backend(app.data_dir), "local")
    ids = []
    for title in titles:
        conv = store.create(model="gpt-5-mini", title=title)
        store.add_message(conv.id, Message("user", f"Tell me about {title.lower()}"))
        ids.append(conv.id)
    return ids


def focused(page: Page) -> str:
    return page.evaluate("() => document.activeElement.outerHTML.slice(0, 120)")


def test_the_chat_box_has_the_cursor_on_a_new_chat_and_after_choosing_one(
    streamlit_app: Callable[..., StreamlitServer], open_page: Callable[[str], Page]
) -> None:
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    herons, _ = seed(app, "Herons", "Cranes")
    page = open_page(app.url)
    page.wait_for_function(IN_CHAT_BOX)  # the first screen: type at once

    # Choosing a conversation in the sidebar (the click's focus is on its row) moves the
    # cursor back to the box.
    with rerun(page):
        sidebar(page).locator(f".st-key-conv_{herons}").get_by_role("button").click()
    assert "Tell me about herons" in bubbles(page).first.inner_text()
    page.wait_for_function(IN_CHAT_BOX)

    # Typing elsewhere keeps the cursor there through the reruns it causes.
    search = sidebar(page).get_by_placeholder("Search messages…")
    search.click()
    search.fill("cranes")
    with rerun(page):
        search.press("Enter")
    assert page.evaluate("() => document.activeElement") is not None
    assert "Search messages" in focused(page), focused(page)


def test_a_touch_screen_gets_no_focused_box(
    streamlit_app: Callable[..., StreamlitServer],
    browser,  # noqa: ANN001 - a playwright Browser
) -> None:
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    context = new_context(
        browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        page.goto(app.url)
        wait_for_idle(page)
        page.get_by_test_id("stChatInputTextArea").wait_for()
        assert not page.evaluate(IN_CHAT_BOX), focused(page)
    finally:
        context.close()
