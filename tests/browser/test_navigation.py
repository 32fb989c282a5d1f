"""Getting around in a real browser: the address keeps the open conversation across page
switches, reloads and copied links, a fresh server answers a deep link with the app's own
navigation, and the conversation list and first screen at desktop and phone sizes.

Phone screenshots go to pytest's tmp dir (their paths are printed) so a reviewer can look
at what the assertions measured.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from lib.conversation import Message
from lib.conversations import ConversationStore
from lib.documents import rag
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GenerationResult, Usage, checked_image
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
    links = nav_links(page)  # pages/ mode listed "Home" and the scripts' file names
    assert links[:3] == ["Chat", "Documents", "Images"] and "Home" not in links, links
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


PHONE = {"width": 390, "height": 844}
LONG_TITLE = "A very long conversation title about herons, egrets and the bitterns of the marsh"

# Labels cut short: any element inside a button (or a link styled as one) whose text is
# wider than its box. Conversation titles are cut on purpose (one line, whole on hover).
TRUNCATED = """(titlesToo) => {
  const cut = [];
  const buttons = document.querySelectorAll('[data-testid^="stBaseButton"], '
    + '[data-testid="stPopoverButton"], [data-testid="stDownloadButton"] button');
  for (const button of buttons) {
    const keyed = button.closest('[class*="st-key-"]');
    if (!titlesToo && keyed && /st-key-(top_)?(conv|hit)_/.test(keyed.className)) continue;
    const at = button.getBoundingClientRect();
    if (!button.offsetParent || at.right <= 0 || at.left >= innerWidth) continue;  // not shown
    const label = button.querySelector('[data-testid="stMarkdownContainer"]');
    if (!label) continue;  // an icon alone
    for (const el of [label, ...label.querySelectorAll('*')]) {
      if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
        cut.push(label.innerText.trim());
        break;
      }
    }
  }
  return cut;
}"""


def seed_many(app: StreamlitServer) -> list[str]:
    store = ConversationStore(open_backend(app.data_dir), WORKSPACE)
    ids = []
    for title in ("Pelican facts", "Storks in winter", LONG_TITLE):
        conv = store.create(model="gpt-5-mini", title=title)
        store.add_message(conv.id, Message("user", f"Tell me about {title.lower()}"))
        store.add_message(conv.id, Message("assistant", f"Echo: about {title.lower()}"))
        ids.append(conv.id)
    return ids


def seed_image(app: StreamlitServer) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(png, format="PNG")
    request = default_request("a red square", "gpt-image-2")
    made = GenerationResult(request, [checked_image(png.getvalue())], Usage(5, 272), 0.02, 1.5)
    ImageStore(open_backend(app.data_dir), WORKSPACE).save(made)


def add_document(page: Page, tmp_path: Path) -> None:
    """Upload and index a small Markdown file on the Documents page."""
    notes = tmp_path / "notes.md"
    notes.write_text("# Herons\n\nThe heron nests by the river in spring.\n" * 20)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(notes))
    with rerun(page):
        page.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("notes.md")
    wait_for_idle(page)


def phone_page(browser, url: str) -> Page:  # noqa: ANN001 - a Playwright Browser
    from tests.browser.conftest import new_context

    context = new_context(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(url)
    wait_for_idle(page)
    return page


def box(page: Page, key: str) -> dict:
    found = page.locator(f".st-key-{key}").first.bounding_box()
    assert found, f"{key} is not shown"
    return found


def test_on_a_phone_the_controls_fit_and_choosing_a_chat_closes_the_list(
    streamlit_app: Callable[..., StreamlitServer],
    browser,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    app = streamlit_app()
    ids = seed_many(app)
    page = phone_page(browser, app.url)
    try:
        # The first screen: the top row (Chats, model, New chat) on one line, in view.
        top = box(page, "parley-top-bar")
        assert top["y"] < 200 and top["height"] < 60, top
        new_chat = page.locator(".st-key-parley-top-bar").get_by_role("button").last
        assert new_chat.is_visible()
        expect(page.locator(".st-key-parley-suggestions").get_by_role("button")).to_have_count(4)
        save_screenshot(page, tmp_path, "phone-first-screen")
        assert page.evaluate(TRUNCATED, False) == []

        # Chats opens the list; choosing a conversation opens it and closes the list.
        chats = page.locator(".st-key-parley-top-bar").get_by_role("button").first
        with rerun(page):
            chats.click()
        choice = page.locator(f".st-key-top_conv_{ids[0]}").get_by_role("button")
        expect(choice).to_be_visible()
        save_screenshot(page, tmp_path, "phone-chats-open")
        with rerun(page):
            choice.click()
        expect(heading(page)).to_have_text("Pelican facts")
        expect(choice).to_be_hidden()
        assert_at(page, "/", ids[0])

        # The action row under the last reply is one compact row, not four stacked ones.
        actions = box(page, "parley-actions")
        assert actions["height"] < 60, actions  # the three stacked columns were ~190 px
        assert actions["width"] <= PHONE["width"]
        save_screenshot(page, tmp_path, "phone-conversation")
        assert page.evaluate(TRUNCATED, False) == []

        # New chat, from the top row, without opening anything.
        with rerun(page):
            new_chat.click()
        expect(heading(page)).to_have_text("New chat")
        assert_at(page, "/", None)
    finally:
        page.context.close()


def test_every_label_fits_at_1280_and_on_a_phone_and_a_long_title_shows_on_hover(
    streamlit_app: Callable[..., StreamlitServer],
    open_page: Callable[[str], Page],
    browser,  # noqa: ANN001 - a Playwright Browser
    tmp_path: Path,
) -> None:
    app = streamlit_app()
    ids = seed_many(app)
    page = open_page(f"{app.url}/?c={ids[0]}")
    expect(heading(page)).to_have_text("Pelican facts")
    wait_for_idle(page)
    assert page.evaluate(TRUNCATED, False) == []

    # The long title is one line, cut with an ellipsis (which the check above sees), whole
    # on hover.
    assert page.evaluate(TRUNCATED, True) == [LONG_TITLE]
    item = sidebar(page).locator(f".st-key-conv_{ids[2]}").get_by_role("button")
    title, menu = (
        item.bounding_box(),
        sidebar(page).locator(f".st-key-menu_{ids[2]}").bounding_box(),
    )
    assert title["height"] < 50, title
    assert abs((menu["y"] + menu["height"] / 2) - (title["y"] + title["height"] / 2)) < 5, menu
    assert menu["x"] + menu["width"] <= sidebar(page).bounding_box()["width"], menu  # in view
    item.hover()
    expect(page.get_by_test_id("stTooltipContent")).to_contain_text(LONG_TITLE)

    # The library's and the gallery's rows (their columns cut "De…" and "Dow…").
    seed_image(app)
    goto(page, "Documents")
    add_document(page, tmp_path)
    assert page.evaluate(TRUNCATED, False) == [], "Documents"
    goto(page, "Images")
    expect(page.get_by_role("button", name="Reuse")).to_be_visible()
    assert page.evaluate(TRUNCATED, False) == [], "Images"

    # And at phone size.
    phone = phone_page(browser, f"{app.url}/documents")
    try:
        expect(phone.get_by_text("notes.md").first).to_be_visible()
        assert phone.evaluate(TRUNCATED, False) == [], "Documents on a phone"
        phone.goto(f"{app.url}/images")
        wait_for_idle(phone)
        expect(phone.get_by_role("button", name="Reuse")).to_be_visible()
        save_screenshot(phone, tmp_path, "phone-images")
        assert phone.evaluate(TRUNCATED, False) == [], "Images on a phone"
    finally:
        phone.context.close()
