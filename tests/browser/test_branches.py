"""Per-message actions and branches in a real browser: the row that appears on hover,
Copy putting the raw Markdown on the clipboard, editing an earlier message, and "‹ ›"
switching back, with what the model server was sent checked at each step."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from lib.conversations import ConversationStore
from lib.store.backend import open_backend
from tests.browser.conftest import ARTIFACTS, StreamlitServer, new_context, rerun, wait_for_idle
from tests.browser.session import bubbles, send
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

pytestmark = pytest.mark.browser

# Markdown to copy as it is, and markup that must stay text: copied, it never runs.
MARKDOWN_REPLY = (
    "Herons are **wading birds**; see `Ardeidae`. "
    '<img src="http://127.0.0.1:9/x.png" onerror="window.parleyRan = 1">'
)


def sent(server: FakeOpenAI) -> list[str]:
    request = server.requests_to("/chat/completions")[-1].json
    return [m["content"] for m in request["messages"] if m["role"] != "system"]


def texts(page: Page) -> list[str]:
    """Each bubble's message text (its first Markdown block)."""
    count = bubbles(page).count()
    return [
        bubbles(page).nth(i).get_by_test_id("stMarkdownContainer").first.inner_text()
        for i in range(count)
    ]


def answered(page: Page, count: int, last: str) -> None:
    """Wait for `count` bubbles, the last one showing `last` with its footer drawn."""
    expect(bubbles(page)).to_have_count(count)
    expect(bubbles(page).nth(count - 1)).to_contain_text(last)
    expect(bubbles(page).nth(count - 1)).to_contain_text("out tokens")
    wait_for_idle(page)


