"""Getting around in a real browser: the address keeps the open conversation across page
switches, reloads and copied links, a fresh server answers a deep link with the app's own
navigation, and the conversation list and first screen at desktop and phone sizes.

Phone screenshots go to pytest's tmp dir (their paths are printed) so a reviewer can look
at what the assertions measured.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from lib.conversation import Message
from lib.conversations import ConversationStore
from lib.documents import rag
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, rerun, wait_for_idle
from tests.browser.session import goto, sidebar

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1280, "height": 900}
WORKSPACE = "local"


def seed(app: StreamlitServer) -> tuple[str, str]:
    """A saved chat and a saved document chat in the app's database: (chat id, doc id)."""
    store = ConversationStore(open_backend(app.data_dir), WORKSPACE)
    chat = store.create(model="gpt-5-mini", title="Herons of the river delta")
    store.add_message(chat.id, Message("user", "Where do herons nest?"))
    store.add_message(chat.id, Message("assistant", "In colonies near water.", status="ok"))
    doc = store.create(model="gpt-5-mini", title="Questions on the manual", kind=rag.KIND)
    return chat.id, doc.id


def heading(page: Page):  # noqa: ANN201 - a Playwright Locator
    return page.get_by_test_id("stMainBlockContainer").get_by_role("heading", level=1)


def nav_links(page: Page) -> list[str]:
    links = sidebar(page).get_by_test_id("stSidebarNav").get_by_role("link")
    return [t.split()[-1] for t in links.all_inner_texts()]  # after the icon's name


def assert_at(page: Page, path: str, cid: str | None) -> None:
    """The address is `path`, with `?c=cid` (or with no conversation at all)."""
    query = re.escape(f"?c={cid}") if cid else r"(?![^#]*\bc=)"
    expect(page).to_have_url(re.compile(rf"^http://[^/]+{re.escape(path)}{query}"))


def test_the_address_keeps_each_pages_conversation(
    streamlit_app: Callable[..., StreamlitServer], open_page: Callable[[str], Page]
) -> None:
    app = streamlit_app()
    chat_id, doc_id = seed(app)

    # The server's very first request is a deep link to the Documents page: Home.py's own
    # navigation answers it (its menu, its wide layout), not Streamlit's pages/ mode.
    page = open_page(f"{app.url}/documents?c={doc_id}")
    expect(heading(page)).to_have_text("Questions on the manual")
    assert nav_links(page) == ["Chat", "Documents", "Images"]
    main = page.get_by_test_id("stMainBlockContainer").bounding_box()
    assert main and main["width"] > 900, main  # "centered" is at most 736 px wide

    # Chat: nothing open yet in this session, so a new chat; then open the saved one.
    with rerun(page):
        sidebar(page).get_by_test_id("stSidebarNav").get_by_role("link", name="Chat").click()
    assert_at(page, "/", None)
    with rerun(page):
        sidebar(page).get_by_role("button", name="Herons of the river delta").click()
    expect(heading(page)).to_have_text("Herons of the river delta")
    assert_at(page, "/", chat_id)

    # Each page's own conversation comes back into the address when the page does.
    with rerun(page):
        sidebar(page).get_by_test_id("stSidebarNav").get_by_role("link", name="Documents").click()
    expect(heading(page)).to_have_text("Questions on the manual")
    assert_at(page, "/documents", doc_id)
    goto(page, "Images")
    assert_at(page, "/images", None)
    with rerun(page):
        sidebar(page).get_by_test_id("stSidebarNav").get_by_role("link", name="Chat").click()
    expect(heading(page)).to_have_text("Herons of the river delta")
    assert_at(page, "/", chat_id)

    # A reload, and the copied address in another browser session, open it again.
    page.reload()
    wait_for_idle(page)
    expect(heading(page)).to_have_text("Herons of the river delta")
    assert_at(page, "/", chat_id)
    other = open_page(page.url)
    expect(heading(other)).to_have_text("Herons of the river delta")


def save_screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    print(f"screenshot: {path}")
    return path