def hover(page: Page, index: int, message_id: int) -> None:
    """Point at bubble `index` until its row shows: a late shift of the layout (a component
    mounting, the page scrolling to its end) can move the bubble from under the pointer
    (seen twice in ten runs: the row faded in, then out again)."""
    row = page.locator(f".st-key-parley-tools-{message_id}")
    deadline = time.monotonic() + WAIT
    while True:
        bubbles(page).nth(index).hover()
        try:
            expect(row).to_have_css("opacity", "1", timeout=2_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def opacity(page: Page, message_id: int) -> str:
    return page.locator(f".st-key-parley-tools-{message_id}").evaluate(
        "element => getComputedStyle(element).opacity"
    )


def test_hover_actions_edit_an_earlier_message_and_switch_back(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    page = open_page(app.url)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    browser_server.script(MARKDOWN_REPLY)
    send(page, "Tell me about herons")
    answered(page, 2, "wading birds")
    send(page, "And egrets?")
    answered(page, 4, "Echo: And egrets?")
    store = ConversationStore(open_backend(app.data_dir), "local")
    cid = store.list()[0].id
    question, reply, _, _ = store.path(cid)

    # The row is there but transparent until the pointer is over its bubble.
    page.mouse.move(0, 0)
    expect(page.locator(f".st-key-parley-tools-{reply.id}")).to_have_css("opacity", "0")
    hover(page, 1, reply.id)
    assert opacity(page, question.id) == "0"  # only the bubble under the pointer
    row = page.locator(f".st-key-parley-tools-{reply.id}")
    expect(row.get_by_role("button", name="Regenerate")).to_be_visible()

    # Copy puts the raw Markdown on the clipboard, not the rendered text.
    row.get_by_role("button", name="Copy as Markdown").click()
    expect(row.get_by_role("button", name="Copy as Markdown")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == MARKDOWN_REPLY
    assert page.evaluate("window.parleyRan") is None
    assert bubbles(page).nth(1).locator("img").count() == 0

    # Edit the first question: the conversation goes on from the new version alone.
    hover(page, 0, question.id)
    with rerun(page):
        page.locator(f".st-key-parley-tools-{question.id}").get_by_role(
            "button", name="Edit"
        ).click()
    box = bubbles(page).nth(0).get_by_role("textbox", name="Edit your message")
    box.fill("Tell me about storks")
    # The click straight away, as an event alone: no blur or Ctrl+Enter sent the text first.
    with rerun(page):
        bubbles(page).nth(0).get_by_role("button", name="Send").dispatch_event("click")
    answered(page, 2, "Echo: Tell me about storks")
    assert texts(page) == ["Tell me about storks", "Echo: Tell me about storks"]
    assert sent(browser_server) == ["Tell me about storks"]
    first = bubbles(page).nth(0)
    expect(first.get_by_test_id("stCaptionContainer").filter(has_text="2/2")).to_be_visible()
    expect(first.get_by_role("button", name="›")).to_be_disabled()

    # "‹" goes back to the first version with everything that followed it.
    with rerun(page):
        first.get_by_role("button", name="‹").click()
    expect(bubbles(page)).to_have_count(4)
    assert texts(page) == [
        "Tell me about herons",
        'Herons are wading birds; see Ardeidae. <img src="http://127.0.0.1:9/x.png" '
        'onerror="window.parleyRan = 1">',
        "And egrets?",
        "Echo: And egrets?",
    ]
    expect(bubbles(page).nth(0).get_by_text("1/2")).to_be_visible()
    bubbles(page).nth(1).hover()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "branches.png", full_page=True)  # for a person to look at
    send(page, "And cranes?")
    answered(page, 6, "Echo: And cranes?")
    assert sent(browser_server) == [
        "Tell me about herons",
        MARKDOWN_REPLY,
        "And egrets?",
        "Echo: And egrets?",
        "And cranes?",
    ]


PHONE = {"width": 390, "height": 844}


def test_on_a_phone_the_row_is_always_shown_and_compact(
    streamlit_app: Callable[..., StreamlitServer],
    browser,  # noqa: ANN001 - a playwright Browser
) -> None:
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    context = new_context(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(app.url)
        wait_for_idle(page)
        send(page, "Hello from a phone")
        answered(page, 2, "Echo: Hello from a phone")
        store = ConversationStore(open_backend(app.data_dir), "local")
        question, reply = store.path(store.list()[0].id)
        for message in (question, reply):  # nothing hovers on a touch screen: always shown
            expect(page.locator(f".st-key-parley-tools-{message.id}")).to_have_css("opacity", "1")
        row = page.locator(f".st-key-parley-tools-{reply.id}").bounding_box()
        assert row is not None and row["height"] < 48, row  # one line, not stacked rows
        expect(
            page.locator(f".st-key-parley-tools-{reply.id}").get_by_role(
                "button", name="Regenerate"
            )
        ).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "branches-phone.png", full_page=True)
    finally:
        context.close()


# Long enough to be caught streaming (about 10 s at the pace it is sent), then ended.
NEW_STORY = " ".join(f"n{i}" for i in range(300)) + " THE END"


@pytest.mark.parametrize("where", ["last-row", "bubble-row"])
def test_regenerate_streams_the_new_reply_in_the_old_ones_place(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
    where: str,
) -> None:
    """The issue's points 3 and 8: one path shown, and the controls staying put. Regenerate
    under the last reply, or in the first reply's own row (which drops the turn after it
    from the path shown), never shows the old reply while the new one streams."""
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    page = open_page(app.url)
    browser_server.script("Old heron answer, soon replaced.")
    send(page, "Tell me about herons")
    answered(page, 2, "Old heron answer")
    send(page, "And egrets?")
    answered(page, 4, "Echo: And egrets?")
    store = ConversationStore(open_backend(app.data_dir), "local")
    cid = store.list()[0].id
    first_reply = store.path(cid)[1]
    old, index = ("Echo: And egrets?", 3) if where == "last-row" else ("Old heron answer", 1)

    browser_server.script(NEW_STORY, chunk_size=6, chunk_delay=0.1)
    if where == "last-row":
        button = page.locator(".st-key-parley-actions").get_by_role("button", name="Regenerate")
    else:
        hover(page, 1, first_reply.id)
        row = page.locator(f".st-key-parley-tools-{first_reply.id}")
        button = row.get_by_role("button", name="Regenerate")
    button.click()
    expect(bubbles(page).last).to_contain_text("n12 ")  # streaming
    shown = page.get_by_test_id("stMainBlockContainer").inner_text()  # stale ones included
    assert "THE END" not in shown, "the reply ended before the check: stream it slower"
    gone = [old, "Echo: And egrets?"] + (["And egrets?"] if where == "bubble-row" else [])
    assert [text for text in gone if text in shown] == []
    assert bubbles(page).count() == index + 1  # in the old one's place

    answered(page, index + 1, "THE END")
    reply = bubbles(page).nth(index)
    expect(reply.get_by_test_id("stCaptionContainer").filter(has_text="2/2")).to_be_visible()
    with rerun(page):
        reply.get_by_role("button", name="‹").click()
    expect(bubbles(page).nth(index)).to_contain_text(old)
    expect(bubbles(page).nth(index).get_by_text("1/2")).to_be_visible()
    expect(page.get_by_test_id("stMainBlockContainer").get_by_text("THE END")).to_have_count(0)
